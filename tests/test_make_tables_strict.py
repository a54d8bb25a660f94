"""scripts/make_tables.py reads evidence strictly (scripts/report/evidence.py): a result file
that does not parse into a valid record, a bad flag or an empty --results folder is one line
``make_tables.py: error: <file or flag> <field or value>: <problem>; <fix>``, exit status 2,
nothing written; --skip-invalid lists each invalid file and a count instead; files that are not
records (logs, checkpoints, W&B and bench JSON, hidden files) are left out by rule. Each case
corrupts a copy of a committed result file in a small results folder under tmp_path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import make_tables as mt
from scripts.report import wandb_import
from scripts.report.evidence import check_record, read_record, record_files

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "results" / "evidence" / "converged" / "sweep" / "conv-sst2-adalora-lr1e-3-s1.json"
FIX = (
    "restore the file (git checkout, or re-run the run that wrote it), or pass --skip-invalid "
    "to leave it out with a warning"
)
NOT_A_RECORD = (
    "move it out of the results folder (files under logs/, checkpoints/, wandb/, bench/ and "
    "hidden files are not read)"
)
MISSING = "is missing (every adalora.result/1 record has it)"

pytestmark = pytest.mark.skipif(not SOURCE.exists(), reason="committed evidence absent")


def _edit(change):
    """The committed record with ``change(rec)`` applied, as JSON text."""

    def make(text: str) -> str:
        rec = json.loads(text)
        change(rec)
        return json.dumps(rec, indent=2)

    return make


def _parent(rec, path: str) -> tuple:
    """(container, key) of the dotted ``path`` in ``rec`` (list items by index)."""
    *up, last = path.split(".")
    for k in up:
        rec = rec[int(k)] if isinstance(rec, list) else rec[k]
    return rec, int(last) if isinstance(rec, list) else last


def _set(path: str, value):
    """Set the dotted ``path`` of the record to ``value``."""

    def change(rec):
        d, k = _parent(rec, path)
        d[k] = value

    return _edit(change)


def _drop(path: str):
    def change(rec):
        d, k = _parent(rec, path)
        del d[k]

    return _edit(change)


def _first_module(text: str) -> str:
    return next(iter(json.loads(text)["rank_pattern"]))


# id -> (the bad file's content from the committed text, "<field>: <problem>; <fix>" after
# the file's path; a leading ":" when the problem is the whole file's)
BAD_FILES = {
    "truncated": (
        lambda t: t[: len(t) // 2],
        None,  # the position depends on the file: checked by prefix below
    ),
    "invalid-json": (
        lambda t: t.replace('"kind":', "kind:", 1),
        None,
    ),
    "empty": (lambda t: "", f": is empty (an interrupted write?); {FIX}"),
    "json-list": (lambda t: "[1, 2]", f": holds a list, not a JSON object; {FIX}"),
    "json-string": (lambda t: '"ok"', f': holds a string ("ok"), not a JSON object; {FIX}'),
    "not-utf8": (
        lambda t: t.encode()[:10] + b"\xff" + t.encode()[10:],
        f": is not UTF-8 text (byte 0xff at offset 10); {FIX}",
    ),
    "no-schema": (
        lambda t: '{"bench": 1}',
        f" schema: is missing: not a result record (adalora.result/1); {NOT_A_RECORD}",
    ),
    "unknown-schema": (
        _set("schema", "adalora.result/2"),
        ' schema: is a string ("adalora.result/2"), a schema this report does not read (it '
        "reads adalora.result/1); regenerate the tables with the version of this code that "
        "wrote it, or move it out of the results folder",
    ),
    "missing-metrics": (_drop("metrics"), f" metrics: {MISSING}; {FIX}"),
    "missing-created": (_drop("created"), f" created: {MISSING}; {FIX}"),
    "missing-lr": (_drop("hyperparameters.lr"), f" hyperparameters.lr: {MISSING}; {FIX}"),
    "missing-avg-rank": (
        _drop("budget.avg_final_rank"),
        f" budget.avg_final_rank: {MISSING}; {FIX}",
    ),
    "hp-not-dict": (
        _set("hyperparameters", [1e-3]),
        f" hyperparameters: is a list, not an object; {FIX}",
    ),
    "metrics-not-dict": (
        _set("metrics", "0.8"),
        f' metrics: is a string ("0.8"), not an object; {FIX}',
    ),
    "seed-string": (_set("seed", "1"), f' seed: is a string ("1"), not an integer; {FIX}'),
    "seed-bool": (_set("seed", True), f" seed: is a boolean (true), not an integer; {FIX}"),
    "run-name-null": (_set("run_name", None), f" run_name: is null, not a string; {FIX}"),
    "score-string": (
        _set("metrics.main_best", "0.8"),
        f' metrics.main_best: is a string ("0.8"), not a number or null; {FIX}',
    ),
    "eval-score-string": (
        _set("metrics.evals.1.accuracy", "high"),
        f' metrics.evals[1].accuracy: is a string ("high"), not a number or null; {FIX}',
    ),
    "eval-step-missing": (
        _drop("metrics.evals.0.step"),
        f" metrics.evals[0].step: {MISSING}; {FIX}",
    ),
    "table-uses": (
        _set("metrics.table_uses", "last"),
        f' metrics.table_uses: is a string ("last"), not "best" or "final"; {FIX}',
    ),
    "lr-string": (
        _set("hyperparameters.lr", "1e-3"),
        f' hyperparameters.lr: is a string ("1e-3"), not a number; {FIX}',
    ),
    "lr-negative": (
        _set("hyperparameters.lr", -0.001),
        f" hyperparameters.lr: is -0.001, not a positive finite number; {FIX}",
    ),
    "budget-list": (_set("budget", [2]), f" budget: is a list, not an object or null; {FIX}"),
    "curve-point": (
        _set("budget.curve", [[0, 12], [5]]),
        f" budget.curve[1]: is a list, not a [step, budget] pair; {FIX}",
    ),
    "params-total": (
        _set("params.total", "big"),
        f' params.total: is a string ("big"), not an integer or null; {FIX}',
    ),
    "train-log-loss": (
        _set("train_log.0.loss", "nan"),
        f' train_log[0].loss: is a string ("nan"), not a number or null; {FIX}',
    ),
    "git-dirty-text": (
        _set("git_dirty", "no"),
        f' git_dirty: is a string ("no"), not a boolean or null; {FIX}',
    ),
    "rank-not-int": (
        _edit(lambda r: r["rank_pattern"].update({next(iter(r["rank_pattern"])): 2.5})),
        None,  # the module's name is the committed file's
    ),
}


def _results(tmp_path: Path, bad=None) -> Path:
    """tmp_path/results holding a copy of the committed record (good.json) and, when given,
    bad.json with ``bad`` applied to the committed text."""
    res = tmp_path / "results"
    res.mkdir(parents=True, exist_ok=True)
    text = SOURCE.read_text()
    (res / "good.json").write_text(text)
    if bad is not None:
        content = bad(text)
        target = res / "bad.json"
        target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
    return res


def _outputs(tmp_path: Path) -> list:
    out, figs = tmp_path / "out" / "paper_tables.md", tmp_path / "figs"
    return ["--out", str(out), "--figures", str(figs)]


def _snapshot(tmp_path: Path) -> set:
    return {p for p in tmp_path.rglob("*")}


def _run(argv: list) -> int:
    """make_tables in-process: its exit status (argparse's own errors exit 2 via SystemExit)."""
    try:
        return mt.main(argv)
    except SystemExit as e:
        return e.code


def _assert_refused(tmp_path, capsys, argv, expected: str | None, prefix: str = "") -> str:
    """Exit status 2, one stderr line (``expected`` exactly, or starting with ``prefix``),
    nothing on stdout and no file written."""
    before = _snapshot(tmp_path)
    assert _run(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    line = err.rstrip("\n")
    if expected is not None:
        assert line == expected
    else:
        assert line.startswith(prefix), line
    assert _snapshot(tmp_path) == before  # no --out, no --figures, nothing else
    return line


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_invalid_result_file_is_one_line(tmp_path, capsys, case):
    bad, tail = BAD_FILES[case]
    res = _results(tmp_path, bad)
    bad_file = res / "bad.json"
    head = f"make_tables.py: error: {bad_file}"
    argv = ["--results", str(res), *_outputs(tmp_path)]
    if tail is not None:
        _assert_refused(tmp_path, capsys, argv, head + tail)
        return
    line = _assert_refused(tmp_path, capsys, argv, None, head)
    if case == "truncated":
        assert line.startswith(head + ": is truncated: its JSON ends early (")
    elif case == "invalid-json":
        assert line.startswith(head + ": is not valid JSON (Expecting property name")
    else:
        module = _first_module(SOURCE.read_text())
        assert line == f"{head} rank_pattern.{module}: is a number (2.5), not an integer; {FIX}"
    assert line.endswith(f"; {FIX}")


def _flag_cases(tmp_path: Path) -> dict:
    """id -> (argv, expected line) for bad flags, on a valid results folder."""
    res = _results(tmp_path)
    outs = _outputs(tmp_path)
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("x")
    (tmp_path / "empty").mkdir()
    nonrec = tmp_path / "only_logs"
    (nonrec / "logs").mkdir(parents=True)
    (nonrec / "logs" / "run.log").write_text("log\n")
    (nonrec / "checkpoints" / "run").mkdir(parents=True)
    (nonrec / "checkpoints" / "run" / "run.json").write_text("{}")
    bad_utf8 = tmp_path / "discussion.md"
    bad_utf8.write_bytes(b"caf\xe9\n")
    e = "make_tables.py: error:"
    fix_res = "pass the folder holding the result files (default: results/evidence)"
    no_rec = (
        "holds no result file (*.json outside logs/, checkpoints/, wandb/, bench/); pass the "
        "folder your runs wrote to (glue.py --output-dir)"
    )
    missing = tmp_path / "no_such_dir"
    return {
        "results-missing": (
            ["--results", str(missing), *outs],
            f"{e} --results {missing}: no such folder; {fix_res}",
        ),
        "results-is-file": (
            ["--results", str(a_file), *outs],
            f"{e} --results {a_file}: is a file, not a folder; {fix_res}",
        ),
        "results-empty": (
            ["--results", str(tmp_path / "empty"), *outs],
            f"{e} --results {tmp_path / 'empty'}: {no_rec}",
        ),
        "results-only-logs-and-checkpoints": (
            ["--results", str(nonrec), *outs],
            f"{e} --results {nonrec}: {no_rec}",
        ),
        "out-is-folder": (
            ["--results", str(res), "--out", str(tmp_path), "--figures", str(tmp_path / "f")],
            f"{e} --out {tmp_path}: is a folder, not a file; pass --out FILE where you can "
            "write a file",
        ),
        "out-below-a-file": (
            ["--results", str(res), "--out", str(a_file / "t.md"), "--figures", str(tmp_path)],
            f"{e} --out {a_file / 't.md'}: cannot be created: {a_file} is a file, not a folder; "
            "pass --out FILE where you can write a file",
        ),
        "figures-is-file": (
            ["--results", str(res), "--out", str(tmp_path / "o.md"), "--figures", str(a_file)],
            f"{e} --figures {a_file}: is a file, not a folder; pass --figures DIR where you can "
            "write a folder",
        ),
        "discussion-missing": (
            ["--results", str(res), *outs, "--discussion", str(missing)],
            f"{e} --discussion {missing}: no such file; pass the discussion file or leave it out",
        ),
        "discussion-not-utf8": (
            ["--results", str(res), *outs, "--discussion", str(bad_utf8)],
            f"{e} --discussion {bad_utf8}: is not UTF-8 text (byte at offset 3); save it as UTF-8",
        ),
        "shared-lr-nan": (
            ["--results", str(res), *outs, "--shared-lr", "nan"],
            f"{e} --shared-lr nan: must be a positive finite number; pass a learning rate such "
            "as 1e-3, or leave --shared-lr out",
        ),
        "shared-lr-zero": (
            ["--results", str(res), *outs, "--shared-lr", "0"],
            f"{e} --shared-lr 0: must be a positive finite number; pass a learning rate such "
            "as 1e-3, or leave --shared-lr out",
        ),
        "shared-lr-no-run": (
            ["--results", str(res), *outs, "--shared-lr", "3e-3"],
            f"{e} --shared-lr 0.003: no short-run GLUE LoRA or AdaLoRA run has this learning "
            "rate (theirs: 0.001); pass one of theirs, or leave --shared-lr out",
        ),
        "shared-lr-text": (
            ["--results", str(res), *outs, "--shared-lr", "abc"],
            f"{e} argument --shared-lr: invalid float value: 'abc' (--help lists the flags)",
        ),
        "wandb-format": (
            ["--results", str(res), *outs, "--wandb", "adalora"],
            f"{e} --wandb adalora: is not ENTITY/PROJECT; pass e.g. --wandb me/adalora",
        ),
    }


FLAG_CASES = (
    "results-missing",
    "results-is-file",
    "results-empty",
    "results-only-logs-and-checkpoints",
    "out-is-folder",
    "out-below-a-file",
    "figures-is-file",
    "discussion-missing",
    "discussion-not-utf8",
    "shared-lr-nan",
    "shared-lr-zero",
    "shared-lr-no-run",
    "shared-lr-text",
    "wandb-format",
)


def test_flag_cases_all_run(tmp_path):
    assert sorted(_flag_cases(tmp_path)) == sorted(FLAG_CASES)


@pytest.mark.parametrize("case", FLAG_CASES)
def test_bad_flag_is_one_line(tmp_path, capsys, case):
    argv, expected = _flag_cases(tmp_path)[case]
    _assert_refused(tmp_path, capsys, argv, expected)


def test_non_records_are_left_out_by_rule(tmp_path, capsys):
    """logs/, checkpoints/, wandb/, bench/ and hidden files are not records, whatever they
    hold; other suffixes are not read; a folder named like a JSON file is descended into."""
    res = _results(tmp_path)
    junk = {
        "logs/run.log": "Traceback ...\n",
        "logs/x.json": "{not json",
        "checkpoints/run/run.json": '{"lr": 1}',
        "checkpoints/run/checkpoint-10/trainer_state.json": "{}",
        "converged/wandb/run-1/files/wandb-summary.json": "{}",
        "bench/cpu_step.json": '{"ms": 1.0}',
        ".hidden.json": "[",
        ".cache/x.json": "[",
        "run.predictions.jsonl": "{}\n",
        "README.md": "notes",
        "short/.run.json.abc.tmp": "{",
    }
    for rel, text in junk.items():
        (res / rel).parent.mkdir(parents=True, exist_ok=True)
        (res / rel).write_text(text)
    (res / "nested.json").mkdir()
    (res / "nested.json" / "again.json").write_text(SOURCE.read_text())
    assert record_files(res) == [res / "good.json", res / "nested.json" / "again.json"]
    # below the folder read, not above it: --results bench/ reads bench JSON (and refuses it)
    assert record_files(res / "bench") == [res / "bench" / "cpu_step.json"]
    argv = ["--results", str(res), *_outputs(tmp_path)]
    assert _run(argv) == 0
    out, err = capsys.readouterr()
    assert err == "" and "(2 runs, " in out


def test_committed_results_folder_reads_only_evidence_and_runs():
    """Under results/, the benchmarks' JSON (results/bench/, some of them result records of
    the bench grid) is not evidence; every committed evidence file is a valid record."""
    files = record_files(ROOT / "results")
    assert files and all(
        f.relative_to(ROOT / "results").parts[0] in ("evidence", "runs") for f in files
    )
    evidence = record_files(ROOT / "results" / "evidence")
    assert evidence == sorted((ROOT / "results" / "evidence").rglob("*.json"))
    for f in evidence:
        assert read_record(f)["_path"] == str(f)


def test_skip_invalid_lists_each_file_and_a_count(tmp_path, capsys):
    res = _results(tmp_path, lambda t: t[:100])
    (res / "sub").mkdir()
    (res / "sub" / "seed.json").write_text(_set("seed", "1")(SOURCE.read_text()))
    argv = ["--results", str(res), *_outputs(tmp_path)]
    assert _run(argv) == 2
    capsys.readouterr()
    assert _run(argv + ["--skip-invalid"]) == 0
    out, err = capsys.readouterr()
    w = "make_tables.py: warning: --skip-invalid: left out"
    lines = err.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{w} {res / 'bad.json'}: is truncated: its JSON ends early (")
    assert "restore the file" not in lines[0]
    assert lines[1] == f'{w} {res / "sub" / "seed.json"} seed: is a string ("1"), not an integer'
    assert lines[2] == (f"{w} 2 invalid records (listed above); the tables do not count them")
    assert "(1 runs, " in out and (tmp_path / "out" / "paper_tables.md").exists()


def test_skip_invalid_with_nothing_valid_is_an_error(tmp_path, capsys):
    res = tmp_path / "results"
    res.mkdir()
    (res / "a.json").write_text("[]")
    argv = ["--results", str(res), *_outputs(tmp_path), "--skip-invalid"]
    before = _snapshot(tmp_path)
    assert _run(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"make_tables.py: warning: --skip-invalid: left out {res / 'a.json'}: holds a list, "
        "not a JSON object",
        f"make_tables.py: error: --results {res}: none of its 1 result files is valid (each "
        "listed above); fix them or pass another folder",
    ]
    assert _snapshot(tmp_path) == before


class _FakeApi:
    """wandb.Api stand-in: one valid run and one whose summary holds a text score."""

    def __init__(self, timeout=None):
        pass

    def runs(self, path):
        from types import SimpleNamespace

        config = {"task": "rte", "method": "lora", "model": "m", "seed": 1, "lr": 1e-3}
        good = {"eval/main_best": 0.7, "eval/main_final": 0.69, "status": "ok"}
        return [
            SimpleNamespace(name="w-ok", config=config, summary=good, state="finished"),
            SimpleNamespace(
                name="w-bad", config=config, summary={**good, "eval/main_best": "x"}, state="ok"
            ),
        ]


def test_wandb_runs_are_checked_too(tmp_path, capsys, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace(Api=_FakeApi))
    res = _results(tmp_path)
    argv = ["--results", str(res), *_outputs(tmp_path), "--wandb", "me/proj"]
    _assert_refused(
        tmp_path,
        capsys,
        argv,
        'make_tables.py: error: --wandb me/proj run w-bad metrics.main_best: is a string ("x"), '
        "not a number or null; fix the run's config or summary in W&B, or pass --skip-invalid "
        "to leave it out with a warning",
    )
    assert _run(argv + ["--skip-invalid"]) == 0
    out, err = capsys.readouterr()
    assert "(2 runs, " in out
    assert err.splitlines()[-1].endswith(
        "left out 1 invalid record (listed above); the tables do not count them"
    )


def test_valid_wandb_record_passes_the_check():
    config = {"task": "rte", "method": "full", "model": "m", "seed": 1, "lr": 2e-5}
    rec = wandb_import.wandb_to_record("r", config, {"eval/main": 0.5})
    assert check_record(rec, "w", file=False) is rec
    with pytest.raises(ValueError, match="^w wall_time_s: is null, not a number; "):
        check_record(rec, "w")  # a result file records its wall time (and its provenance)


def _subprocess(argv: list) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    cmd = [sys.executable, str(ROOT / "scripts" / "make_tables.py"), *argv]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_cli_refuses_a_truncated_file_and_a_missing_folder(tmp_path):
    res = _results(tmp_path, lambda t: t[:-200])
    before = _snapshot(tmp_path)
    p = _subprocess(["--results", str(res), *_outputs(tmp_path)])
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith(
        f"make_tables.py: error: {res / 'bad.json'}: is truncated: its JSON ends early ("
    )
    assert p.stderr.endswith(f"; {FIX}\n") and p.stderr.count("\n") == 1
    missing = tmp_path / "typo"
    p = _subprocess(["--results", str(missing), *_outputs(tmp_path)])
    assert (p.returncode, p.stdout) == (2, "")
    assert p.stderr == (
        f"make_tables.py: error: --results {missing}: no such folder; pass the folder holding "
        "the result files (default: results/evidence)\n"
    )
    assert _snapshot(tmp_path) == before


def test_cli_check_reports_the_committed_tables_current():
    if not (ROOT / "paper_tables.md").exists():
        pytest.skip("paper_tables.md not generated yet")
    p = _subprocess(["--check"])
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"{ROOT / 'paper_tables.md'} is up to date (") and p.stderr == ""
