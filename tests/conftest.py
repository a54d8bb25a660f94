"""Test setup: offline, single-threaded. The repo root is importable (experiments/, scripts/,
tests.helpers) through pytest's ``pythonpath`` setting in pyproject.toml.

Under ``CI=true`` (.ci/run sets it) a test may not skip for want of an independent reference:
a skip because ``peft`` cannot be imported fails, and so does a skip for missing shared data
(../shared beside the repository) while that folder is there, i.e. when it is incomplete. A
clean clone has no ../shared at all (.ci/run runs in one); its spec-based checks then run on
the copy in tests/data/adalora_reference.json, and only the checks on the real data files skip.
A skip counts as one for shared data when its reason says "shared data", names a path under
``/shared/`` or says "no real GLUE" / "no real summarization data".
"""

import os
import re
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)  # tests/test_guard_ci.py runs pytest on generated test files

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


SHARED = Path(__file__).resolve().parents[2] / "shared"
_NO_PEFT = re.compile(r"could not import 'peft'")
_NO_SHARED = re.compile(r"shared data|/shared/|no real (GLUE|summari)")


def _forbidden_skip(reason: str) -> str | None:
    """Why a skip with this reason must fail under CI=true (None: it may skip)."""
    if os.environ.get("CI", "").lower() not in ("true", "1", "yes"):
        return None
    if _NO_PEFT.search(reason):
        return "peft is not importable (pip install -e '.[dev]' installs it)"
    if _NO_SHARED.search(reason) and SHARED.is_dir():
        return f"{SHARED} is there but lacks what this test reads"
    return None


def _fail_forbidden_skip(report) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    lr = report.longrepr
    reason = lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)
    reason = reason.removeprefix("Skipped: ")
    why = _forbidden_skip(reason)
    if why:
        report.outcome = "failed"
        report.longrepr = f"CI=true: an independent check may not skip: {why} (skip: {reason})"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_forbidden_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module-level ``pytest.importorskip("peft")`` skips at collection."""
    outcome = yield
    _fail_forbidden_skip(outcome.get_result())


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
