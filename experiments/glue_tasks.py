"""The GLUE tasks as data: names, folders, label sets, metrics, evaluation splits and TSV
columns (one ``GlueTask`` per task in ``TASKS``). Reading the files is glue_tsv.py's job,
loading them (local or Hub) glue_data.py's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


# ---------------------------------------------------------------------------- files
