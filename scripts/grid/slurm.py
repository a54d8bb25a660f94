"""Runs of a grid sent to SLURM through submitit: packs of runs, one pack per job of a job array.

The submitting process runs the grid loop (scripts/grid/pool.py: ``drive``) with a
``SubmititPool``: it plans, submits the runnable runs as one job array, waits until a job ends,
plans again (runs that depend on landed results become runnable) and submits those as the next
array, until nothing is left. It has to stay alive while the grid runs (a login-node tmux).

Each array job runs ``PackJob``: its pack of glue.py commands, the same commands the local pool
runs, at once on the job's own machine through a ``LocalPool`` (``runs_per_gpu`` runs on each of
the job's GPUs, or one run on CPUs). glue.py writes each result file atomically where the planner
looks (``<output-dir>/<run-name>.json``) and a checkpoint every ``--save-steps`` steps. A job
that is preempted, or reaches its time limit, gets submitit's signal: ``PackJob.checkpoint``
stops its runs and requeues the job, and the requeued job runs the same commands, which resume
from their latest checkpoints (a run whose result file exists is skipped).

``cluster="local"`` sends the same packs through submitit's local executor (subprocesses on
this machine, the same pickled job, the same requeue): the tests, and a way to try a grid
without a scheduler. ``sbatch_preview`` is the dry run: submitit's own job script for an array.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import submitit

from scripts.grid import pool
from scripts.grid.options import SlurmOptions
from scripts.grid.pool import LocalPool, Outcome, Run, cpu_slots, drive, gpu_slots, visible_gpus

# submitit requeues a job that reached its time limit at most this many times (a preemption is
# not counted): a run longer than --time goes on from its checkpoint in the next job
MAX_TIMEOUTS = 20
SIGNAL_DELAY_S = 120  # the signal comes this long before the time limit: room to stop cleanly


def sbatch_params(opts: SlurmOptions) -> dict:
    """submitit's SlurmExecutor parameters (sbatch options) of ``opts``."""
    p = dict(
        job_name=opts.job_name,
        time=opts.time_min,
        cpus_per_task=opts.cpus,
        array_parallelism=opts.array_parallelism,
        signal_delay_s=SIGNAL_DELAY_S,
    )
    if opts.gpus_per_job:
        p["gpus_per_node"] = opts.gpus_per_job
    if opts.partition:
        p["partition"] = opts.partition
    if opts.mem_gb:
        p["mem"] = f"{opts.mem_gb:g}GB"
    if opts.setup:
        p["setup"] = list(opts.setup)
    if opts.sbatch:
        p["additional_parameters"] = dict(opts.sbatch)
    return p


def packs(runs: Sequence[Run], size: int) -> list[list[Run]]:
    """``runs`` in order, ``size`` per job."""
    return [list(runs[i : i + size]) for i in range(0, len(runs), size)]


def stop_runs(grace_s: float = 60.0) -> None:
    """Stop this process's running glue.py children (SIGTERM, then SIGKILL after ``grace_s``):
    they resume from their last checkpoint when the job runs again."""
    live = list(pool.LIVE)
    for p in live:
        p.terminate()
    for p in live:
        try:
            p.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            p.kill()


class PackJob(submitit.helpers.Checkpointable):
    """One array job: its runs at once on the job's machine (module doc). Returns the runs'
    Outcomes as dicts. Requeued as it is (``checkpoint``), after its runs are stopped."""

    def __init__(self, runs: Sequence[Run], opts: SlurmOptions):
        self.runs, self.opts = list(runs), opts

    def __call__(self) -> list[dict]:
        gpus = visible_gpus() if self.opts.gpus_per_job else []
        if gpus:
            slots = gpu_slots(gpus, self.opts.runs_per_gpu, self.opts.threads)
        else:
            slots = cpu_slots(len(self.runs), self.opts.threads)
        outcomes = drive(lambda: self.runs, LocalPool(slots))
        return [asdict(o) for o in outcomes]

    def checkpoint(self, *args, **kwargs):
        stop_runs()
        return super().checkpoint(*args, **kwargs)


class SubmititPool:
    """The grid loop's launcher for SLURM (or submitit's local executor): ``start`` submits
    packs of runs as one job array, ``wait`` polls until a job ends."""

    def __init__(
        self, folder: Path, opts: SlurmOptions, cluster: str = "slurm", poll_s: float = 30.0
    ):
        self.opts, self.poll_s = opts, poll_s
        if cluster == "slurm":
            self.ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_TIMEOUTS)
            self.ex.update_parameters(**sbatch_params(opts))
        else:
            self.ex = submitit.LocalExecutor(folder=folder, max_num_timeout=MAX_TIMEOUTS)
            self.ex.update_parameters(
                timeout_min=opts.time_min,
                gpus_per_node=opts.gpus_per_job,
                signal_delay_s=SIGNAL_DELAY_S,
            )
        self.jobs: dict = {}  # submitit job -> its runs

    @property
    def capacity(self) -> int:
        return self.opts.array_parallelism * self.opts.runs_per_job

    def running(self) -> set[str]:
        return {r.name for rs in self.jobs.values() for r in rs}

    def start(self, runs: Sequence[Run]) -> None:
        groups = packs(runs, self.opts.runs_per_job)
        with self.ex.batch():
            jobs = [self.ex.submit(PackJob(g, self.opts)) for g in groups]
        for job, g in zip(jobs, groups):
            self.jobs[job] = g
        ids = sorted({str(j.job_id).split("_")[0] for j in jobs})
        print(f"submitted {len(runs)} runs in {len(groups)} jobs ({', '.join(ids)})", flush=True)

    def wait(self) -> list[Outcome]:
        while True:
            ended = [j for j in self.jobs if j.done()]
            if ended:
                break
            time.sleep(self.poll_s)
        out = []
        for job in ended:
            runs = self.jobs.pop(job)
            try:
                got = [Outcome(**d) for d in job.result()]
            except Exception as e:  # noqa: BLE001 - a failed job fails its runs, not the grid
                lines = str(e).strip().splitlines()
                why = f"job {job.job_id} failed: {lines[-1] if lines else type(e).__name__}"
                got = [Outcome(r.name, None, 0.0, why) for r in runs if not r.done()]
            out += got
        return out

    def close(self) -> None:
        pass  # submitted jobs go on; re-running the grid command skips their landed results


def sbatch_preview(folder: Path, opts: SlurmOptions, runs: Sequence[Run], python: str) -> str:
    """The dry run: the job script submitit writes for the array of ``runs`` (its sbatch
    header and command) and, per array task, the glue.py commands that task runs."""
    # submitit's own job-script writer: SlurmExecutor itself refuses to start without srun
    from submitit.slurm.slurm import _make_sbatch_string

    from scripts.grid.command import glue_command

    groups = packs(runs, opts.runs_per_job)
    submit = " ".join(
        [shlex.quote(python), "-u -m submitit.core._submit", shlex.quote(str(folder))]
    )
    text = _make_sbatch_string(
        command=submit,
        folder=folder,
        map_count=len(groups) if len(groups) > 1 else None,
        **sbatch_params(opts),
    )
    lines = [text.rstrip(), ""]
    for i, g in enumerate(groups):
        lines.append(f"# array task {i}: {len(g)} run(s) at once")
        lines += [f"#   {shlex.join(glue_command(r.argv, 'python')[1:])}" for r in g]
    return "\n".join(lines)
