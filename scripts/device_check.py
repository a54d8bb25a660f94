#!/usr/bin/env python
"""One command for a session with a GPU: run the core on the device, measure it, write it down.

    PYTHONPATH=. python scripts/device_check.py --out DIR [--device auto|cpu|cuda] [--quick]
        [--model MODEL_DIR] [--data-dir GLUE_DIR] [--parallel N] [--time-budget S]

Every flag is checked before anything runs or is written (one line, exit status 2); --out
and --work-dir must not hold an earlier check.

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
    glue_parallel  N such runs at once on the one device (the grids' pool, scripts/grid/pool.py:
                   reproduce.py --runs-per-gpu N on CUDA), their wall times

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
import shlex
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from experiments.results import write_json_atomic
from scripts.checks import BadInput, ScriptParser, at_least, parse, positive, writable_folder
from scripts.device.bench import bench_plan, part_bench, targets_from
from scripts.device.core_tests import part_tests
from scripts.device.environment import environment
from scripts.device.glue import part_glue_parallel, part_glue_single, resolve_data, resolve_model
from scripts.device.probes import part_probe, run_probe
from scripts.device.proc import failed, skipped
from scripts.device.summary import summary_text

SCHEMA = "adalora.device_check/1"
# Each part's code is in scripts/device/ (its __init__ lists the modules); this file runs them.


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Ctx:
    """What the parts share: the device, the size, the folders, the time budget, the GLUE
    model and data, the single GLUE run's wall time (for the parallel runs' throughput)."""

    def __init__(self, args, device: str):
        self.device, self.cuda, self.quick = device, device.startswith("cuda"), args.quick
        self.out = Path(args.out).resolve()
        self.work = Path(args.work_dir).resolve() if args.work_dir else self.out / "work"
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


def part_names() -> set[str]:
    """Every name --parts takes: a part, "bench" (all benchmarks) or one benchmark, as any
    device and size (--quick or not) names it."""
    from types import SimpleNamespace

    names = {"tests", "sync", "ops", "bench", "glue_single", "glue_parallel"}
    for cuda, quick in ((True, False), (False, True), (False, False)):
        for s in bench_plan(SimpleNamespace(cuda=cuda, quick=quick)):
            names.add(f"bench_{s['model']}_{s['dtype']}")
    return names


def check_args(a) -> None:
    """Every flag, before anything runs or is written (scripts/checks.py)."""
    if a._probe:
        return  # the probe subprocess: its parent checked the flags
    writable_folder(a.out, "--out")
    if (Path(a.out) / "device_check.json").exists():
        raise BadInput(
            "--out",
            a.out,
            "holds an earlier check's device_check.json, which this check would overwrite",
            "pass a new folder, or delete that one first",
        )
    if a.work_dir is not None:
        writable_folder(a.work_dir, "--work-dir")
    work = Path(a.work_dir if a.work_dir is not None else Path(a.out) / "work")
    if work.is_dir() and any(work.iterdir()):
        raise BadInput(
            "--work-dir" if a.work_dir is not None else "--out",
            a.work_dir if a.work_dir is not None else a.out,
            f"{work} holds an earlier check's scratch files (its GLUE runs would find their "
            "results already there)",
            "pass a new folder, or delete that one first",
        )
    if a.model is not None and a.model != "minilm":
        if not (Path(a.model) / "config.json").is_file():
            raise BadInput(
                "--model",
                a.model,
                "no config.json there (not a model folder)"
                if Path(a.model).is_dir()
                else "no such folder",
                "pass a model folder (python scripts/minilm_fp16.py --out "
                ".cache/minilm-fp16 makes one) or minilm",
            )
    if a.data_dir is not None:
        for name in ("train.tsv", "dev.tsv"):
            if not (Path(a.data_dir) / "STS-B" / name).is_file():
                raise BadInput(
                    "--data-dir",
                    a.data_dir,
                    f"no STS-B/{name} there",
                    "pass the GLUE folder that holds STS-B/ (cp -r $GLUE_DIR/STS-B "
                    ".cache/glue/), or leave it out for a synthetic STS-B",
                )
    at_least(a, "parallel", 1)
    at_least(a, "glue_steps", 1)
    positive(a, "time_budget", "a number of seconds", "pass e.g. --time-budget 450")
    if a.parts is not None:
        names = part_names()
        for part in a.parts.split(","):
            if part not in names:
                raise BadInput(
                    "--parts",
                    a.parts,
                    f"no part {part!r}",
                    f"use a comma-separated subset of {', '.join(sorted(names))}",
                )
    if a.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise BadInput(
                "--device",
                "cuda",
                "CUDA is not available here",
                "use --device cpu, or auto (CUDA when there is one)",
            )


def parse_args(argv=None):
    p = ScriptParser(
        prog="device_check.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    return parse(p, argv, check_args)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args._probe:
        return run_probe(args)
    t0 = time.perf_counter()
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(args.out).resolve()  # the GLUE runs run from the repository root
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
        print(
            f"[device_check] {name}: {res['status']} ({res['wall_s']:.1f} s)"
            + (f" {res.get('error') or res.get('reason')}" if res["status"] != "passed" else ""),
            flush=True,
        )
        rec["wall_s"] = round(time.perf_counter() - t0, 2)
        write_json_atomic(
            out / "device_check.json", rec, overwrite=True, sort_keys=False
        )  # partial results survive a kill

    rec["targets"] = targets_from(rec["parts"], ctx.cuda)
    statuses = [p["status"] for p in rec["parts"].values()]
    rec["status"] = "failed" if "failed" in statuses else "passed"
    rec["wall_s"] = round(time.perf_counter() - t0, 2)
    write_json_atomic(out / "device_check.json", rec, overwrite=True, sort_keys=False)
    text = summary_text(rec)
    (out / "device_check.txt").write_text(text)
    print(text, end="")
    return 0 if rec["status"] == "passed" else 1


if __name__ == "__main__":
    sys.exit(main())
