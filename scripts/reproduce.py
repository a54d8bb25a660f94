#!/usr/bin/env python
"""The reproduction grid: AdaLoRA vs LoRA at matched budgets, full FT, BitFit and the paper's
ablations, on real GLUE data with the packaged MiniLM, several seeds per cell.

    python scripts/reproduce.py [--workers 2] [--output-dir results/evidence/short] [--dry-run]
                                [--order A:sst2,A:stsb,C:sst2,...] [--hours H]

Runs are listed in priority order (``ORDER``) and executed by ``--workers`` parallel
processes of experiments/glue.py, one thread each. Resumable: a run whose result file exists
is skipped, and a run killed half-way continues from its last checkpoint: every command passes
--save-steps (about every 10% of T; ``SAVE_STEPS`` for the converged grid, whose T follows from
the data), and glue.py resumes a --run-name that has checkpoints but no result file. Every run
is a plain glue.py command (printed), so any cell can be re-run alone.

The grid is scaled to CPU: a fixed number of optimizer steps per task (``STEPS``), not the
paper's epochs; paper_tables.md says so beside the numbers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SEEDS = (1, 2, 3)
BUDGETS = (2, 8)  # average final rank per matrix; LoRA gets r = the same value
LRS = (
    "2e-3",
    "1e-3",
    "5e-4",
    "2e-4",
)  # the same sweep for LoRA and AdaLoRA (B runs them in this order)
SHARED_LR = "1e-3"
# task -> optimizer steps and extra flags (RTE: batch 16, its pairs are long)
STEPS = {
    "cola": (300, []),
    "sst2": (300, []),
    "stsb": (200, []),
    "rte": (150, ["--batch-size", "16"]),
}
BASELINE_LR = {"full": "5e-5", "bitfit": "2e-3"}
# Priority order (the order the committed runs were made in). Ablations run on SST-2: on CoLA
# and RTE both LoRA and AdaLoRA stayed at chance (MCC 0 / ~50% accuracy) at this scale, so
# neither can rank ablation variants. After the shared LR, the sweep's most telling points:
# at 1e-3 AdaLoRA trailed LoRA on SST-2 (does a higher LR close it?) and LoRA failed to learn
# STS-B in 200 steps (a lower LR?). Then full FT / BitFit; as full FT and BitFit learn STS-B,
# LoRA's failure there gets the sweep's lowest LR next; then the ablations where methods
# learn; as LoRA failed STS-B at 2e-4 too, its highest LR; then the chance-level tasks and
# their full FT / BitFit; then the sweep points that can change a best-LR comparison: SST-2
# r=8 at 2e-3 (AdaLoRA's best at r=2), SST-2 r=2 at 5e-4 (below LoRA's best), CoLA and RTE
# at 2e-3 (does a larger step leave chance?), STS-B r=8 at 2e-3; then the rest of the sweep on
# the tasks where methods learn (SST-2, STS-B r=8), then on CoLA and RTE. The diagnostics (E)
# ran after D:cola except their last run (3x steps, seed 3: 30 minutes), which comes last.
ORDER = (
    "A:sst2,A:stsb,B:sst2:2e-3:2,B:stsb:5e-4:2,D:sst2,D:stsb,B:stsb:2e-4:2,C:sst2,"
    "B:stsb:2e-3:2,A:rte,A:cola,D:rte,D:cola,B:sst2:2e-3:8,B:sst2:5e-4:2,B:cola:2e-3:2,"
    "B:rte:2e-3:2,B:stsb:2e-3:8,B:sst2:5e-4:8,B:stsb:5e-4:8,B:stsb:2e-4:8,B:sst2:2e-4,"
    "B:cola,B:rte,E:stsb"
)
ABLATIONS = {  # name -> (method, flags); at the budget of avg rank 2, the shared LR
    "sensitivity": ("adalora", ["--score", "sensitivity"]),
    "magnitude": ("adalora", ["--score", "magnitude"]),
    "gamma0": ("adalora", ["--orth-reg-weight", "0"]),
    "svd_lora": ("svd_lora", []),
    "prune_lora": ("prune_lora", []),
}
# E: why LoRA stays at the mean on STS-B (r=2, shared LR): its scale alpha / r (32 / 2 = 16)
# cut to 1 (alpha = r), then the same LoRA with 3x the steps. Tagged as sweeps
# (hyperparameters.sweep), so they appear in the sweep tables, never in Table 1.
DIAGNOSTICS = (
    ("alpha2", ["--lora-alpha", "2"], {"lora_alpha": 2}, 1),  # (tag, flags, sweep, steps x)
    ("T3x", [], {}, 3),
)


SAVE_STEPS = 200  # converged grid: a checkpoint every 200 optimizer steps
# --hours: a run of a task with no landed run (no time to go by) is assumed to take this
# fraction of the whole time budget, so it starts only in the budget's first half
UNKNOWN_RUN_FRACTION = 0.5


def save_steps(total_steps: int) -> int:
    """Checkpoint interval of a run of ``total_steps`` steps: about 10% of T."""
    return max(1, total_steps // 10)


def with_checkpoints(cmd: list, every: int = SAVE_STEPS) -> list:
    """``cmd`` with --save-steps, so that a killed run resumes when the command is re-run."""
    return [*cmd, "--save-steps", str(every)]


def job(task, method, seed, name, flags, out, steps_factor=1):
    steps, extra = STEPS[task]
    cmd = [
        sys.executable,
        "experiments/glue.py",
        "--task",
        task,
        "--method",
        method,
        "--seed",
        str(seed),
        "--max-steps",
        str(steps * steps_factor),
        "--evals",
        "2",
        "--wandb",
        "disabled",
        "--output-dir",
        out,
        "--run-name",
        name,
        "--save-steps",
        str(save_steps(steps * steps_factor)),
        *extra,
        *flags,
    ]
    return name, cmd


def plan(out: str, order: str) -> list:
    """Jobs in priority order. ``order``: comma-separated PHASE:task items, each expanded seed by
    seed. A: AdaLoRA vs LoRA at both budgets at the shared LR; B: the sweep's other LRs;
    C: the ablations (avg rank 2, shared LR); D: full FT and BitFit; E: the LoRA
    diagnostics (``DIAGNOSTICS``)."""
    jobs = []
    for item in order.split(","):
        phase, task, *only = item.split(":")  # optional ":lr" and ":budget" narrow a B item
        if phase not in "ABCDE" or len(phase) != 1:
            raise SystemExit(f"unknown phase {phase!r} in --order (A, B, C, D or E)")
        if phase == "E":  # each diagnostic with all seeds, then the next
            for (tag, flags, sweep, factor), seed in itertools.product(DIAGNOSTICS, SEEDS):
                point = {**sweep, **({"max_steps": STEPS[task][0] * factor} if factor != 1 else {})}
                jobs.append(
                    job(
                        task,
                        "lora",
                        seed,
                        f"repro-{task}-lora-r2-{tag}-lr{SHARED_LR}-s{seed}",
                        [
                            "--target-r",
                            "2",
                            "--lr",
                            SHARED_LR,
                            *flags,
                            "--sweep-json",
                            json.dumps(point),
                        ],
                        out,
                        factor,
                    )
                )
            continue
        lrs = {"A": [SHARED_LR], "B": [lr for lr in LRS if lr != SHARED_LR]}.get(phase, [SHARED_LR])
        lrs = [only[0]] if only else lrs
        budgets = [int(only[1])] if len(only) > 1 else BUDGETS
        for lr, seed in itertools.product(lrs, SEEDS):  # B: one LR with all seeds, then the next
            if phase in ("A", "B"):
                for b, m in itertools.product(budgets, ("adalora", "lora")):
                    jobs.append(
                        job(
                            task,
                            m,
                            seed,
                            f"repro-{task}-{m}-r{b}-lr{lr}-s{seed}",
                            ["--target-r", str(b), "--lr", lr],
                            out,
                        )
                    )
            elif phase == "C":
                for abl, (m, flags) in ABLATIONS.items():
                    jobs.append(
                        job(
                            task,
                            m,
                            seed,
                            f"repro-{task}-abl-{abl}-r2-lr{lr}-s{seed}",
                            ["--target-r", "2", "--lr", lr, *flags],
                            out,
                        )
                    )
            else:
                for m, base_lr in BASELINE_LR.items():
                    jobs.append(
                        job(
                            task,
                            m,
                            seed,
                            f"repro-{task}-{m}-lr{base_lr}-s{seed}",
                            ["--lr", base_lr],
                            out,
                        )
                    )
    return list(dict(jobs).items())  # an item may repeat runs of an earlier one: keep the first


def child_env() -> dict:
    """One thread per run: the grid runs one process per core."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip


def run_logged(name: str, cmd: list, log_dir: Path, env: dict) -> int:
    """Run one glue.py command, appending its output to <log_dir>/<name>.log (a resumed run
    adds to its log); print ok / FAIL with the wall time; return the exit status."""
    log_dir.mkdir(parents=True, exist_ok=True)
    t = time.time()
    with open(log_dir / f"{name}.log", "a") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    print(f"{'ok  ' if rc == 0 else 'FAIL'} {name} ({time.time() - t:.0f}s)", flush=True)
    return rc


def _flag(flags, name: str):
    flags = list(flags)
    return flags[flags.index(name) + 1] if name in flags else None


def run_times(root: Path) -> dict:
    """{(task, method): [wall seconds per epoch]} of the runs landed below ``root``."""
    out: dict = {}
    for f in root.glob("*/*.json"):
        try:
            d = json.loads(f.read_text())
            per_epoch = float(d["wall_time_s"]) / float(d["hyperparameters"]["epochs"])
            out.setdefault((d["task"], d["method"]), []).append(per_epoch)
        except (ValueError, KeyError, TypeError, ZeroDivisionError):
            continue  # not a result file (or an older one without these fields)
    return out


def estimate_s(flags, times: dict) -> float | None:
    """A run's expected wall time: its epochs x the median seconds per epoch of the landed runs
    of the same task and method, else of the same task (None when no run of the task has
    landed: --hours then assumes UNKNOWN_RUN_FRACTION of its budget)."""
    task, method = _flag(flags, "--task"), _flag(flags, "--method")
    xs = times.get((task, method)) or [x for (t, _), v in times.items() if t == task for x in v]
    if not xs:
        return None
    return sorted(xs)[len(xs) // 2] * float(_flag(flags, "--epochs") or 1)


def run_converged(a, env: dict) -> int:
    """The converged grid (scripts/plan_converged.py): re-planned after every finished run,
    since the seed runs follow from the sweep's results and the rank-pattern LoRA runs from
    AdaLoRA's result files."""
    from scripts.plan_converged import plan as converged_plan

    root = Path(a.output_dir or "results/evidence/converged")

    def done(j) -> bool:
        return (root / j.stage / f"{j.name}.json").exists()

    deadline = None if a.hours is None else time.time() + a.hours * 3600

    def fits(j, times: dict) -> bool:  # --hours: start only runs expected to end in time
        if deadline is None:
            return True
        est = estimate_s(j.flags, times)
        if est is None:  # a task with no landed run: no estimate, so start it only early on
            est = UNKNOWN_RUN_FRACTION * a.hours * 3600
        return time.time() + est <= deadline

    def pending(exclude) -> list:
        times = run_times(root) if deadline is not None else {}  # the landed files, read once
        return [
            j
            for j in converged_plan(root)
            if not done(j) and j.name not in exclude and fits(j, times)
        ]

    jobs = converged_plan(root)
    todo = [j for j in jobs if not done(j)]
    print(f"{len(jobs)} runs planned so far, {len(jobs) - len(todo)} done, {len(todo)} to run")
    if a.dry_run:
        for j in todo:
            print(" ".join(with_checkpoints(j.command("python", root))[1:]))
        return 0
    failed: set = set()

    def go(j) -> int:
        return run_logged(j.name, with_checkpoints(j.command(sys.executable, root)),
                          root / "logs", env)  # fmt: skip

    running: dict = {}
    with ThreadPoolExecutor(a.workers) as ex:
        while True:
            for j in pending(set(running) | failed)[: max(0, a.workers - len(running))]:
                running[j.name] = ex.submit(go, j)
            if not running:
                break
            finished, _ = wait(running.values(), return_when=FIRST_COMPLETED)
            for name, fut in list(running.items()):
                if fut in finished:
                    del running[name]
                    if fut.result() != 0:
                        failed.add(name)
    if failed:
        print("failed:", *sorted(failed), sep="\n  ")
    return 1 if failed else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--protocol", default="converged", choices=("converged", "short"),
                   help="converged: the grid of scripts/plan_converged.py (re-planned as runs "
                        "land); short: the earlier fixed-step grid (ORDER)")  # fmt: skip
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--output-dir", default=None,
                   help="default: results/evidence/<protocol>")  # fmt: skip
    p.add_argument("--order", default=ORDER, help="short: priority order of PHASE:task items")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--hours", type=float, default=None,
                   help="converged: start no run expected to end later than this many hours "
                        "from now (its epochs x the median time per epoch of landed runs of its "
                        "task and method); a run that would not fit is passed over for a later, "
                        "shorter one: a time-limited session or job cuts no run off")  # fmt: skip
    a = p.parse_args(argv)
    if a.hours is not None and (a.hours <= 0 or a.protocol != "converged"):
        p.error(f"--hours {a.hours}: needs a positive number of hours and --protocol converged")
    os.chdir(ROOT)
    if a.protocol == "converged":
        return run_converged(a, child_env())
    a.output_dir = a.output_dir or "results/evidence/short"
    jobs = plan(a.output_dir, a.order)
    todo = [(n, c) for n, c in jobs if not (Path(a.output_dir) / f"{n}.json").exists()]
    print(f"{len(jobs)} runs in the grid, {len(jobs) - len(todo)} done, {len(todo)} to run")
    if a.dry_run:
        for _, c in todo:
            print(" ".join(c[1:]))
        return 0
    env, failed = child_env(), []

    def go(nc):
        name, cmd = nc
        if run_logged(name, cmd, Path(a.output_dir, "logs"), env):
            failed.append(name)

    with ThreadPoolExecutor(a.workers) as ex:
        list(ex.map(go, todo))
    if failed:
        print("failed:", *failed, sep="\n  ")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
