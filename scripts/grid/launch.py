"""The launcher a grid script's flags ask for (scripts/grid/options.py), and its dry run."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from scripts.grid import options
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
