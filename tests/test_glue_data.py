"""Tests for experiments/data/: the GLUE and summarisation readers (offline, small, fast)."""

from __future__ import annotations

import collections
import csv
import json
import sys
import types
from pathlib import Path

import pytest

from experiments.data.glue import load_glue, read_glue_tsv, write_glue_tsv
from experiments.data.summarization import load_summarization
from experiments.tasks import TASKS

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GLUE_REAL = SHARED_DATA / "glue"
SUMM_REAL = SHARED_DATA / "summarization"


# ---------------------------------------------------------------------------- fixtures


def _examples(task: str, split: str) -> list[dict]:
    """A few examples per task covering every label, awkward quotes and non-ASCII text."""
    t = TASKS[task]
    texts = [
        '"Hello," she said, and left.',  # starts with a double quote
        'He wrote "yes" twice.',  # quotes in the middle
        "Café déjà vu — naïve?",  # non-ASCII
        '"',  # a lone quote: would swallow lines
        "It's a plain one.",
        f"{split} text for {task}.",
    ]
    out = []
    for i, s1 in enumerate(texts):
        if t.is_regression:
            label = [5.0, 0.0, 3.8, 2.125, 4.75, 1.6][i]
        else:
            label = i % t.num_labels
        s2 = None if t.text_keys[1] is None else f'"Second" sentence {i}.'
        out.append({"sentence1": s1, "sentence2": s2, "label": label})
    return out


@pytest.mark.parametrize(
    "task,split", [(task, split) for task, t in TASKS.items() for split in t.splits]
)
def test_round_trip_every_task_and_split(tmp_path, task, split):
    examples = _examples(task, split)
    path = write_glue_tsv(task, split, examples, tmp_path)
    assert path == tmp_path / TASKS[task].dir_name / TASKS[task].tsv_file(split)
    assert load_glue(task, split, data_dir=tmp_path) == examples

    # The fixture really exercises the quoting hazard: default csv quoting mangles rows.
    def rows(**quoting):
        with open(path, encoding="utf-8-sig", newline="") as f:
            return list(csv.reader(f, delimiter="\t", **quoting))

    assert rows() != rows(quoting=csv.QUOTE_NONE)


def test_limit_keeps_first_examples(tmp_path):
    examples = _examples("rte", "train")
    write_glue_tsv("rte", "train", examples, tmp_path)
    assert load_glue("rte", "train", tmp_path, limit=2) == examples[:2]
    assert load_glue("rte", "train", tmp_path, limit=0) == []
    assert load_glue("rte", "train", tmp_path, limit=100) == examples


def test_mrpc_file_has_bom_and_header_is_found(tmp_path):
    path = write_glue_tsv("mrpc", "train", _examples("mrpc", "train"), tmp_path)
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
    assert load_glue("mrpc", "train", tmp_path)[0]["label"] == 0


def test_mrpc_official_row_format(tmp_path):
    """Hand-written MRPC file as in the official download (BOM, quote-initial string)."""
    d = tmp_path / "MRPC"
    d.mkdir()
    rows = [
        "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String",
        "1\t1355540\t1355592\t\"He said the foodservice pie business doesn't fit.\tIt doesn't fit.",
        "0\t2029631\t2029565\tMagnarelli said Racicot hated the Iraqi regime.\t"
        'His wife said he was "100 percent behind" it.',
    ]
    (d / "dev.tsv").write_bytes("".join(r + "\n" for r in rows).encode("utf-8"))
    with open(d / "dev.tsv", encoding="utf-8-sig", newline="") as f:
        assert len(list(csv.reader(f, delimiter="\t"))) == 2  # default quoting merges rows
    ex = load_glue("mrpc", "validation", tmp_path)
    assert ex == [
        {
            "sentence1": "\"He said the foodservice pie business doesn't fit.",
            "sentence2": "It doesn't fit.",
            "label": 1,
        },
        {
            "sentence1": "Magnarelli said Racicot hated the Iraqi regime.",
            "sentence2": 'His wife said he was "100 percent behind" it.',
            "label": 0,
        },
    ]


def test_cola_has_no_header_and_four_columns(tmp_path):
    examples = _examples("cola", "validation")
    path = write_glue_tsv("cola", "validation", examples, tmp_path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(examples)
    assert lines[0].split("\t") == ["gj04", "0", "*", examples[0]["sentence1"]]
    assert lines[1].split("\t") == ["gj04", "1", "", examples[1]["sentence1"]]


def test_mnli_two_dev_sets(tmp_path):
    matched = _examples("mnli", "validation_matched")
    mismatched = _examples("mnli", "validation_mismatched")[:4]
    write_glue_tsv("mnli", "validation_matched", matched, tmp_path)
    write_glue_tsv("mnli", "validation_mismatched", mismatched, tmp_path)
    assert (tmp_path / "MNLI" / "dev_matched.tsv").is_file()
    assert (tmp_path / "MNLI" / "dev_mismatched.tsv").is_file()
    assert load_glue("mnli", "validation_matched", tmp_path) == matched
    assert load_glue("mnli", "validation_mismatched", tmp_path) == mismatched
    assert TASKS["mnli"].eval_splits == ("validation_matched", "validation_mismatched")
    assert [e["label"] for e in matched] == [0, 1, 2, 0, 1, 2]
    with pytest.raises(ValueError, match="validation_matched"):
        load_glue("mnli", "validation", tmp_path)


def test_qqp_malformed_rows_are_skipped_and_counted(tmp_path, caplog):
    examples = _examples("qqp", "train")
    path = write_glue_tsv("qqp", "train", examples, tmp_path)
    with open(path, "a", encoding="utf-8") as f:
        f.write("363362\t711435\t711436\tquestion cut by a line break\n")  # 4 fields
        f.write("... rest of it?\t0\n")  # 2 fields
        f.write("7\t15\t16\tA good one?\tAnother good one?\t1\n")
    rows, skipped = read_glue_tsv("qqp", path)
    assert skipped == 2
    assert rows == examples + [
        {"sentence1": "A good one?", "sentence2": "Another good one?", "label": 1}
    ]
    with caplog.at_level("WARNING"):
        assert load_glue("qqp", "train", tmp_path) == rows
    assert "skipped 2 malformed rows" in caplog.text


def test_short_rows_are_errors_for_other_tasks(tmp_path):
    path = write_glue_tsv("rte", "validation", _examples("rte", "validation"), tmp_path)
    with open(path, "a", encoding="utf-8") as f:
        f.write("99\tonly one sentence\n")
    with pytest.raises(ValueError, match="row 8"):
        load_glue("rte", "validation", tmp_path)


def test_unknown_label_is_an_error(tmp_path):
    d = tmp_path / "RTE"
    d.mkdir()
    (d / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tneutral\n")
    with pytest.raises(ValueError, match="'neutral'"):
        load_glue("rte", "train", tmp_path)


def test_task_metadata():
    assert set(TASKS) == {"cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte"}
    assert TASKS["rte"].labels == ("entailment", "not_entailment")
    assert TASKS["qnli"].labels == ("entailment", "not_entailment")
    assert TASKS["mnli"].labels == ("entailment", "neutral", "contradiction")
    assert TASKS["stsb"].num_labels == 1 and TASKS["stsb"].is_regression
    assert {t: TASKS[t].main_metric for t in TASKS} == {
        "cola": "mcc",
        "stsb": "pearson",
        "sst2": "accuracy",
        "mrpc": "accuracy",
        "qqp": "accuracy",
        "mnli": "accuracy",
        "qnli": "accuracy",
        "rte": "accuracy",
    }
    for t in TASKS.values():
        assert t.main_metric in t.metrics
        assert t.is_regression or len(t.labels) == t.num_labels


def test_unknown_task_or_split(tmp_path):
    with pytest.raises(ValueError, match="unknown GLUE task"):
        load_glue("wnli", "train", tmp_path)
    with pytest.raises(ValueError, match="no split 'test'"):
        load_glue("rte", "test", tmp_path)


# ---------------------------------------------------------------------------- sources


def test_missing_file_message(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_glue("rte", "validation", data_dir=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "RTE" / "dev.tsv") in msg
    assert "--data-dir" in msg and "GLUE_DIR" in msg and "official GLUE layout" in msg


def test_glue_dir_env_is_used(tmp_path, monkeypatch):
    examples = _examples("sst2", "validation")
    write_glue_tsv("sst2", "validation", examples, tmp_path)
    monkeypatch.setenv("GLUE_DIR", str(tmp_path))
    assert load_glue("sst2", "validation") == examples
    # An explicit data_dir wins over the environment.
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        load_glue("sst2", "validation", data_dir=tmp_path / "elsewhere")


def test_offline_hub_raises_runtime_error(monkeypatch):
    monkeypatch.delenv("GLUE_DIR", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="--data-dir") as err:
        load_glue("rte", "validation")
    assert "offline" in str(err.value) and "GLUE_DIR" in str(err.value)


def _fake_datasets(monkeypatch, load_dataset):
    """Install a stand-in ``datasets`` module (so no network and no slow import)."""
    for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "GLUE_DIR", "SUMM_DIR"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))


def test_unreachable_hub_raises_runtime_error(monkeypatch):
    def load_dataset(*args, **kwargs):
        raise ConnectionError("no route to host")

    _fake_datasets(monkeypatch, load_dataset)
    with pytest.raises(RuntimeError, match="unreachable") as err:
        load_glue("cola", "train")
    assert "--data-dir" in str(err.value) and "no route to host" in str(err.value)
    with pytest.raises(RuntimeError, match="SUMM_DIR"):
        load_summarization("xsum", "test")


def test_hub_rows_are_converted(monkeypatch):
    calls = []

    def load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        if path == "nyu-mll/glue":
            return [{"premise": "P", "hypothesis": "H", "label": 2, "idx": 0}]
        return [{"article": "A", "highlights": "S", "id": "abc"}]

    _fake_datasets(monkeypatch, load_dataset)
    assert load_glue("mnli", "validation_mismatched", limit=1) == [
        {"sentence1": "P", "sentence2": "H", "label": 2}
    ]
    assert load_summarization("cnn_dailymail", "test") == [
        {"document": "A", "summary": "S", "id": "abc"}
    ]
    assert calls == [
        ("nyu-mll/glue", "mnli", "validation_mismatched[:1]"),
        ("abisee/cnn_dailymail", "3.0.0", "test"),
    ]


# ---------------------------------------------------------------------------- real data


def _need(path: Path) -> None:
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} is absent (real-data checks need it)")


# (task, split, rows, label counts or None) from /work/shared/data/SOURCES.md
REAL_GLUE = [
    ("cola", "train", 8551, {1: 6023, 0: 2528}),
    ("cola", "validation", 1043, {1: 721, 0: 322}),
    ("sst2", "train", 67349, {1: 37569, 0: 29780}),
    ("sst2", "validation", 872, {1: 444, 0: 428}),
    ("stsb", "train", 5749, None),
    ("stsb", "validation", 1500, None),
    ("qnli", "validation", 5463, {1: 2761, 0: 2702}),
    ("rte", "train", 2490, {0: 1249, 1: 1241}),
    ("rte", "validation", 277, None),
]


@pytest.mark.parametrize("task,split,n_rows,label_counts", REAL_GLUE)
def test_real_glue_row_counts(task, split, n_rows, label_counts):
    _need(GLUE_REAL)
    examples = load_glue(task, split, data_dir=GLUE_REAL)
    assert len(examples) == n_rows
    if label_counts is not None:
        assert dict(collections.Counter(e["label"] for e in examples)) == label_counts
    if TASKS[task].is_regression:
        assert all(0.0 <= e["label"] <= 5.0 for e in examples)
    assert all(e["sentence1"] for e in examples)
    assert all((e["sentence2"] is None) == (TASKS[task].text_keys[1] is None) for e in examples)


def test_real_glue_known_rows():
    _need(GLUE_REAL)
    assert load_glue("rte", "validation", GLUE_REAL, limit=1) == [
        {
            "sentence1": "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung "
            "cancer at age 44, according to the Christopher Reeve Foundation.",
            "sentence2": "Christopher Reeve had an accident.",
            "label": 1,
        }
    ]
    assert load_glue("stsb", "validation", GLUE_REAL, limit=1) == [
        {
            "sentence1": "A man with a hard hat is dancing.",
            "sentence2": "A man wearing a hard hat is dancing.",
            "label": 5.0,
        }
    ]
    assert load_glue("cola", "train", GLUE_REAL, limit=1)[0]["sentence1"].startswith(
        "Our friends won't buy this analysis"
    )


@pytest.mark.parametrize("rel,default_rows", [("STS-B/dev.tsv", 1470), ("QNLI/dev.tsv", 5267)])
def test_real_files_break_with_default_quoting(rel, default_rows):
    """Documents why QUOTE_NONE matters: default quoting merges rows (SOURCES.md)."""
    _need(GLUE_REAL)
    with open(GLUE_REAL / rel, encoding="utf-8-sig", newline="") as f:
        assert len(list(csv.reader(f, delimiter="\t"))) - 1 == default_rows


# ---------------------------------------------------------------------------- summarisation


@pytest.mark.parametrize(
    "dataset,split,n_rows",
    [("xsum", "test", 1000), ("xsum", "validation", 980), ("cnn_dailymail", "test", 250)],
)
def test_real_summarization_files(dataset, split, n_rows):
    _need(SUMM_REAL)
    examples = load_summarization(dataset, split, data_dir=SUMM_REAL)
    assert len(examples) == n_rows
    assert all(set(e) == {"document", "summary", "id"} for e in examples)
    assert all(isinstance(e[k], str) for e in examples for k in e)
    assert len({e["id"] for e in examples}) == n_rows
    assert sum(bool(e["summary"]) for e in examples) == n_rows
    assert load_summarization(dataset, split, data_dir=SUMM_REAL, limit=5) == examples[:5]


def test_summarization_local_jsonl(tmp_path, monkeypatch):
    d = tmp_path / "xsum"
    d.mkdir()
    rows = [
        {"document": "Doc one.", "summary": "One.", "id": 17},
        {"document": None, "summary": "Two.", "id": "b", "extra": 1},
    ]
    (d / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    expected = [
        {"document": "Doc one.", "summary": "One.", "id": "17"},
        {"document": "", "summary": "Two.", "id": "b"},
    ]
    assert load_summarization("xsum", "validation", tmp_path) == expected
    assert load_summarization("xsum", "validation", tmp_path, limit=1) == expected[:1]
    monkeypatch.setenv("SUMM_DIR", str(tmp_path))
    assert load_summarization("xsum", "validation") == expected


def test_summarization_missing_file_lists_present_splits(tmp_path):
    d = tmp_path / "xsum"
    d.mkdir()
    (d / "test.jsonl").write_text("")
    with pytest.raises(FileNotFoundError) as err:
        load_summarization("xsum", "train", tmp_path)
    msg = str(err.value)
    assert str(d / "train.jsonl") in msg and "test.jsonl" in msg and "--data-dir" in msg
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_summarization("cnn_dailymail", "test", tmp_path)


def test_summarization_offline_and_bad_arguments(tmp_path, monkeypatch):
    monkeypatch.delenv("SUMM_DIR", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="--data-dir"):
        load_summarization("xsum", "test")
    with pytest.raises(ValueError, match="unknown summarization dataset"):
        load_summarization("gigaword", "test", tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        load_summarization("xsum", "dev", tmp_path)


@pytest.mark.parametrize(
    "value, expected",
    [("1", True), ("true", True), ("YES", True), ("On", True), ("0", False), ("no", False)]
    + [("", False), ("false", False), ("off", False)],
)
def test_offline_reads_env_like_huggingface_hub(monkeypatch, value, expected):
    """One reading of HF_HUB_OFFLINE for models and data: 1 / true / yes / on in any case."""
    from experiments.hub import DATA_OFFLINE_VARS, MODEL_OFFLINE_VARS, offline

    for k in {*MODEL_OFFLINE_VARS, *DATA_OFFLINE_VARS}:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert offline(MODEL_OFFLINE_VARS) is expected and offline(DATA_OFFLINE_VARS) is expected
