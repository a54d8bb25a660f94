"""Where a number came from: library versions, the machine, the command, the commit.

Shared by the result files (experiments/train.py, schema in experiments/results.py) and the
speed benchmark (scripts/bench_step.py).
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

# Reported when importable; python, torch and transformers always are.
OPTIONAL_MODULES = ("adalora", "peft", "datasets", "wandb")


def versions(modules: tuple[str, ...] = OPTIONAL_MODULES) -> dict:
    """{"python", "torch", "transformers", and every module of ``modules`` that imports}."""
    import torch
    import transformers

    v = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    for mod in modules:
        try:
            v[mod] = __import__(mod).__version__
        except Exception:  # absent, or broken: a probe must not fail the run it describes
            pass
    return v


def cpu_model() -> str | None:
    """The CPU's model name: /proc/cpuinfo's "model name", else lscpu's "Model name" (ARM
    cpuinfo has none), else None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in lscpu.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return None


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively: oneDNN's own check (avx512_bf16 / AMX), with
    /proc/cpuinfo's flags as the fallback. Without it, bf16 autocast is emulated and slow."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags


def gpu_name(device=0) -> str | None:
    import torch

    return torch.cuda.get_device_name(device) if torch.cuda.is_available() else None


def hardware() -> dict:
    """The ``hardware`` entry of a result file."""
    import torch

    gpu = gpu_name()
    return {
        "device": "cuda" if gpu else "cpu",
        "cpu": cpu_model() or platform.processor() or platform.machine(),
        # the SIMD level torch dispatches to, and native bf16: "AMD EPYC" alone names CPUs whose
        # bf16 steps differ 20x in speed
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "n_threads": torch.get_num_threads(),
        "n_cpus": os.cpu_count(),
        "gpu": gpu,
        "world_size": int(os.environ.get("WORLD_SIZE", 1)),
    }


def command(argv: list[str]) -> str:
    """The command line as run: the interpreter's name, then ``argv`` (shlex-quoted)."""
    return shlex.join([Path(sys.executable).name] + list(argv))


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """HEAD of the repository holding ``cwd`` (default: this file's), or None."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=cwd or Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def git_dirty(cwd: str | os.PathLike | None = None) -> bool | None:
    """Whether tracked files of the checkout holding ``cwd`` differ from HEAD (untracked files,
    such as the result files a grid writes, do not count); None outside git."""
    try:
        proc = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=cwd or Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(proc.stdout.strip()) if proc.returncode == 0 else None
