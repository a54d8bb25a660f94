"""Runs of a grid, run on this machine: several glue.py processes at once, each in its own slot
(one CPU thread, or a share of one GPU), re-planned as results land.

``drive(plan, launcher)`` is the loop every grid shares, whatever runs the processes: ask the
planner for the runs it needs now (a run whose result file exists is done), start as many as
there are free slots, wait for one to end, ask again. The planner may add runs as results land
(the converged grid's seed runs follow its sweep). A run that exits non-zero, or exits 0 without
its result file, is failed and not started again by this loop.

``LocalPool`` runs each run as a subprocess in a free slot; ``scripts/grid/slurm.py`` sends
packs of runs to SLURM as job arrays, and each job runs its pack with a ``LocalPool``. Slots:
``cpu_slots(n)`` (n processes, one thread each: the local grid), ``gpu_slots(gpus, k)`` (k
processes on each GPU, pinned with CUDA_VISIBLE_DEVICES: small runs packed on one GPU).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from scripts.grid.command import ROOT, glue_command


@dataclass(frozen=True)
class Run:
    """One glue.py run: its name, glue.py's arguments (scripts/grid/command.py: glue_argv),
    its result file and its log (None: the run writes to this process's stdout)."""

    name: str
    argv: tuple[str, ...]
    result: Path
    log: Path | None = None

    def done(self) -> bool:
        return (ROOT / self.result).exists()  # relative paths are relative to the repo root


@dataclass(frozen=True)
class Outcome:
    """How a run ended: exit status (None: not started or killed at the timeout), wall
    seconds, and why it failed ("" when it wrote its result file)."""

    name: str
    rc: int | None
    wall_s: float
    why: str = ""

    @property
    def ok(self) -> bool:
        return not self.why


@dataclass(frozen=True)
class Slot:
    """Where a run goes: environment variables set for it (threads, the GPU it may see)."""

    env: dict = field(default_factory=dict)


def threads_env(threads: int) -> dict:
    return {
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
    }


def cpu_slots(n: int, threads: int = 1) -> list[Slot]:
    """``n`` processes at once, ``threads`` threads each (the local grid: one per core)."""
    return [Slot(threads_env(threads)) for _ in range(n)]


def gpu_slots(gpus: Sequence[str], runs_per_gpu: int, threads: int = 1) -> list[Slot]:
    """``runs_per_gpu`` processes on each GPU of ``gpus`` (CUDA device ids or UUIDs), each
    seeing only its own GPU; slot i goes to GPU i mod len(gpus), so that runs spread over the
    GPUs before they share one."""
    n = len(gpus) * runs_per_gpu
    return [
        Slot({**threads_env(threads), "CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]})
        for i in range(n)
    ]


def visible_gpus() -> list[str]:
    """The GPUs this process may use: CUDA_VISIBLE_DEVICES when set, else torch's count."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


# Processes started by execute() and still running: a preempted SLURM job stops them before it
# is requeued (scripts/grid/slurm.py), so that no run goes on writing after its job ended.
LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()


def execute(run: Run, env: dict, python: str | None = None, timeout_s: float | None = None):
    """Run one glue.py command from the repository root with ``env``; its output is appended to
    ``run.log`` (a resumed run adds to its log). Returns its Outcome."""
    t = time.time()
    cmd = glue_command(run.argv, python)
    log = None
    if run.log is not None:
        path = ROOT / run.log
        path.parent.mkdir(parents=True, exist_ok=True)
        log = open(path, "a")  # noqa: SIM115 - closed below
    try:
        out = dict(stdout=log, stderr=subprocess.STDOUT) if log else {}
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, **out)
    except OSError as e:
        if log:
            log.close()
        return Outcome(run.name, None, 0.0, f"could not start ({e})")
    with _LIVE_LOCK:
        LIVE.add(p)
    try:
        rc = p.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        rc = None
    finally:
        with _LIVE_LOCK:
            LIVE.discard(p)
        if log:
            log.close()
    wall = round(time.time() - t, 2)
    if rc is None:
        return Outcome(run.name, None, wall, f"killed after {timeout_s:.0f} s")
    if rc != 0:
        return Outcome(run.name, rc, wall, f"exit status {rc}")
    if not run.done():
        return Outcome(run.name, rc, wall, f"exited 0 but wrote no {run.result}")
    return Outcome(run.name, rc, wall)


class LocalPool:
    """Runs in subprocesses on this machine, one per free slot."""

    def __init__(
        self,
        slots: Sequence[Slot],
        base_env: dict | None = None,
        python: str | None = None,
        timeout_s: float | None = None,
    ):
        self.slots, self.python, self.timeout_s = list(slots), python, timeout_s
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.free = list(range(len(self.slots)))
        self.futures: dict[Future, tuple[str, int]] = {}
        self.ex = ThreadPoolExecutor(max(1, len(self.slots)))

    @property
    def capacity(self) -> int:
        return len(self.slots)

    def running(self) -> set[str]:
        return {name for name, _ in self.futures.values()}

    def start(self, runs: Sequence[Run]) -> None:
        for run in runs:
            i = self.free.pop(0)
            env = {**self.base_env, **self.slots[i].env}
            fut = self.ex.submit(execute, run, env, self.python, self.timeout_s)
            self.futures[fut] = (run.name, i)

    def wait(self) -> list[Outcome]:
        """Block until at least one run ends; their Outcomes."""
        finished, _ = wait(list(self.futures), return_when=FIRST_COMPLETED)
        out = []
        for fut in finished:
            _, i = self.futures.pop(fut)
            self.free.append(i)
            out.append(fut.result())
        return out

    def close(self) -> None:
        self.ex.shutdown(wait=True)


def drive(
    plan: Callable[[], Sequence[Run]],
    launcher,
    on_start: Callable[[Run], None] | None = None,
    on_end: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """The grid loop (module doc): start the runs ``plan()`` lists that are neither done, nor
    running, nor failed, as slots free up, until none is left and none is running. Returns
    every Outcome, in the order the runs ended."""
    outcomes: list[Outcome] = []
    failed: set[str] = set()
    try:
        while True:
            busy = launcher.running()
            free = launcher.capacity - len(busy)
            if free > 0:
                todo = [
                    r
                    for r in plan()
                    if r.name not in busy and r.name not in failed and not r.done()
                ][:free]
                for r in todo:
                    if on_start:
                        on_start(r)
                if todo:
                    launcher.start(todo)
            if not launcher.running():
                return outcomes
            for o in launcher.wait():
                outcomes.append(o)
                if not o.ok:
                    failed.add(o.name)
                if on_end:
                    on_end(o)
    finally:
        launcher.close()


def print_outcome(o: Outcome) -> None:
    """``ok   NAME (12s)`` / ``FAIL NAME (12s)``, as the grid scripts print a finished run."""
    print(f"{'ok  ' if o.ok else 'FAIL'} {o.name} ({o.wall_s:.0f}s)", flush=True)
