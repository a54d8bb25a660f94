"""Summarisation data (XSum, CNN/DailyMail) from local JSON lines or the HF Hub.

Every loader returns a list of examples, each a dict::

    {"document": str, "summary": str, "id": str}

Where the data comes from (first that applies, never a silent fallback):

1. the ``data_dir`` argument (runners pass ``--data-dir``),
2. the ``SUMM_DIR`` environment variable,
3. the HF Hub: ``EdinburghNLP/xsum`` (fields document, summary, id) or
   ``abisee/cnn_dailymail`` config "3.0.0" (fields article, highlights, id).

A local folder holds one JSON-lines file per split::

    <data_dir>/xsum/{train,validation,test}.jsonl
    <data_dir>/cnn_dailymail/{train,validation,test}.jsonl

(``data_dir`` may also be the dataset's own folder, <data_dir>/xsum.)

with one object per line carrying at least "document", "summary" and "id" (other fields
are ignored): document and summary text (a ``null`` one is read as ""), id a string or an
integer. Every line of a file is checked, also past the examples a run keeps.

``split_examples`` picks a run's training and evaluation examples (disjoint parts of one split
when the local copy has no train split; see experiments/summarization.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.data.files import DataError, DataFileNotFound, read_data_file
from experiments.hub import load_hub_split

SUMM_DIR_ENV = "SUMM_DIR"
SPLITS = ("train", "validation", "test")

Example = dict[str, Any]


@dataclass(frozen=True)
class SummDataset:
    """Where a summarisation dataset lives on the Hub and what its fields are called."""

    name: str
    hf_id: str
    hf_config: str | None
    document_key: str
    summary_key: str


DATASETS: dict[str, SummDataset] = {
    "xsum": SummDataset("xsum", "EdinburghNLP/xsum", None, "document", "summary"),
    "cnn_dailymail": SummDataset(
        "cnn_dailymail", "abisee/cnn_dailymail", "3.0.0", "article", "highlights"
    ),
}


def dataset_dir(dataset: str, data_dir: str | os.PathLike) -> Path:
    """The dataset's folder for a ``data_dir`` that is either the folder holding
    ``<dataset>/`` or the dataset's own folder (named like it: .../xsum)."""
    d = Path(data_dir)
    if not (d / dataset).is_dir() and d.name.lower() == dataset:
        return d
    return d / dataset


def summ_jsonl_path(dataset: str, split: str, data_dir: str | os.PathLike) -> Path:
    """Path ``<data_dir>/<dataset>/<split>.jsonl`` (or ``<data_dir>/<split>.jsonl`` when
    ``data_dir`` is the dataset's folder)."""
    return dataset_dir(dataset, data_dir) / f"{split}.jsonl"


def read_summ_jsonl(path: str | os.PathLike, limit: int | None = None) -> list[Example]:
    """Read a JSON-lines file into ``{"document", "summary", "id"}`` dicts.

    Args:
        path: the .jsonl file.
        limit: keep only the first this many examples (file order); the lines after them are
            still read and checked, so a broken line anywhere in the file is an error.

    Raises:
        DataError (a ValueError): the file cannot be read or is not UTF-8 text, a line is not
            a JSON object, lacks one of the three fields, has a document / summary that is
            not a string (or null), or an id that is not a string or an integer.
    """
    return read_data_file(_read_summ_jsonl, path, limit)


def _read_summ_jsonl(path: Path, limit: int | None) -> list[Example]:
    out: list[Example] = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            example = _summ_example(_json_line(path, line_no, line), path, line_no)
            if limit is None or len(out) < limit:
                out.append(example)
    return out


def _json_line(path: Path, line_no: int, line: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}, line {line_no}: invalid JSON ({e})") from None


def _summ_example(obj, path: Path, line_no: int) -> Example:
    """One line's example; DataError naming the file and line when it is not one."""
    if not isinstance(obj, dict):
        raise DataError(f"{path}, line {line_no}: not a JSON object")
    missing = [k for k in ("document", "summary", "id") if k not in obj]
    if missing:
        raise DataError(f"{path}, line {line_no}: missing field(s) {missing}")
    for k in ("document", "summary"):
        if not isinstance(obj[k], (str, type(None))):
            raise DataError(f"{path}, line {line_no}: {k} is {type(obj[k]).__name__}, not text")
    if not isinstance(obj["id"], (str, int)) or isinstance(obj["id"], bool):
        raise DataError(
            f"{path}, line {line_no}: id is {json.dumps(obj['id'])[:40]}, not a string or "
            "an integer"
        )
    return {
        "document": obj["document"] or "",
        "summary": obj["summary"] or "",
        "id": str(obj["id"]),
    }


def _load_summ_hub(ds: SummDataset, split: str, limit: int | None) -> list[Example]:
    """Load ``split`` of ``ds`` from the Hub and convert it to example dicts."""
    hub = load_hub_split(ds.hf_id, ds.hf_config, split, limit, SUMM_DIR_ENV)
    return [
        {
            "document": row[ds.document_key] or "",
            "summary": row[ds.summary_key] or "",
            "id": str(row["id"]),
        }
        for row in hub
    ]


def load_summarization(
    dataset: str, split: str, data_dir: str | os.PathLike | None = None, limit: int | None = None
) -> list[Example]:
    """Load one split of a summarisation dataset.

    Args:
        dataset: "xsum" or "cnn_dailymail".
        split: "train", "validation" or "test".
        data_dir: folder holding ``<dataset>/<split>.jsonl``. If None, ``$SUMM_DIR`` is used;
            if that is unset too, the split is loaded from the HF Hub.
        limit: keep only the first ``limit`` examples (file order; deterministic).

    Returns:
        List of ``{"document": str, "summary": str, "id": str}``.

    Raises:
        ValueError: unknown dataset or split, or a malformed file.
        FileNotFoundError: the local file is missing (the message names the path and lists
            the split files that do exist in that folder).
        RuntimeError: no local folder was given and the Hub is offline or unreachable.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown summarization dataset {dataset!r}; known: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if data_dir is None:
        data_dir = os.environ.get(SUMM_DIR_ENV) or None
    if data_dir is None:
        return _load_summ_hub(DATASETS[dataset], split, limit)

    path = summ_jsonl_path(dataset, split, data_dir)
    if not path.is_file():
        folder = path.parent
        if folder.is_dir():
            present = sorted(p.name for p in folder.glob("*.jsonl"))
            found = f"files present in {folder}: {', '.join(present) or 'none'}"
        else:
            found = f"the folder {folder} does not exist"
        raise DataFileNotFound(
            f"summarization file not found: {path} ({found}). Pass --data-dir DIR or set "
            f"{SUMM_DIR_ENV}=DIR to a folder holding {dataset}/<split>.jsonl (or to the "
            f"{dataset} folder itself)."
        )
    rows = read_summ_jsonl(path, limit)
    if not rows and limit != 0:
        raise DataError(f"{path}: no examples")
    return rows


def _local_dir(data_dir) -> str | None:
    return data_dir or os.environ.get(SUMM_DIR_ENV) or None


def resolve_splits(dataset: str, hp: dict, data_dir) -> tuple[str, str]:
    """(train split, eval split): the flags, else the preset, else what the local folder has."""
    local = _local_dir(data_dir)
    have = (lambda s: summ_jsonl_path(dataset, s, local).is_file()) if local else (lambda s: True)
    ev = hp.get("eval_split") or ("validation" if have("validation") else "test")
    tr = hp.get("train_split") or ("train" if have("train") else ev)
    return tr, ev


@dataclass(frozen=True)
class Split:
    """A run's training and evaluation examples and where they come from (``load_split``).

    ``shared``: the number of examples of the one split both come from (disjoint parts of it),
    or None when they come from two splits (each the first ``max_*_samples`` of its own)."""

    train: list[Example]
    eval: list[Example]
    note: str
    train_split: str
    eval_split: str
    shared: int | None


def load_split(dataset: str, hp: dict, data_dir) -> Split:
    """Training and evaluation examples (hp: max_train_samples, max_eval_samples, train_split,
    eval_split). Either may hold fewer than asked for; ``Split`` says how many there were."""
    tr_split, ev_split = resolve_splits(dataset, hp, data_dir)
    n_tr_max, n_ev_max = hp.get("max_train_samples"), hp.get("max_eval_samples")
    where = _local_dir(data_dir) or "the Hub"
    if tr_split != ev_split:
        train_rows = load_summarization(dataset, tr_split, data_dir, limit=n_tr_max)
        eval_rows = load_summarization(dataset, ev_split, data_dir, limit=n_ev_max)
        note = (
            f"{dataset} from {where}: train = first {len(train_rows)} of {tr_split}, "
            f"eval = first {len(eval_rows)} of {ev_split}"
        )
        return Split(train_rows, eval_rows, note, tr_split, ev_split, None)
    rows = load_summarization(dataset, ev_split, data_dir)
    n = len(rows)
    n_ev = min(n_ev_max, n - 1) if n_ev_max is not None else max(1, n // 10)
    n_tr = n - n_ev if n_tr_max is None else min(n_tr_max, n - n_ev)
    if n < 2 or n_ev < 1 or n_tr < 1:
        raise DataError(
            f"{dataset}/{ev_split} has {n} examples: too few to train and evaluate "
            f"on disjoint parts of it"
        )
    note = (
        f"{dataset} from {where}: no separate train split used; train AND eval both come "
        f"from {ev_split} ({n} examples), disjoint: train = examples [0, {n_tr}), "
        f"eval = examples [{n - n_ev}, {n})"
    )
    return Split(rows[:n_tr], rows[n - n_ev :], note, tr_split, ev_split, n)


def split_examples(dataset: str, hp: dict, data_dir) -> tuple[list, list, str]:
    """Training and evaluation examples, and a note saying where they come from."""
    s = load_split(dataset, hp, data_dir)
    return s.train, s.eval, s.note
