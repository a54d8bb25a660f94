#!/usr/bin/env python
"""Why LoRA with AdaLoRA's final ranks trains slower than LoRA r=8 on CPU in bf16: oneDNN's
primitive cache (a benchmark).

Under ``torch.autocast("cpu", torch.bfloat16)`` each adapter matmul (x @ A^T, h @ B^T and the
backward's products) runs as a oneDNN matmul primitive, created once per shape and kept in
oneDNN's primitive cache (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``, 1024 entries by default). With
length-grouped batches the token count changes from batch to batch, and every (token count,
adapter shape) pair is a new primitive. LoRA r=8 has one rank; LoRA with AdaLoRA's final ranks
(``--rank-pattern-from``) has up to 12 different ranks across its modules, so about ten times as
many shapes, which can overflow the cache and then get created again step after step.

This script runs the real GLUE runner (``experiments/glue.py``) for ``--max-steps`` steps per
configuration, {LoRA r=8, LoRA with the rank pattern of ``--pattern-from``} x {each
``--capacities`` value}, each in its own process (oneDNN reads the capacity once per process,
at its first use, so one process cannot hold two values). ``ONEDNN_VERBOSE=profile_create``
makes oneDNN print one line per primitive request, ``create:cache_miss`` or ``create:cache_hit``,
with the milliseconds it took. The script counts them and sums those milliseconds over all
steps and over the second half of the steps (after the first half has seen most batch lengths
once), and records the second half's seconds (the training bar's elapsed time, whole seconds),
the Trainer's train_runtime and the process's peak RSS. Configurations run in the order given,
``--repeats`` times, the first one rotating each round. The counts do not depend on load; the
times do (run it on an idle machine).

    python scripts/bench_onednn_cache.py --max-steps 480 --capacities 1024,8192 \
        --json-out results/bench/onednn_cache_sst2_rp8_480.json
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments import provenance  # noqa: E402
from experiments.results import write_json_atomic  # noqa: E402

DEFAULT_PATTERN = "results/evidence/converged/seeds/conv-sst2-adalora_12to8-lr2e-3-s2.json"
_STEP = re.compile(r"(\d+)/(\d+) \[((?:\d+:)?\d+:\d+)<")
_RUNTIME = re.compile(r"'train_runtime': '([0-9.]+)'")
ARMS = ("rank_pattern", "uniform")  # LoRA with --pattern-from's ranks; LoRA r=8 everywhere


def glue_command(arm: str, args, out_dir: str, name: str) -> list[str]:
    """The runner's command for one configuration: the converged grid's SST-2 LoRA r=8 seed
    command (bf16, length-grouped batches), cut to --max-steps."""
    cmd = [
        sys.executable,
        "experiments/glue.py",
        "--task",
        args.task,
        "--seed",
        str(args.seed),
        "--max-steps",
        str(args.max_steps),
        "--evals",
        "1",
        "--max-eval-samples",
        "64",
        "--target-r",
        "8",
        "--precision",
        "bf16",
        "--group-by-length",
        "yes",
        "--wandb",
        "disabled",
        "--method",
        "lora",
        "--lr",
        "1e-3",
        "--lora-alpha",
        "8",
        "--output-dir",
        out_dir,
        "--run-name",
        name,
    ]
    if arm == "rank_pattern":
        cmd += ["--rank-pattern-from", args.pattern_from]
    return cmd


def count_requests(stderr: str, max_steps: int) -> dict:
    """Primitive requests (cache misses and hits, and the milliseconds oneDNN reports creating
    or looking them up, the verbose line's last field) in all and in the second half of the
    training steps, each line placed by the training bar's last ``k/max_steps`` before it; and
    the second half's seconds by that bar's elapsed time (whole seconds: from the first update
    past half to the last)."""
    step, half = 0, max_steps // 2
    c = {f"{k}_{w}": 0 for w in ("all", "second_half") for k in ("miss", "hit")}
    ms = {"create_ms_all": 0.0, "create_ms_second_half": 0.0}
    t_half = t_end = None
    for piece in re.split(r"[\r\n]", stderr):
        if "create:cache_" in piece:
            kind = "miss" if "create:cache_miss" in piece else "hit"
            took = float(piece.rsplit(",", 1)[1])
            c[f"{kind}_all"] += 1
            ms["create_ms_all"] += took
            if step > half:
                c[f"{kind}_second_half"] += 1
                ms["create_ms_second_half"] += took
            continue
        for m in _STEP.finditer(piece):
            if int(m.group(2)) == max_steps:
                step, t = int(m.group(1)), _seconds(m.group(3))
                if step > half and t_half is None:
                    t_half = t
                t_end = t
    c.update({k: round(v, 1) for k, v in ms.items()})
    c["second_half_s"] = None if t_half is None else t_end - t_half
    return c


def _seconds(clock: str) -> int:
    """tqdm's elapsed time, [h:]mm:ss, in seconds."""
    s = 0
    for part in clock.split(":"):
        s = 60 * s + int(part)
    return s


def run_one(arm: str, capacity: int, args, tmp: str, i: int) -> dict:
    name = f"bench-{arm}-c{capacity}-{i}"
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(args.threads),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        ONEDNN_PRIMITIVE_CACHE_CAPACITY=str(capacity),
        ONEDNN_VERBOSE="profile_create",
    )
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        glue_command(arm, args, tmp, name),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"{name} failed (status {status}):\n{out[-3000:]}")
    runtime = _RUNTIME.search(out)
    if runtime is None:
        sys.exit(f"{name}: no train_runtime in its output:\n{out[-3000:]}")
    row = {
        "arm": arm,
        "capacity": capacity,
        "round": i,
        "train_runtime_s": float(runtime.group(1)),
        "wall_s": round(wall, 2),
        "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }
    row.update(count_requests(out, args.max_steps))
    print(row, flush=True)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="sst2")
    p.add_argument("--seed", type=int, default=2)
    p.add_argument(
        "--pattern-from",
        default=DEFAULT_PATTERN,
        help="an AdaLoRA result file whose final ranks the rank-pattern arm uses",
    )
    p.add_argument("--max-steps", type=int, default=240)
    p.add_argument(
        "--capacities",
        default="1024,8192",
        help="ONEDNN_PRIMITIVE_CACHE_CAPACITY values (1024 is oneDNN's default)",
    )
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {ARMS}")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json-out", required=True)
    args = p.parse_args(argv)
    if Path(args.json_out).exists():
        p.error(f"--json-out {args.json_out} exists; results are never overwritten: pick another")
    if not (ROOT / args.pattern_from).is_file():
        p.error(f"--pattern-from {args.pattern_from}: no such file; pass an AdaLoRA result file")
    arms = args.arms.split(",")
    if not set(arms) <= set(ARMS):
        p.error(f"--arms {args.arms}: unknown arm; pass a comma-separated subset of {ARMS}")
    try:
        capacities = [int(c) for c in args.capacities.split(",")]
    except ValueError:
        capacities = []
    if not capacities or min(capacities) < 1:
        p.error(f"--capacities {args.capacities}: pass comma-separated entry counts >= 1 (1024)")
    configs = [(a, c) for c in capacities for a in arms]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            k = i % len(configs)
            for arm, cap in configs[k:] + configs[:k]:
                rows.append(run_one(arm, cap, args, tmp, i))
    record = {
        "benchmark": "onednn_primitive_cache",
        "command": provenance.command([sys.argv[0]] + list(sys.argv[1:] if argv is None else argv)),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": provenance.git_commit(ROOT),
        "git_dirty": provenance.git_dirty(ROOT),
        "hardware": provenance.hardware(),
        "versions": provenance.versions(),
        "settings": {k: v for k, v in vars(args).items() if k != "json_out"},
        "runs": rows,
    }
    write_json_atomic(Path(args.json_out), record)
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
