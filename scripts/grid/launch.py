"""The launcher a grid script's flags ask for (scripts/grid/options.py), and its dry run."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from scripts.checks import BadInput
from scripts.grid import options
from scripts.grid.command import flag_value
from scripts.grid.pool import Run


def make(args, root: str | os.PathLike, workers: int, job_name: str):
    """A LocalPool (--launcher local) or a SubmititPool (slurm, slurm-local); ``workers``: the
    script's default --workers."""
    if args.launcher == "local":
        return options.local_pool(args, workers)
    from scripts.grid.slurm import SubmititPool  # submitit: only for these launchers

    cluster = "slurm" if args.launcher == "slurm" else "local"
    return SubmititPool(
        options.submitit_folder(root),
        options.slurm_options(args, job_name),
        cluster,
        poll_s=30.0 if cluster == "slurm" else 0.5,
    )


def slurm_dry_run(args, root: str | os.PathLike, runs: Sequence[Run], job_name: str) -> str:
    """What --dry-run prints for --launcher slurm / slurm-local: the job script of the array
    the runs would be submitted as (submitit's), and each array task's glue.py commands."""
    from scripts.grid.slurm import sbatch_preview

    opts = options.slurm_options(args, job_name)
    return sbatch_preview(options.submitit_folder(root), opts, runs, sys.executable)


def check_machine(args, runs: Sequence[Run]) -> None:
    """Runs that train on this machine (--launcher local or slurm-local) ask for a --precision it
    runs natively, as glue.py checks at the start of each run (experiments.trainer
    resolve_precision): a grid of bf16 runs on a CPU without native bf16 (emulated, 14-18x
    slower) stops here, once, before any run, instead of failing run after run. SLURM runs are
    checked on their nodes. Raises BadInput."""
    if args.launcher == "slurm":
        return
    from experiments.trainer import resolve_precision

    seen = set()
    for r in runs:
        precision = flag_value(r.argv, "--precision")
        if precision is None or precision in seen:
            continue
        seen.add(precision)
        try:
            resolve_precision(precision, given=True)
        except BadInput as e:  # the grid's fix is another machine, not another precision
            fix = (
                "run the grid where that precision is native (a CPU with avx512_bf16 / AMX, or "
                "GPUs with --runs-per-gpu K), or on a cluster (--launcher slurm)"
            )
            raise BadInput(e.flag, f"{e.value} (planned run {r.name})", e.problem, fix) from None
