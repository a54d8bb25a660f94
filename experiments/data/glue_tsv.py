"""GLUE's TSV files: read the way GLUE's own loaders read them, with format checks, and
written in the official layout (test fixtures). Columns and labels come from the task
(experiments/data/glue.py: ``GlueTask``); the public entry points there take a task name.

Files are read with ``csv.reader``, a tab delimiter and ``quoting=csv.QUOTE_NONE``, as GLUE
reads them. With default quoting, fields that begin with ``"`` (present in MRPC, QNLI, STS-B
and RTE) swallow the following lines and rows merge.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from experiments.data.files import DataError, read_data_file
from experiments.tasks import Example, GlueTask

# ---------------------------------------------------------------------------- reading


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


def read_tsv(t: GlueTask, path: str | os.PathLike) -> tuple[list[Example], int]:
    """Read one TSV file of task ``t`` the way GLUE's loaders do.

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
    return read_data_file(_read_tsv, path, t)


def _read_tsv(path: Path, t: GlueTask) -> tuple[list[Example], int]:
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


# ---------------------------------------------------------------------------- writing


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


def write_tsv(t: GlueTask, split: str, examples: Iterable[Example], path: Path) -> Path:
    """Write examples of ``split`` of ``t`` to ``path`` in the official GLUE layout.

    Meant for small test fixtures. The output reads back to the same examples: CoLA gets no
    header and 4 columns, MRPC a UTF-8 byte-order mark, STS-B scores are written with 3
    decimals (as in the official files), and fields are written verbatim (no quoting), so a
    text starting with ``"`` stays as it is.

    Raises:
        ValueError: a text contains a tab or a line break (not representable in the format).
    """
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
