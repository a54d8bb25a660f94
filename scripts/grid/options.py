"""Where a grid's runs go: the launcher flags that scripts/reproduce.py and scripts/ablate.py
share, their checks (one line, exit status 2: scripts/checks.py) and the launcher they make.

    --launcher local        this machine (default): --workers N processes, one CPU thread each,
                            or --runs-per-gpu K: K runs at once on each visible GPU
    --launcher slurm        a SLURM job array through submitit (scripts/grid/slurm.py): each job
                            runs --runs-per-gpu K runs on each of its --gpus-per-job GPUs (one
                            run on its CPUs with --gpus-per-job 0) for at most --time minutes,
                            --array-parallelism jobs queued or running at once (the submitting
                            process submits more as these end, re-planning first)
    --launcher slurm-local  the same jobs through submitit's local executor, on this machine
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from scripts.checks import BadInput, at_least, positive
from scripts.grid.command import ROOT
from scripts.grid.pool import LocalPool, cpu_slots, gpu_slots, visible_gpus

LAUNCHERS = ("local", "slurm", "slurm-local")
SLURM_ONLY = (
    "partition",
    "time",
    "gpus_per_job",
    "cpus_per_job",
    "mem_gb",
    "array_parallelism",
    "slurm_setup",
    "slurm_option",
)
# sbatch options the flags above set (or submitit sets itself): not through --slurm-option
OWN_SBATCH = {
    "partition": "--partition",
    "time": "--time",
    "gpus-per-node": "--gpus-per-job",
    "gres": "--gpus-per-job",
    "cpus-per-task": "--cpus-per-job",
    "mem": "--mem-gb",
    "array": "--array-parallelism",
    "job-name": None,
    "output": None,
    "error": None,
    "signal": None,
    "open-mode": None,
}


@dataclass(frozen=True)
class SlurmOptions:
    """What each job of the array asks for. ``runs_per_gpu`` runs share each of the job's
    ``gpus_per_job`` GPUs (a job without GPUs runs one run on its CPUs); ``cpus_per_job`` are
    split evenly between the job's runs (their torch threads)."""

    time_min: int = 240
    gpus_per_job: int = 1
    runs_per_gpu: int = 1
    cpus_per_job: int | None = None  # default: 2 per run
    partition: str | None = None
    mem_gb: float | None = None
    array_parallelism: int = 64
    setup: tuple[str, ...] = ()
    sbatch: tuple[tuple[str, str], ...] = ()  # any other sbatch option, KEY=VALUE
    job_name: str = "adalora-grid"

    @property
    def runs_per_job(self) -> int:
        return max(1, self.gpus_per_job) * self.runs_per_gpu

    @property
    def cpus(self) -> int:
        return self.cpus_per_job or 2 * self.runs_per_job

    @property
    def threads(self) -> int:
        return max(1, self.cpus // self.runs_per_job)


def add_flags(p: argparse.ArgumentParser, workers: int) -> None:
    """The launcher flags; ``workers``: the local default of --workers."""
    g = p.add_argument_group("where the runs go (scripts/grid/options.py)")
    g.add_argument(
        "--launcher",
        default="local",
        choices=LAUNCHERS,
        help="local: this machine; slurm: a SLURM job array through submitit; "
        "slurm-local: the same jobs through submitit's local executor",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"local: runs at once, one CPU thread each (default {workers})",
    )
    g.add_argument(
        "--runs-per-gpu",
        type=int,
        default=None,
        help="K runs at once on each GPU (local: each visible GPU, instead of "
        "--workers; slurm: each of a job's GPUs; default 1)",
    )
    d = SlurmOptions()
    g.add_argument("--partition", default=None, help="slurm: partition (default: the cluster's)")
    g.add_argument(
        "--time",
        type=int,
        default=None,
        help=f"slurm: minutes per job (default {d.time_min}); a run still going "
        "then is requeued and resumes from its checkpoint",
    )
    g.add_argument(
        "--gpus-per-job",
        type=int,
        default=None,
        help=f"slurm: GPUs per job (default {d.gpus_per_job}; 0: CPU jobs)",
    )
    g.add_argument(
        "--cpus-per-job",
        type=int,
        default=None,
        help="slurm: CPUs per job, shared by its runs (default 2 per run)",
    )
    g.add_argument("--mem-gb", type=float, default=None, help="slurm: memory per job")
    g.add_argument(
        "--array-parallelism",
        type=int,
        default=None,
        help=f"slurm: jobs queued or running at once (default {d.array_parallelism}); more "
        "are submitted, as new arrays, when these end",
    )
    g.add_argument(
        "--slurm-setup",
        action="append",
        default=None,
        metavar="CMD",
        help="slurm: a shell line each job runs first (repeatable), e.g. 'module load cuda'",
    )
    g.add_argument(
        "--slurm-option",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="slurm: any other sbatch option (repeatable), e.g. account=lab",
    )


def check(args) -> None:
    """Every launcher flag (module doc); raises BadInput."""
    for key in ("workers", "runs_per_gpu", "time", "cpus_per_job", "array_parallelism"):
        at_least(args, key, 1)
    at_least(args, "gpus_per_job", 0, "pass --gpus-per-job 0 (CPU jobs) or more")
    positive(args, "mem_gb", "gigabytes", "pass e.g. --mem-gb 16")
    if args.partition is not None and (not args.partition or re.search(r"\s", args.partition)):
        raise BadInput(
            "--partition",
            repr(args.partition),
            "not a partition name",
            "pass the name sinfo lists, e.g. --partition gpu",
        )
    for opt in args.slurm_option or []:
        key, sep, value = opt.partition("=")
        if not sep or not re.fullmatch(r"[a-z][a-z0-9-]*", key) or not value:
            raise BadInput(
                "--slurm-option",
                opt,
                "not KEY=VALUE (an sbatch option)",
                "pass e.g. --slurm-option account=lab",
            )
        if key in OWN_SBATCH:
            own = OWN_SBATCH[key]
            raise BadInput(
                "--slurm-option",
                opt,
                f"{key} is set by the launcher",
                f"use {own}" if own else "drop it",
            )
    given = [k for k in SLURM_ONLY if getattr(args, k) is not None]
    if args.launcher == "local":
        if given:
            k = given[0]
            v = getattr(args, k)
            raise BadInput(
                "--" + k.replace("_", "-"),
                v[0] if isinstance(v, list) else v,
                "only with --launcher slurm (or slurm-local)",
                f"add --launcher slurm, or drop {'--' + k.replace('_', '-')}",
            )
        if args.workers is not None and args.runs_per_gpu is not None:
            raise BadInput(
                "--runs-per-gpu",
                args.runs_per_gpu,
                "and --workers both set how many runs go at once",
                "give --workers N (CPU processes) or "
                "--runs-per-gpu K (K runs on each GPU), not both",
            )
        if args.runs_per_gpu is not None and not visible_gpus():
            raise BadInput(
                "--runs-per-gpu",
                args.runs_per_gpu,
                "no GPU is visible here",
                "use --workers N on CPUs, or run it where a GPU is",
            )
        return
    if args.workers is not None:
        raise BadInput(
            "--workers",
            args.workers,
            "only with --launcher local",
            "with SLURM, --array-parallelism sets the jobs at once",
        )
    if args.gpus_per_job == 0 and args.runs_per_gpu is not None:
        raise BadInput(
            "--runs-per-gpu",
            args.runs_per_gpu,
            "needs GPUs, and --gpus-per-job is 0",
            "drop --runs-per-gpu, or pass --gpus-per-job 1 or more",
        )
    if importlib.util.find_spec("submitit") is None:
        raise BadInput(
            "--launcher",
            args.launcher,
            "needs the submitit package",
            "pip install -e '.[cluster]' (or pip install submitit)",
        )
    if args.launcher == "slurm" and not args.dry_run and shutil.which("srun") is None:
        raise BadInput(
            "--launcher",
            "slurm",
            "no SLURM here (no srun on PATH)",
            "run it on the cluster's login node, or add --dry-run to see the jobs",
        )


def slurm_options(args, job_name: str) -> SlurmOptions:
    d = SlurmOptions()
    return SlurmOptions(
        time_min=args.time or d.time_min,
        gpus_per_job=d.gpus_per_job if args.gpus_per_job is None else args.gpus_per_job,
        runs_per_gpu=args.runs_per_gpu or 1,
        cpus_per_job=args.cpus_per_job,
        partition=args.partition,
        mem_gb=args.mem_gb,
        array_parallelism=args.array_parallelism or d.array_parallelism,
        setup=tuple(args.slurm_setup or ()),
        sbatch=tuple(tuple(o.split("=", 1)) for o in args.slurm_option or ()),
        job_name=job_name,
    )


def submitit_folder(root: str | os.PathLike) -> Path:
    """submitit's job scripts, pickles and logs: <grid output>/logs/submitit/<job id>/."""
    return ROOT / root / "logs" / "submitit" / "%j"


def local_pool(args, workers: int, base_env: dict | None = None) -> LocalPool:
    """--workers CPU processes, or --runs-per-gpu runs on each visible GPU."""
    if args.runs_per_gpu:
        gpus = visible_gpus()
        n = len(gpus) * args.runs_per_gpu
        return LocalPool(gpu_slots(gpus, args.runs_per_gpu, gpu_threads(n)), base_env)
    return LocalPool(cpu_slots(args.workers or workers), base_env)


def gpu_threads(n_runs: int) -> int:
    """CPU threads of each of ``n_runs`` GPU runs sharing this machine's cores."""
    return max(1, (os.cpu_count() or 1) // max(1, n_runs))
