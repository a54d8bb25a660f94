"""Part ``tests``: the core tests on the device (ADALORA_TEST_DEVICE), pytest's junit XML
parsed: counts, failures, skips with reasons."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from importlib.util import find_spec

from scripts.device.proc import child_env, failed, run_cmd, tail

CORE_TESTS = [
    "tests/test_device_core.py",
    "tests/test_allocator.py",
    "tests/test_layers.py",
    "tests/test_peft_parity.py",
    "tests/test_model_io.py",
    "tests/test_schedule.py",
    "tests/test_config.py",
]
QUICK_TESTS = ["tests/test_device_core.py"]


def part_tests(ctx) -> dict:
    if find_spec("pytest") is None:
        return failed("pytest is not installed")
    files = QUICK_TESTS if ctx.quick else CORE_TESTS
    junit = ctx.work / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"]
    cmd += [f"--junitxml={junit}", *files]
    r = run_cmd(cmd, ctx.timeout(300 if ctx.cuda else 240), child_env(ctx.device), ctx.log("tests"))
    res = {"files": files, "device": ctx.device, **r}
    if r["timed_out"]:
        return failed("pytest timed out", **res)
    if not junit.exists():
        return failed("pytest wrote no junit XML", **res)
    suites = ET.parse(junit).getroot()
    suites = [suites] if suites.tag == "testsuite" else list(suites)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failures, skips = [], []
    for s in suites:
        for k in counts:
            counts[k] += int(s.get(k, 0))
        for case in s.iter("testcase"):
            name = f"{case.get('classname')}::{case.get('name')}"
            for tag in ("failure", "error"):
                for el in case.findall(tag):
                    failures.append({"test": name, "kind": tag, "message": tail(el.get("message"))})
            for el in case.findall("skipped"):
                skips.append({"test": name, "reason": (el.get("message") or "")[:300]})
    res.update(counts=counts, failed_tests=failures[:50], skipped_tests=skips[:50])
    res["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    ok = r["rc"] == 0 and counts["failures"] == 0 and counts["errors"] == 0
    return {"status": "passed" if ok else "failed", **res} | (
        {} if ok else {"error": f"{counts['failures']} failed, {counts['errors']} errors"}
    )
