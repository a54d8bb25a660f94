#!/usr/bin/env python
"""The reproduction grid: AdaLoRA vs LoRA at matched budgets, full FT, BitFit and the paper's
ablations, on real GLUE data with the packaged MiniLM, several seeds per cell.

    python scripts/reproduce.py [--protocol converged|short] [--output-dir DIR] [--dry-run]
        [--hours H] [--order A:sst2,A:stsb,C:sst2,...]
        [--launcher local [--workers 2 | --runs-per-gpu K]]
        [--launcher slurm [--partition P] [--time MIN] [--gpus-per-job G] [--runs-per-gpu K]
                          [--cpus-per-job C] [--array-parallelism N] [--slurm-setup CMD] ...]

Every run is a plain glue.py command (printed by --dry-run), so any cell can be re-run alone.
The converged grid (scripts/plan_converged.py) is re-planned after every finished run, since
its seed runs follow from the sweep's results; the short grid is fixed (``ORDER``). Resumable:
a run whose result file exists is skipped, and a run killed half-way continues from its last
checkpoint: every command passes --save-steps (``SAVE_STEPS`` for the converged grid, about
10% of T for the short one), and glue.py resumes a --run-name that has checkpoints but no
result file.

Where the runs go (scripts/grid/): ``--launcher local`` runs --workers glue.py processes at once,
one thread each (or --runs-per-gpu K on each visible GPU); ``--launcher slurm`` sends them to
SLURM through submitit, as job arrays, re-planning as results land (scripts/grid/slurm.py);
with --dry-run it prints the job script and each array task's commands, and submits nothing.
Every flag and every planned command (glue.py's own checks) is checked before anything runs
or is written: a problem is one line, exit status 2.

The short grid is scaled to CPU: a fixed number of optimizer steps per task (``STEPS``), not
the paper's epochs; paper_tables.md says so beside the numbers.
"""

from __future__ import annotations

import itertools
import json
import shlex
import sys
import time
from pathlib import Path

from scripts import plan_converged
from scripts.checks import BadInput, ScriptParser, parse, positive, writable
from scripts.grid import launch, options
from scripts.grid.command import (
    GlueRefused,
    check_glue_argv,
    glue_argv,
    glue_command,
    working_dir,
)
from scripts.grid.pool import Run, drive, print_outcome

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


WORKERS = 2  # local runs at once (--workers), one thread each
SAVE_STEPS = 200  # converged grid: a checkpoint every 200 optimizer steps
# --hours: a run of a task with no landed run (no time to go by) is assumed to take this
# fraction of the whole time budget, so it starts only in the budget's first half
UNKNOWN_RUN_FRACTION = 0.5


def save_steps(total_steps: int) -> int:
    """Checkpoint interval of a run of ``total_steps`` steps: about 10% of T."""
    return max(1, total_steps // 10)


def job(task, method, seed, name, flags, out, steps_factor=1):
    steps, extra = STEPS[task]
    base = ["--task", task, "--method", method, "--seed", str(seed), "--max-steps",
            str(steps * steps_factor), "--evals", "2", "--wandb", "disabled"]  # fmt: skip
    argv = glue_argv([*base, *extra, *flags], output_dir=out, run_name=name,
                     save_steps=save_steps(steps * steps_factor))  # fmt: skip
    return name, glue_command(argv)


def plan(out: str, order: str) -> list:
    """Jobs in priority order. ``order``: comma-separated PHASE:task items, each expanded seed by
    seed. A: AdaLoRA vs LoRA at both budgets at the shared LR; B: the sweep's other LRs;
    C: the ablations (avg rank 2, shared LR); D: full FT and BitFit; E: the LoRA
    diagnostics (``DIAGNOSTICS``). A bad ``order`` raises BadInput (``check_order``)."""
    check_order(order)
    jobs = []
    for item in order.split(","):
        phase, task, *only = item.split(":")  # optional ":lr" and ":budget" narrow a B item
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


def check_order(order: str) -> None:
    """--order: comma-separated PHASE:task items, a B item optionally narrowed to one LR and
    one budget (B:task:lr[:budget]); raises BadInput."""
    for item in order.split(","):
        phase, task, *only = item.split(":") + ([""] if ":" not in item else [])
        if phase not in ("A", "B", "C", "D", "E"):
            raise BadInput("--order", repr(item), f"unknown phase {phase!r}",
                           "items are PHASE:task with PHASE one of A, B, C, D, E")  # fmt: skip
        if task not in STEPS:
            raise BadInput("--order", repr(item), f"unknown task {task!r}",
                           f"use one of {', '.join(STEPS)}")  # fmt: skip
        if only and phase != "B" or len(only) > 2:
            raise BadInput("--order", repr(item), "only a B item takes :lr[:budget]",
                           "write B:task:lr or B:task:lr:budget, or PHASE:task")  # fmt: skip
        if only and only[0] not in LRS:
            raise BadInput("--order", repr(item), f"LR {only[0]!r} is not in the sweep",
                           f"use one of {', '.join(LRS)}")  # fmt: skip
        if len(only) > 1 and only[1] not in map(str, BUDGETS):
            raise BadInput("--order", repr(item), f"budget {only[1]!r} is not in the grid",
                           f"use one of {', '.join(map(str, BUDGETS))}")  # fmt: skip


def short_runs(out: str, order: str) -> list[Run]:
    """The short grid's runs (``plan``), each logging to <out>/logs/<name>.log."""
    return [Run(name, tuple(cmd[2:]), Path(out) / f"{name}.json",
                Path(out) / "logs" / f"{name}.log") for name, cmd in plan(out, order)]  # fmt: skip


def converged_run(j, root: Path) -> Run:
    """A job of scripts/plan_converged.py as a run: its command with checkpoints, its result in
    <root>/<stage>/, its log in <root>/logs/."""
    argv = glue_argv(j.flags, output_dir=root / j.stage, run_name=j.name, save_steps=SAVE_STEPS)
    return Run(j.name, tuple(argv), root / j.stage / f"{j.name}.json",
               root / "logs" / f"{j.name}.log")  # fmt: skip


def converged_planner(root: Path, hours: float | None):
    """The converged grid's planner: every run scripts/plan_converged.py needs now, in its
    priority order (re-planned after every finished run, since the seed runs follow from the
    sweep's results and the rank-pattern LoRA runs from AdaLoRA's result files); with --hours,
    only runs expected to end in time (``estimate_s``)."""
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
        return [r for r, j in runs if r.done() or fits(j, times)]

    return planner


def check_args(a) -> None:
    """Every flag, before anything runs or is written (scripts/checks.py)."""
    if a.order is not None:
        if a.protocol != "short":
            raise BadInput("--order", a.order, "only with --protocol short",
                           "add --protocol short, or drop --order")  # fmt: skip
        check_order(a.order)
    if a.hours is not None:
        positive(a, "hours", "a number of hours", "pass e.g. --hours 4")
        if a.protocol != "converged":
            raise BadInput("--hours", f"{a.hours:g}", "only with --protocol converged",
                           "drop --hours, or use --protocol converged")  # fmt: skip
        if a.launcher != "local":
            raise BadInput("--hours", f"{a.hours:g}", "only with --launcher local",
                           "with SLURM, --time limits each job and a cut run resumes")  # fmt: skip
    writable(output_dir(a), "--output-dir")
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
    return a.output_dir or f"results/evidence/{a.protocol}"


def main(argv=None) -> int:
    p = ScriptParser(prog="reproduce.py", description=__doc__.splitlines()[0])
    p.add_argument("--protocol", default="converged", choices=("converged", "short"),
                   help="converged: the grid of scripts/plan_converged.py (re-planned as runs "
                        "land); short: the earlier fixed-step grid (ORDER)")  # fmt: skip
    p.add_argument("--output-dir", default=None,
                   help="default: results/evidence/<protocol>")  # fmt: skip
    p.add_argument("--order", default=None,
                   help="short: priority order of PHASE:task items (default: ORDER)")  # fmt: skip
    p.add_argument("--dry-run", action="store_true",
                   help="print the runs (with SLURM: the job script), run nothing")  # fmt: skip
    p.add_argument("--hours", type=float, default=None,
                   help="converged: start no run expected to end later than this many hours "
                        "from now (its epochs x the median time per epoch of landed runs of its "
                        "task and method); a run that would not fit is passed over for a later, "
                        "shorter one: a time-limited session or job cuts no run off")  # fmt: skip
    options.add_flags(p, workers=WORKERS)
    with working_dir(ROOT):  # relative paths are relative to the repository root, as the runs' are
        a = parse(p, argv, check_args)
        root = Path(output_dir(a))
        if a.protocol == "converged":
            planner = converged_planner(root, a.hours)
        else:
            runs = short_runs(str(root), a.order or ORDER)
            planner = lambda: runs  # noqa: E731 - a fixed grid
        planned = planner()
        todo = [r for r in planned if not r.done()]
        try:
            check_commands(todo)
        except BadInput as e:
            p.exit(2, f"{p.prog}: error: {e.line()}\n")
        what = "planned so far" if a.protocol == "converged" else "in the grid"
        print(f"{len(planned)} runs {what}, {len(planned) - len(todo)} done, {len(todo)} to run")
        if a.dry_run:
            if a.launcher == "local":
                print("\n".join(shlex.join(glue_command(r.argv, "python")[1:]) for r in todo))
            elif todo:
                print(launch.slurm_dry_run(a, root, todo, f"adalora-{a.protocol}"))
            return 0
        pool = launch.make(a, root, WORKERS, f"adalora-{a.protocol}")
        outcomes = drive(planner, pool, on_end=print_outcome)
    failed = sorted(o.name for o in outcomes if not o.ok)
    if failed:
        print("failed:", *failed, sep="\n  ")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
