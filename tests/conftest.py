"""Test setup: offline, single-threaded. The repo root is importable (experiments/, scripts/,
tests.helpers) through pytest's ``pythonpath`` setting in pyproject.toml."""

import os

import pytest

# before anything imports torch or the HF libraries, which read them at import time
for k, v in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_EVALUATE_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "disabled",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(k, v)


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)


def _test_device() -> str:
    """ADALORA_TEST_DEVICE (e.g. "cuda", "cuda:1", "cpu"), else "cuda" when available."""
    import torch

    return os.environ.get("ADALORA_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(scope="session")
def device():
    """The device the core tests that take it run on (scripts/device_check.py: CUDA)."""
    import torch

    d = torch.device(_test_device())
    if d.type == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"ADALORA_TEST_DEVICE={d} but CUDA is not available")
    return d


# The runner tests' tiny model folder and GLUE folder (module scope: each test file builds its own).
@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    from tests.helpers import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-bert", "bert")


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory):
    """Every task, train (16 rows) and every dev split (8 rows); each split's first text starts
    with a double quote; MRPC files carry the byte-order mark."""
    from tests.helpers import write_glue_dir

    return write_glue_dir(tmp_path_factory.mktemp("glue"), n_train=16, n_eval=8)
