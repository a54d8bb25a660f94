"""One process at a time per run, and per grid: an exclusive lock held from a run's start to its
result file.

A glue.py / summarization.py run holds ``<output-dir>/.<run-name>.lock`` while it trains
(experiments/train.py), and scripts/reproduce.py holds ``<output-dir>/.reproduce.lock`` while it
drives a grid. A second process with the same lock (a second grid driver, a run started by hand
beside the grid) is refused with one line naming the holder, before it clears a fresh run's
checkpoint folder, resumes from checkpoints another process is still writing, or trains a run
whose result the other will write.

``fcntl.flock``: the kernel releases the lock when its holder exits, however it exits, so a
killed run leaves no stale lock (its file may stay behind, unlocked, and is reused). On a file
system without flock (some NFS / Lustre mounts) the run goes on unlocked with a warning on
stderr. Lock files start with a dot (run names may not), and are git-ignored.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from experiments.validation.base import BadInput

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None

# flock's errors on a file system that has no locks (the run goes on unlocked, with a warning)
NO_LOCKS = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP}


def run_lock_path(output_dir, run_name: str) -> Path:
    return Path(output_dir) / f".{run_name}.lock"


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "a process that has not yet written its name"


def _acquire(path: Path) -> int | None:
    """An open descriptor of ``path`` holding its exclusive lock, None on a file system without
    locks; raises BlockingIOError when another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in NO_LOCKS:
                return None
            raise
        # a holder that just finished unlinks the file: a lock on its old inode is no lock
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextmanager
def hold(path, flag: str, value, fix: str) -> Iterator[None]:
    """Hold the exclusive lock ``path`` (its folder is created) for the ``with`` block. When
    another process holds it: BadInput(flag, value, "<holder> ...", fix) at once. The lock file
    names this process (pid, host, start) for that message, and is removed on exit."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = _acquire(path) if fcntl is not None else None
    except BlockingIOError:
        holder = _holder(path)
        raise BadInput(flag, value, f"another process holds {path} now ({holder})", fix) from None
    if fd is None:
        print(
            f"warning: no file lock at {path} (this file system or OS has no flock): make sure "
            "no other process runs this at the same time",
            file=sys.stderr,
        )
        yield
        return
    try:
        os.ftruncate(fd, 0)
        since = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {since}\n".encode())
        yield
    finally:
        try:
            os.unlink(path)  # only the holder removes it, while still holding it
        except FileNotFoundError:
            pass
        os.close(fd)
