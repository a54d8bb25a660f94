"""Subprocesses of the device check: their environment, running one with a timeout, and the
result entries of a part (failed / skipped)."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEVICE_CHECK = ROOT / "scripts" / "device_check.py"


def tail(text: str | bytes | None, n: int = 3000) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return text[-n:]


def child_env(device: str, threads: int | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        WANDB_MODE="disabled",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
        ADALORA_TEST_DEVICE=device,
    )
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_cmd(cmd: list[str], timeout: float, env: dict, log: Path | None = None) -> dict:
    """Run a subprocess; returns rc, wall_s, timed_out and the output's tail."""
    t0 = time.perf_counter()
    try:
        r = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(1, timeout)
        )
        rc, out, err, timed_out = r.returncode, r.stdout, r.stderr, False
    except subprocess.TimeoutExpired as e:
        rc, out, err, timed_out = None, tail(e.stdout), tail(e.stderr), True
    wall = time.perf_counter() - t0
    if log is not None:
        log.write_text(f"$ {shlex.join(cmd)}\n--- stdout\n{out}\n--- stderr\n{err}\n")
    return {
        "cmd": shlex.join(cmd),
        "rc": rc,
        "timed_out": timed_out,
        "wall_s": round(wall, 2),
        "stdout_tail": tail(out, 1500),
        "stderr_tail": tail(err, 2500),
    }


def failed(error: str, **kw) -> dict:
    return {"status": "failed", "error": error, **kw}


def skipped(reason: str, **kw) -> dict:
    return {"status": "skipped", "reason": reason, **kw}
