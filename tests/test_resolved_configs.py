"""The runners resolve every command line of a fixed table exactly as the fixture says: the dry
run's configuration (the hyperparameters a result file records, less what only training adds)
or the one-line error. The table (tests/resolved_configs.py) crosses tasks, methods, both
presets and the common flags, and holds every glue.py command of the committed result files
and of the converged plan: a change in how flags, presets, fractions or the budget plan resolve
shows here as the cases it moves."""

from __future__ import annotations

import json

from tests import resolved_configs as R


def test_fixture_covers_the_table():
    cases = json.loads(R.FIXTURE.read_text())
    glue = [c for c in cases if c["runner"] == "glue"]
    summ = [c for c in cases if c["runner"] == "summarization"]
    assert len(glue) > 600 and len(summ) > 100
    for runner, cs in (("glue", glue), ("summarization", summ)):
        ok = [c for c in cs if "out" in c]
        assert {c["out"]["method"] for c in ok} == set(R.METHODS), runner
        assert {c["out"]["preset"] for c in ok} == {"quick", "paper"}, runner
    assert {c["out"]["task"] for c in glue if "out" in c} == set(R.GLUE_TASKS)
    # the committed runs' commands are in it
    assert sum("--max-train-samples" in c["argv"] and "1000000" in c["argv"] for c in glue) > 100


def test_every_case_resolves_as_the_fixture_says():
    expected = json.loads(R.FIXTURE.read_text())
    got = R.capture_all([{"runner": c["runner"], "argv": c["argv"]} for c in expected])
    diff = R.differences(expected, got)
    assert not diff, f"{len(diff)} of {len(expected)} cases differ:\n" + "\n".join(diff[:40])


def test_result_files_record_the_configuration_as_the_fixture_says(tmp_path):
    """Tiny real runs (2-4 steps) of both runners: the recorded hyperparameters, budget, variant
    and the checkpoint's run.json (which a resumed run must match) are those of the fixture."""
    expected = json.loads(R.RECORD_FIXTURE.read_text())
    got = R.record_runs(tmp_path)
    for name in expected:
        assert got[name] == expected[name], name
