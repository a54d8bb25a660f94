#!/usr/bin/env python
"""The reproduction grid: every run the converged protocol needs (scripts/plan_converged.py).

AdaLoRA vs LoRA at matched budgets, full fine-tuning and the ablations, on real GLUE data with
the packaged MiniLM, several seeds per cell (the protocol itself: scripts/protocol.py).

    python scripts/reproduce.py [--output-dir DIR] [--dry-run] [--hours H]
        [--launcher local [--workers 2 | --runs-per-gpu K]]
        [--launcher slurm [--partition P] [--time MIN] [--gpus-per-job G] [--runs-per-gpu K]
                          [--cpus-per-job C] [--array-parallelism N] [--slurm-setup CMD] ...]

Every run is a plain glue.py command (printed by --dry-run), so any cell can be re-run alone.
The grid is re-planned after every finished run, since its seed runs follow from the sweep's
results. Resumable: a run whose result file exists is skipped, and a run killed half-way
continues from its last checkpoint: every command passes --save-steps ``SAVE_STEPS``, and
glue.py resumes a --run-name that has checkpoints but no result file. One driver per grid: a
second reproduce.py on the same --output-dir is refused while the first runs, as is a second
process training the same run (experiments/runlock.py).

Where the runs go (scripts/grid/): ``--launcher local`` runs --workers glue.py processes at once,
one thread each (or --runs-per-gpu K on each visible GPU); ``--launcher slurm`` sends them to
SLURM through submitit, as job arrays, re-planning as results land (scripts/grid/slurm.py);
with --dry-run it prints the job script and each array task's commands, and submits nothing.
Every flag and every planned command (glue.py's own checks) is checked before anything runs
or is written, and, for runs on this machine, that it trains their precision natively (the
protocol's bf16 is emulated, 14-18x slower, on a CPU without avx512_bf16 / AMX): a problem is
one line, exit status 2.

The earlier short-run grid: each file in results/evidence/short/ records its glue.py command.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

from experiments import runlock
from scripts import plan_converged
from scripts.checks import BadInput, ScriptParser, parse, positive, writable_folder
from scripts.grid import launch, options
from scripts.grid.command import (
    GlueRefused,
    check_glue_argv,
    flag_value,
    glue_argv,
    glue_command,
    working_dir,
)
from scripts.grid.pool import Run, drive, print_outcome

ROOT = Path(__file__).resolve().parents[1]

OUTPUT_DIR = "results/evidence/converged"
JOB_NAME = "adalora-converged"  # SLURM's job name
WORKERS = 2  # local runs at once (--workers), one thread each
SAVE_STEPS = 200  # a checkpoint every 200 optimizer steps
# --hours: a run of a task with no landed run (no time to go by) is assumed to take this
# fraction of the whole time budget, so it starts only in the budget's first half
UNKNOWN_RUN_FRACTION = 0.5
RECENT_RUNS = 5  # --hours: a run's time is estimated from this many latest landed runs
LOCK_FILE = ".reproduce.lock"  # in --output-dir, held while this script drives the grid
LOCK_FIX = "wait for that reproduce.py to end, or stop it (kill its process group) first"


def run_times(root: Path) -> dict:
    """{(task, method, budget r): [(created, wall seconds per epoch)]} of the runs landed below
    ``root``."""
    out: dict = {}
    for f in root.glob("*/*.json"):
        try:
            d = json.loads(f.read_text())
            hp = d["hyperparameters"]
            per_epoch = float(d["wall_time_s"]) / float(hp["epochs"])
            r = float(hp["target_r"]) if hp.get("target_r") is not None else None
            out.setdefault((d["task"], d["method"], r), []).append(
                (str(d.get("created", "")), per_epoch)
            )
        except (ValueError, KeyError, TypeError, ZeroDivisionError):
            continue  # not a result file (or an older one without these fields)
    return out


def estimate_s(flags, times: dict) -> float | None:
    """A run's expected wall time: its epochs x the median seconds per epoch of the RECENT_RUNS
    latest landed runs of the same task, method and budget (--target-r), else of the same task
    and method, else of the same task (None when no run of the task has landed: --hours then
    assumes UNKNOWN_RUN_FRACTION of its budget). The latest, since machines differ (CoLA's
    epoch took 40 s in one session and 70 s in a later one) and a cell's runs land together."""
    task, method = flag_value(flags, "--task"), flag_value(flags, "--method")
    r = flag_value(flags, "--target-r")
    r = float(r) if r is not None else None
    runs = (
        times.get((task, method, r))
        or [x for (t, m, _), v in times.items() if (t, m) == (task, method) for x in v]
        or [x for (t, _, _), v in times.items() if t == task for x in v]
    )
    if not runs:
        return None
    xs = sorted(x for _, x in sorted(runs)[-RECENT_RUNS:])
    return xs[len(xs) // 2] * float(flag_value(flags, "--epochs") or 1)


def converged_run(j, root: Path) -> Run:
    """A job of scripts/plan_converged.py as a run: its command with checkpoints, its result in
    <root>/<stage>/, its log in <root>/logs/."""
    argv = glue_argv(j.flags, output_dir=root / j.stage, run_name=j.name, save_steps=SAVE_STEPS)
    return Run(j.name, tuple(argv), root / j.stage / f"{j.name}.json",
               root / "logs" / f"{j.name}.log")  # fmt: skip


def converged_planner(root: Path, hours: float | None, passed_over: list | None = None):
    """The converged grid's planner: every run scripts/plan_converged.py needs now, in its
    priority order (re-planned after every finished run, since the seed runs follow from the
    sweep's results and the rank-pattern LoRA runs from AdaLoRA's result files); with --hours,
    only runs expected to end in time (``estimate_s``). Each plan puts the names of the runs
    it left out for time in ``passed_over`` (its previous contents replaced)."""
    deadline = None if hours is None else time.time() + hours * 3600

    def fits(j, times: dict) -> bool:
        if deadline is None:
            return True
        est = estimate_s(j.flags, times)
        if est is None:  # a task with no landed run: no estimate, so start it only early on
            est = UNKNOWN_RUN_FRACTION * hours * 3600
        return time.time() + est <= deadline

    def planner() -> list[Run]:
        times = run_times(root) if deadline is not None else {}  # the landed files, read once
        runs = [(converged_run(j, root), j) for j in plan_converged.plan(root)]
        kept, over = [], []
        for r, j in runs:
            (kept if r.done() or fits(j, times) else over).append(r)
        if passed_over is not None:
            passed_over[:] = [r.name for r in over]
        return kept

    return planner


def check_args(a) -> None:
    """Every flag, before anything runs or is written (scripts/checks.py)."""
    if a.hours is not None:
        positive(a, "hours", "a number of hours", "pass e.g. --hours 4")
        if a.launcher != "local":
            raise BadInput("--hours", f"{a.hours:g}", "only with --launcher local",
                           "with SLURM, --time limits each job and a cut run resumes")  # fmt: skip
    writable_folder(output_dir(a), "--output-dir")
    options.check(a)


def check_commands(runs) -> None:
    """Every planned command, as glue.py checks it before it loads anything."""
    for r in runs:
        try:
            check_glue_argv(r.argv)
        except GlueRefused as e:
            shown = f"{e.value} (planned run {r.name})" if e.value else f"(planned run {r.name})"
            raise BadInput(e.flag, shown, e.problem, e.fix) from None


def output_dir(a) -> str:
    return a.output_dir or OUTPUT_DIR


def main(argv=None) -> int:
    p = ScriptParser(prog="reproduce.py", description=__doc__.splitlines()[0])
    p.add_argument("--output-dir", default=None, help=f"default: {OUTPUT_DIR}")
    p.add_argument("--dry-run", action="store_true",
                   help="print the runs (with SLURM: the job script), run nothing")  # fmt: skip
    p.add_argument("--hours", type=float, default=None,
                   help="start no run expected to end later than this many hours "
                        "from now (its epochs x the median time per epoch of the latest landed "
                        "runs of its task, method and budget); a run that would not fit is passed "
                        "over for a later, shorter one: a time-limited session cuts no run "
                        "off")  # fmt: skip
    options.add_flags(p, workers=WORKERS)
    with working_dir(ROOT):  # relative paths are relative to the repository root, as the runs' are
        a = parse(p, argv, check_args)
        root = Path(output_dir(a))
        passed_over: list = []
        planner = converged_planner(root, a.hours, passed_over)
        planned = planner()
        todo = [r for r in planned if not r.done()]
        try:
            check_commands(todo)
            if not a.dry_run:
                launch.check_machine(a, todo)
        except BadInput as e:
            p.exit(2, f"{p.prog}: error: {e.line()}\n")
        done = len(planned) - len(todo)
        header = f"{len(planned)} runs planned so far, {done} done, {len(todo)} to run"
        if a.hours is not None:  # say what --hours left out, so the count is not read as the grid's
            header += (f"; {len(passed_over)} more passed over (expected to end after "
                       f"--hours {a.hours:g})")  # fmt: skip
        print(header)
        if a.dry_run:
            if a.launcher == "local":
                print("\n".join(shlex.join(glue_command(r.argv, "python")[1:]) for r in todo))
            elif todo:
                print(launch.slurm_dry_run(a, root, todo, JOB_NAME))
            return 0
        try:  # one driver per grid (experiments/runlock.py); each run also holds its own lock
            with runlock.hold(root / LOCK_FILE, "--output-dir", str(root), LOCK_FIX):
                pool = launch.make(a, root, WORKERS, JOB_NAME)
                outcomes = drive(planner, pool, on_end=print_outcome)
        except BadInput as e:
            p.exit(2, f"{p.prog}: error: {e.line()}\n")
    failed = sorted(o.name for o in outcomes if not o.ok)
    if failed:
        print("failed:", *failed, sep="\n  ")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
