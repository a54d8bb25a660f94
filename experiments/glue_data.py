"""GLUE data: task metadata and loading from local TSVs (official layout) or the HF Hub.

Every loader returns a list of examples, each a dict::

    {"sentence1": str, "sentence2": str | None, "label": int | float}

``label`` is the index of the label string in ``TASKS[task].labels`` (the order used by
the HF ``nyu-mll/glue`` dataset), or a float similarity score for STS-B.

Where the data comes from (first that applies, never a silent fallback):

1. the ``data_dir`` argument (runners pass ``--data-dir``),
2. the ``GLUE_DIR`` environment variable,
3. the HF Hub (``datasets.load_dataset("nyu-mll/glue", config)``).

A local directory must follow the layout written by GLUE's ``download_glue_data.py``::

    <data_dir>/CoLA/{train,dev}.tsv          no header; source, label, marker, sentence
    <data_dir>/SST-2/{train,dev}.tsv         sentence, label
    <data_dir>/MRPC/{train,dev}.tsv          Quality, #1 ID, #2 ID, #1 String, #2 String (BOM)
    <data_dir>/QQP/{train,dev}.tsv           id, qid1, qid2, question1, question2, is_duplicate
    <data_dir>/STS-B/{train,dev}.tsv         10 columns: ..., sentence1, sentence2, score
    <data_dir>/MNLI/{train,dev_matched,dev_mismatched}.tsv
                                             ..., sentence1, sentence2, ..., gold_label
    <data_dir>/QNLI/{train,dev}.tsv          index, question, sentence, label
    <data_dir>/RTE/{train,dev}.tsv           index, sentence1, sentence2, label

Files are read exactly as GLUE's own loaders read them: ``csv.reader`` with a tab
delimiter and ``quoting=csv.QUOTE_NONE``. With default quoting, fields that begin with
``"`` (present in MRPC, QNLI, STS-B and RTE) swallow the following lines and rows merge.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.hub import load_hub_split
from experiments.validate import DataError, DataFileNotFound

logger = logging.getLogger(__name__)

HF_GLUE_ID = "nyu-mll/glue"
GLUE_DIR_ENV = "GLUE_DIR"

Example = dict[str, Any]


@dataclass(frozen=True)
class GlueTask:
    """Static description of one GLUE task.

    Attributes:
        name: task name as used on the command line and as the HF config ("rte", ...).
        dir_name: folder of the task in the official GLUE layout ("RTE", "STS-B", ...).
        text_keys: HF field names that become ``sentence1`` and ``sentence2``
            (``sentence2`` is None for single-sentence tasks). They also say what the two
            texts mean, e.g. ("premise", "hypothesis") or ("question", "sentence").
        num_labels: number of classes; 1 for the STS-B regression.
        labels: label strings in HF order; ``example["label"]`` indexes this. Empty for STS-B.
        is_regression: True only for STS-B.
        main_metric: the metric the tables report ("mcc", "pearson" or "accuracy").
        metrics: every metric :func:`experiments.metrics.glue_metrics` returns for the task.
        eval_splits: evaluation splits (MNLI has two).
        has_header: whether the TSV files start with a header row (CoLA does not).
        tsv_columns: (sentence1, sentence2, label) columns in the TSV: header names, or
            integer positions when there is no header. Negative positions count from the end.
        skip_malformed: skip rows with too few fields instead of failing (QQP, as GLUE does).
        tsv_files: split name -> file name inside ``dir_name``.
    """

    name: str
    dir_name: str
    text_keys: tuple[str, str | None]
    num_labels: int
    labels: tuple[str, ...]
    is_regression: bool
    main_metric: str
    metrics: tuple[str, ...]
    eval_splits: tuple[str, ...]
    has_header: bool
    tsv_columns: tuple[str | int, str | int | None, str | int]
    skip_malformed: bool = False
    tsv_files: tuple[tuple[str, str], ...] = (("train", "train.tsv"), ("validation", "dev.tsv"))

    @property
    def splits(self) -> tuple[str, ...]:
        """All splits that can be loaded: "train" plus the evaluation splits."""
        return tuple(split for split, _ in self.tsv_files)

    def tsv_file(self, split: str) -> str:
        """File name (inside ``dir_name``) holding ``split``; ValueError for unknown splits."""
        files = dict(self.tsv_files)
        if split not in files:
            raise ValueError(
                f"GLUE task {self.name!r} has no split {split!r}; "
                f"valid splits: {', '.join(self.splits)}"
            )
        return files[split]


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")

TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in [
        GlueTask(
            "cola",
            "CoLA",
            ("sentence", None),
            2,
            _BINARY,
            False,
            "mcc",
            ("mcc",),
            ("validation",),
            has_header=False,
            tsv_columns=(3, None, 1),
        ),
        GlueTask(
            "sst2",
            "SST-2",
            ("sentence", None),
            2,
            _BINARY,
            False,
            "accuracy",
            ("accuracy",),
            ("validation",),
            True,
            ("sentence", None, "label"),
        ),
        GlueTask(
            "mrpc",
            "MRPC",
            ("sentence1", "sentence2"),
            2,
            _BINARY,
            False,
            "accuracy",
            ("accuracy", "f1"),
            ("validation",),
            True,
            ("#1 String", "#2 String", "Quality"),
        ),
        GlueTask(
            "qqp",
            "QQP",
            ("question1", "question2"),
            2,
            _BINARY,
            False,
            "accuracy",
            ("accuracy", "f1"),
            ("validation",),
            True,
            ("question1", "question2", "is_duplicate"),
            skip_malformed=True,
        ),
        GlueTask(
            "stsb",
            "STS-B",
            ("sentence1", "sentence2"),
            1,
            (),
            True,
            "pearson",
            ("pearson", "spearman", "corr"),
            ("validation",),
            True,
            ("sentence1", "sentence2", "score"),
        ),
        GlueTask(
            "mnli",
            "MNLI",
            ("premise", "hypothesis"),
            3,
            ("entailment", "neutral", "contradiction"),
            False,
            "accuracy",
            ("accuracy",),
            ("validation_matched", "validation_mismatched"),
            True,
            ("sentence1", "sentence2", "gold_label"),
            tsv_files=(
                ("train", "train.tsv"),
                ("validation_matched", "dev_matched.tsv"),
                ("validation_mismatched", "dev_mismatched.tsv"),
            ),
        ),
        GlueTask(
            "qnli",
            "QNLI",
            ("question", "sentence"),
            2,
            _NLI2,
            False,
            "accuracy",
            ("accuracy",),
            ("validation",),
            True,
            ("question", "sentence", "label"),
        ),
        GlueTask(
            "rte",
            "RTE",
            ("sentence1", "sentence2"),
            2,
            _NLI2,
            False,
            "accuracy",
            ("accuracy",),
            ("validation",),
            True,
            ("sentence1", "sentence2", "label"),
        ),
    ]
}


def get_task(task: str) -> GlueTask:
    """Return ``TASKS[task]``; ValueError listing the known tasks otherwise."""
    try:
        return TASKS[task]
    except KeyError:
        raise ValueError(f"unknown GLUE task {task!r}; known: {', '.join(TASKS)}") from None


# ---------------------------------------------------------------------------- reading TSVs


def glue_tsv_path(task: str, split: str, data_dir: str | os.PathLike) -> Path:
    """Path of ``split`` of ``task`` inside a folder in the official GLUE layout."""
    t = get_task(task)
    return Path(data_dir) / t.dir_name / t.tsv_file(split)


def _norm(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def task_dir(task: str, data_dir: str | os.PathLike) -> Path:
    """The task's folder for a ``data_dir`` that is either the GLUE folder (holding RTE/,
    SST-2/, ...) or the task's own folder (named like it: RTE, rte, SST-2, sst2, STS-B, ...)."""
    t, d = get_task(task), Path(data_dir)
    if not (d / t.dir_name).is_dir() and _norm(d.name) in (_norm(t.dir_name), t.name):
        return d
    return d / t.dir_name


def _column_index(spec: str | int, header: list[str] | None, path: Path) -> int:
    """Resolve a column given by header name (or by position when there is no header)."""
    if isinstance(spec, int):
        return spec
    assert header is not None
    if spec not in header:
        hint = (
            ": is it comma-separated? GLUE files are tab-separated"
            if len(header) == 1 and "," in header[0]
            else ""
        )
        raise DataError(f"{path}: header has no column {spec!r} (header: {header}){hint}")
    return header.index(spec)


def _parse_label(task: GlueTask, raw: str, path: Path, line_no: int) -> int | float:
    """Label string from a TSV -> float score (STS-B) or index into ``task.labels``."""
    raw = raw.strip()
    try:
        value = float(raw) if task.is_regression else task.labels.index(raw)
    except ValueError:
        expected = "a number" if task.is_regression else f"one of {list(task.labels)}"
        raise DataError(f"{path}, row {line_no}: label {raw!r} is not {expected}") from None
    if task.is_regression and not 0 <= value <= 5:  # also rejects nan / inf
        raise DataError(f"{path}, row {line_no}: score {raw!r} is outside STS-B's [0, 5]")
    return value


def read_glue_tsv(task: str, path: str | os.PathLike) -> tuple[list[Example], int]:
    """Read one GLUE TSV file the way GLUE's loaders do.

    Args:
        task: GLUE task name (decides header, columns and label mapping).
        path: the .tsv file.

    Returns:
        ``(examples, n_skipped)``: the examples in file order, and how many rows were
        skipped because they lacked fields (only QQP skips such rows; other tasks raise
        ValueError). Completely empty lines are ignored and not counted.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataError (a ValueError): the file cannot be read or is not UTF-8 text, a row has too
            few fields (not QQP), a header lacks a needed column, or a label is not one of the
            task's labels (STS-B: not a number in [0, 5]).
    """
    try:
        return _read_glue_tsv(task, Path(path))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except FileNotFoundError:
        raise
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e})") from None


def _read_glue_tsv(task: str, path: Path) -> tuple[list[Example], int]:
    t = get_task(task)
    examples: list[Example] = []
    skipped = 0
    # utf-8-sig strips the byte-order mark that MRPC's files start with.
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None) if t.has_header else None
        if t.has_header and header is None:
            raise DataError(f"{path}: empty file, expected a header row")
        s1_col, s2_col, label_col = (
            None if c is None else _column_index(c, header, path) for c in t.tsv_columns
        )
        used = [c for c in (s1_col, s2_col, label_col) if c is not None]
        # Like GLUE's processors, only the columns actually used must be present.
        min_fields = max(c + 1 if c >= 0 else -c for c in used)
        for row in reader:
            if not row:
                continue
            if len(row) < min_fields:
                if t.skip_malformed:
                    skipped += 1
                    continue
                hint = (
                    " (comma-separated? GLUE files are tab-separated)"
                    if len(row) == 1 and "," in row[0]
                    else ""
                )
                raise DataError(
                    f"{path}, row {reader.line_num}: {len(row)} fields, "
                    f"expected at least {min_fields}{hint}"
                )
            examples.append(
                {
                    "sentence1": row[s1_col],
                    "sentence2": None if s2_col is None else row[s2_col],
                    "label": _parse_label(t, row[label_col], path, reader.line_num),
                }
            )
    return examples, skipped


# ---------------------------------------------------------------------------- writing TSVs


def _fields_for_row(t: GlueTask, split: str, i: int, ex: Example) -> list[str]:
    """One row in the official column layout of ``t`` (placeholders for unused columns)."""
    s1, s2, y = ex["sentence1"], ex.get("sentence2"), ex["label"]
    lab = f"{float(y):.3f}" if t.is_regression else t.labels[int(y)]
    if t.name == "cola":
        return ["gj04", lab, "" if lab == "1" else "*", s1]
    if t.name == "sst2":
        return [s1, lab]
    if t.name == "mrpc":
        return [lab, str(1000 + 2 * i), str(1001 + 2 * i), s1, s2]
    if t.name == "qqp":
        return [str(i), str(2 * i + 1), str(2 * i + 2), s1, s2, lab]
    if t.name == "stsb":
        return [
            str(i),
            "main-captions",
            "MSRvid",
            "2012test",
            f"{i:04d}",
            "none",
            "none",
            s1,
            s2,
            lab,
        ]
    if t.name == "mnli":
        parses = [f"( {s1} )", f"( {s2} )", f"(ROOT {s1})", f"(ROOT {s2})"]
        n_annot = 1 if split == "train" else 5
        return [
            str(i),
            str(10 * i),
            f"{10 * i}e",
            "fiction",
            *parses,
            s1,
            s2,
            *([lab] * n_annot),
            lab,
        ]
    return [str(i), s1, s2, lab]  # qnli, rte


def _header(t: GlueTask, split: str) -> list[str] | None:
    """Header row of the official file, or None (CoLA)."""
    headers = {
        "sst2": ["sentence", "label"],
        "mrpc": ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
        "qqp": ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
        "stsb": [
            "index",
            "genre",
            "filename",
            "year",
            "old_index",
            "source1",
            "source2",
            "sentence1",
            "sentence2",
            "score",
        ],
        "qnli": ["index", "question", "sentence", "label"],
        "rte": ["index", "sentence1", "sentence2", "label"],
    }
    if t.name == "mnli":
        n_annot = 1 if split == "train" else 5
        return [
            "index",
            "promptID",
            "pairID",
            "genre",
            "sentence1_binary_parse",
            "sentence2_binary_parse",
            "sentence1_parse",
            "sentence2_parse",
            "sentence1",
            "sentence2",
            *[f"label{k}" for k in range(1, n_annot + 1)],
            "gold_label",
        ]
    return headers.get(t.name)


def write_glue_tsv(
    task: str, split: str, examples: Iterable[Example], data_dir: str | os.PathLike
) -> Path:
    """Write examples as ``<data_dir>/<TaskDir>/<file>.tsv`` in the official GLUE layout.

    Meant for small test fixtures. The output reads back through :func:`load_glue` to the
    same examples: CoLA gets no header and 4 columns, MRPC a UTF-8 byte-order mark, STS-B
    scores are written with 3 decimals (as in the official files), and fields are written
    verbatim (no quoting), so a text starting with ``"`` stays as it is.

    Args:
        task, split: as for :func:`load_glue`.
        examples: dicts with "sentence1", "sentence2" (None for single-sentence tasks) and
            "label" (label index, or float score for STS-B).
        data_dir: root folder of the layout; created if needed.

    Returns:
        The path written.

    Raises:
        ValueError: a text contains a tab or a line break (not representable in the format).
    """
    t = get_task(task)
    path = glue_tsv_path(task, split, data_dir)
    rows = [_fields_for_row(t, split, i, ex) for i, ex in enumerate(examples)]
    for i, row in enumerate(rows):
        for field in row:
            if any(ch in field for ch in "\t\r\n"):
                raise ValueError(f"example {i}: field {field!r} contains a tab or line break")
    header = _header(t, split)
    if header is not None:
        rows.insert(0, header)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoding = "utf-8-sig" if t.name == "mrpc" else "utf-8"
    with open(path, "w", encoding=encoding, newline="") as f:
        f.write("".join("\t".join(row) + "\n" for row in rows))
    return path


# ---------------------------------------------------------------------------- HF Hub


def _load_glue_hub(t: GlueTask, split: str, limit: int | None) -> list[Example]:
    """Load ``split`` of ``t`` from ``nyu-mll/glue`` and convert it to example dicts."""
    ds = load_hub_split(HF_GLUE_ID, t.name, split, limit, GLUE_DIR_ENV)
    k1, k2 = t.text_keys
    return [
        {
            "sentence1": row[k1],
            "sentence2": None if k2 is None else row[k2],
            "label": float(row["label"]) if t.is_regression else int(row["label"]),
        }
        for row in ds
    ]


# ---------------------------------------------------------------------------- entry point


def load_glue(
    task: str, split: str, data_dir: str | os.PathLike | None = None, limit: int | None = None
) -> list[Example]:
    """Load one split of a GLUE task.

    Args:
        task: one of ``TASKS`` ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte").
        split: "train", "validation", or for MNLI "validation_matched" /
            "validation_mismatched".
        data_dir: folder in the official GLUE layout, or the task's own folder in it
            (``task_dir``). If None, ``$GLUE_DIR`` is used; if that is unset too, the split is
            loaded from the HF Hub.
        limit: keep only the first ``limit`` examples (file order; deterministic).

    Returns:
        List of ``{"sentence1": str, "sentence2": str | None, "label": int | float}``.

    Raises:
        ValueError: unknown task or split; DataError (a ValueError): a malformed or empty file.
        FileNotFoundError (DataFileNotFound, a DataError too): the local file is missing (the
            message names the path).
        RuntimeError: no local folder was given and the Hub is offline or unreachable.
    """
    t = get_task(task)
    t.tsv_file(split)  # validates the split
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if data_dir is None:
        data_dir = os.environ.get(GLUE_DIR_ENV) or None
    if data_dir is None:
        return _load_glue_hub(t, split, limit)

    path = task_dir(task, data_dir) / t.tsv_file(split)
    if not path.is_file():
        raise DataFileNotFound(
            f"GLUE file not found: {path}. Pass --data-dir DIR or set {GLUE_DIR_ENV}=DIR to a "
            f"folder in the official GLUE layout (DIR/{t.dir_name}/{t.tsv_file(split)}) or to "
            f"the task's own folder (DIR/{t.tsv_file(split)})."
        )
    examples, skipped = read_glue_tsv(task, path)
    if skipped:
        logger.warning(
            "%s: skipped %d malformed rows with missing fields (as GLUE does)", path, skipped
        )
    if not examples:
        raise DataError(f"{path}: no examples")
    return examples if limit is None else examples[:limit]
