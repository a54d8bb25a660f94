"""tests/conftest.py's CI rule: under CI=true a skip for a missing ``peft``, or for missing
shared data while ../shared is there, fails; other skips (no CUDA, ...) and runs without CI
stay skips."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).parent / "conftest.py"

INNER_CONFTEST = f"""
import importlib.util, os
from pathlib import Path

spec = importlib.util.spec_from_file_location("guarded_conftest", {str(CONFTEST)!r})
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
m.SHARED = Path(os.environ["GUARD_SHARED"])
pytest_runtest_makereport = m.pytest_runtest_makereport
pytest_make_collect_report = m.pytest_make_collect_report
"""

SKIPPING_TESTS = """
import pytest

def test_no_peft():
    pytest.importorskip("peft")

@pytest.mark.skipif(True, reason="shared data folder /x/shared/data/glue is absent")
def test_no_shared_data():
    pass

@pytest.mark.skipif(True, reason="no real GLUE")
def test_no_real_glue():
    pass

@pytest.mark.skipif(True, reason="needs CUDA")
def test_no_cuda():
    pass
"""


@pytest.fixture
def inner(pytester, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` fails in the inner run
    monkeypatch.delenv("CI", raising=False)
    pytester.makeconftest(INNER_CONFTEST)

    def run(ci: bool, shared_there: bool, **files):
        shared = tmp_path / "shared"
        if shared_there:
            shared.mkdir(exist_ok=True)
        monkeypatch.setenv("GUARD_SHARED", str(shared))
        if ci:
            monkeypatch.setenv("CI", "true")
        else:
            monkeypatch.delenv("CI", raising=False)
        pytester.makepyfile(**files)
        return pytester.runpytest("-p", "no:cacheprovider", "-rA")

    return run


def test_without_ci_everything_skips(inner):
    inner(False, True, test_skips=SKIPPING_TESTS).assert_outcomes(skipped=4)


def test_under_ci_missing_peft_and_incomplete_shared_data_fail(inner):
    res = inner(True, True, test_skips=SKIPPING_TESTS)
    res.assert_outcomes(failed=1, errors=2, skipped=1)  # skipif marks fail in the setup phase
    res.stdout.fnmatch_lines(["*CI=true: an independent check may not skip: peft*"])


def test_under_ci_without_shared_folder_only_missing_peft_fails(inner):
    """A clean clone (CI's) has no ../shared: its real-data checks skip, peft's may not."""
    inner(True, False, test_skips=SKIPPING_TESTS).assert_outcomes(failed=1, skipped=3)


def test_under_ci_a_module_skipped_for_peft_fails_collection(inner):
    module = 'import pytest\npeft = pytest.importorskip("peft")\n\ndef test_x():\n    pass\n'
    res = inner(True, False, test_peft_module=module)
    res.assert_outcomes(errors=1)
    inner(False, False, test_peft_module=module).assert_outcomes(skipped=1)  # not an error
