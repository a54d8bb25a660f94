"""GLUE data: a task's splits from local TSVs (official layout) or the HF Hub; the task table
itself (``TASKS``: columns, labels, metrics) is experiments/tasks.py.

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

Files are read exactly as GLUE's own loaders read them, with format checks
(experiments/data/glue_tsv.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from experiments.data.files import DataError, DataFileNotFound
from experiments.data.glue_tsv import read_tsv, write_tsv
from experiments.hub import load_hub_split
from experiments.tasks import Example, GlueTask, get_task

logger = logging.getLogger(__name__)

HF_GLUE_ID = "nyu-mll/glue"
GLUE_DIR_ENV = "GLUE_DIR"


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


def read_glue_tsv(task: str, path: str | os.PathLike) -> tuple[list[Example], int]:
    """Read one TSV file of ``task``: ``(examples, n_skipped)``, with the format checks of
    :func:`experiments.data.glue_tsv.read_tsv` (DataError for a malformed file)."""
    return read_tsv(get_task(task), path)


def write_glue_tsv(
    task: str, split: str, examples: Iterable[Example], data_dir: str | os.PathLike
) -> Path:
    """Write examples as ``<data_dir>/<TaskDir>/<file>.tsv`` in the official GLUE layout (test
    fixtures; :func:`experiments.data.glue_tsv.write_tsv`). They read back through
    :func:`load_glue` to the same examples.

    Args:
        task, split: as for :func:`load_glue`.
        examples: dicts with "sentence1", "sentence2" (None for single-sentence tasks) and
            "label" (label index, or float score for STS-B).
        data_dir: root folder of the layout; created if needed.

    Returns:
        The path written.
    """
    return write_tsv(get_task(task), split, examples, glue_tsv_path(task, split, data_dir))


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
