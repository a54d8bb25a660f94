"""experiments/glue.py with local GLUE TSV files runs where ``datasets``, ``wandb`` and
``evaluate`` are not installed (the GPU machine has none of them).

The run happens in a subprocess started with ``python -S`` and a shadow site-packages folder
that links every entry of this environment's site-packages except those three packages and
their metadata: for that process they are simply not installed (``import`` raises
ModuleNotFoundError, ``importlib.util.find_spec`` returns None, no dist-info), as on a machine
without them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = ("datasets", "wandb", "evaluate")


def _blocked(name: str) -> bool:
    n = name.lower()
    return any(
        n == b or (n.startswith(b + "-") and n.endswith((".dist-info", ".egg-info")))
        for b in BLOCKED
    )


def shadow_site(tmp_path: Path) -> Path:
    shadow = tmp_path / "site"
    shadow.mkdir()
    for key in ("purelib", "platlib"):
        site = Path(sysconfig.get_paths()[key])
        for entry in site.iterdir():
            dst = shadow / entry.name
            if entry.suffix == ".pth" or _blocked(entry.name) or dst.exists():
                continue
            dst.symlink_to(entry)
    return shadow


def run_without(tmp_path: Path, args: list[str], env_extra: dict | None = None):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WANDB_", "PYTHONPATH", "GLUE_DIR"))
    }
    env.update(
        PYTHONPATH=os.pathsep.join([str(shadow_site(tmp_path)), str(ROOT)]),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        **(env_extra or {}),
    )
    probe = (
        "import importlib.util, sys; "
        f"missing = [m for m in {BLOCKED!r} if importlib.util.find_spec(m) is None]; "
        f"assert missing == list({BLOCKED!r}), missing; "
        "sys.argv = ['experiments/glue.py'] + sys.argv[1:]; "
        "import runpy; runpy.run_path('experiments/glue.py', run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-S", "-c", probe, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    from helpers import save_tiny_model, write_glue_dir

    root = tmp_path_factory.mktemp("nodeps")
    return save_tiny_model(root / "model"), write_glue_dir(root / "glue", tasks=["stsb"])


@pytest.mark.parametrize(
    "wandb_flag", [["--wandb", "disabled"], []], ids=["wandb-disabled", "no-wandb-flag"]
)
def test_glue_runs_without_datasets_wandb_evaluate(tmp_path, tiny_setup, wandb_flag):
    """Both with ``--wandb disabled`` and with no W&B flag at all (and no WANDB_MODE): without
    wandb installed the run must not try to log to it."""
    model, data = tiny_setup
    out = tmp_path / "runs"
    args = [
        "--task", "stsb", "--method", "adalora", "--model", str(model), "--data-dir", str(data),
        "--max-steps", "2", "--max-train-samples", "16", "--max-eval-samples", "8",
        "--batch-size", "4", "--max-length", "32", "--output-dir", str(out),
        "--run-name", "nodeps", *wandb_flag,
    ]  # fmt: skip
    r = run_without(tmp_path, args)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    rec = json.loads((out / "nodeps.json").read_text())
    assert rec["status"] == "ok" and rec["task"] == "stsb"
    assert "datasets" not in rec["versions"] and "wandb" not in rec["versions"]
