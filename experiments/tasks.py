"""The GLUE tasks as data: names, folders, label sets, metrics, evaluation splits, TSV columns
and preset rows (one ``GlueTask`` per task in ``TASKS``: adding a task is one entry here, plus
its paper numbers in scripts/paper_numbers.py for the tables). Reading the files is
experiments/data/glue_tsv.py's job, loading them (local or Hub) experiments/data/glue.py's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Example = dict[str, Any]


@dataclass(frozen=True)
class GlueTask:
    """Static description of one GLUE task.

    Attributes:
        name: task name as used on the command line and as the HF config ("rte", ...).
        dir_name: folder of the task in the official GLUE layout ("RTE", "STS-B", ...), its
            official name: the label the result tables print (``label``).
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
        paper, quick: the task's rows of the presets (experiments/presets.py GLUE).
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
    paper: PaperRow | None = None
    quick: QuickRow | None = None

    @property
    def label(self) -> str:
        """The task's name in the result tables: GLUE's own ("SST-2", "STS-B", ...)."""
        return self.dir_name

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


@dataclass(frozen=True)
class PaperRow:
    """A task's row of the paper preset: the authors' GLUE script for DeBERTaV3-base
    (QingruZhang/AdaLoRA, NLU/scripts/run_debertav3_<task>.sh; the paper's appendix lists them as
    its GLUE hyperparameters, with the differences noted per row). Batch 32, betas 0.85, all six
    matrix types of every layer for every task (experiments/presets.py glue_paper)."""

    init_r: int
    target_r: int
    lora_alpha: int
    lr: float
    epochs: int
    max_length: int
    orth_reg_weight: float
    tinit: int
    delta_t: int
    tfinal: int
    warmup: float  # steps if >= 1, else a fraction of T
    cls_dropout: float
    weight_decay: float


@dataclass(frozen=True)
class QuickRow:
    """A task's row of the quick preset: the packaged all-MiniLM-L6-v2, one pass over (at most
    8000) training examples, sized to finish in under 10 minutes on 2 CPU cores; gamma, alpha,
    cls dropout and weight decay as the paper's row, deltaT at most 10 (schedule fractions and
    the rest: experiments/presets.py glue_quick)."""

    epochs: int
    max_length: int
    max_train_samples: int | None  # None: every training example
    batch_size: int
    orth_reg_weight: float
    lora_alpha: int
    delta_t: int
    cls_dropout: float
    weight_decay: float


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")

# fmt: off
TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in [
        GlueTask(
            "cola", "CoLA", ("sentence", None), 2, _BINARY, False, "mcc", ("mcc",),
            ("validation",), has_header=False, tsv_columns=(3, None, 1),
            paper=PaperRow(init_r=3, target_r=1, lora_alpha=32, lr=8e-4,  # paper: lr 5e-4,
                           epochs=25, max_length=64, orth_reg_weight=0.1,  # gamma 0.5
                           tinit=800, delta_t=10, tfinal=3500, warmup=100, cls_dropout=0.1,
                           weight_decay=0.0),
            quick=QuickRow(epochs=1, max_length=64, max_train_samples=None, batch_size=32,
                           orth_reg_weight=0.1, lora_alpha=32, delta_t=10, cls_dropout=0.1,
                           weight_decay=0.0),
        ),
        GlueTask(
            "sst2", "SST-2", ("sentence", None), 2, _BINARY, False, "accuracy", ("accuracy",),
            ("validation",), True, ("sentence", None, "label"),
            paper=PaperRow(init_r=2, target_r=1, lora_alpha=16, lr=8e-4, epochs=24,
                           max_length=128, orth_reg_weight=0.1, tinit=6000, delta_t=100,
                           tfinal=22000, warmup=1000, cls_dropout=0.0, weight_decay=0.01),
            quick=QuickRow(epochs=1, max_length=64, max_train_samples=8000, batch_size=32,
                           orth_reg_weight=0.1, lora_alpha=16, delta_t=10, cls_dropout=0.0,
                           weight_decay=0.01),
        ),
        GlueTask(
            "mrpc", "MRPC", ("sentence1", "sentence2"), 2, _BINARY, False, "accuracy",
            ("accuracy", "f1"), ("validation",), True, ("#1 String", "#2 String", "Quality"),
            paper=PaperRow(init_r=2, target_r=1, lora_alpha=32, lr=1e-3, epochs=30,
                           max_length=320, orth_reg_weight=0.1, tinit=600, delta_t=1,
                           tfinal=1800, warmup=0.1, cls_dropout=0.0, weight_decay=0.01),
            quick=QuickRow(epochs=1, max_length=128, max_train_samples=None, batch_size=32,
                           orth_reg_weight=0.1, lora_alpha=32, delta_t=1, cls_dropout=0.0,
                           weight_decay=0.01),
        ),
        GlueTask(
            "qqp", "QQP", ("question1", "question2"), 2, _BINARY, False, "accuracy",
            ("accuracy", "f1"), ("validation",), True, ("question1", "question2", "is_duplicate"),
            skip_malformed=True,
            paper=PaperRow(init_r=2, target_r=1, lora_alpha=16, lr=8e-4,  # paper: lr 5e-4
                           epochs=5, max_length=320, orth_reg_weight=0.1, tinit=8000,
                           delta_t=100, tfinal=25000, warmup=2000, cls_dropout=0.15,
                           weight_decay=0.01),
            quick=QuickRow(epochs=1, max_length=128, max_train_samples=8000, batch_size=32,
                           orth_reg_weight=0.1, lora_alpha=16, delta_t=10, cls_dropout=0.15,
                           weight_decay=0.01),
        ),
        GlueTask(
            "stsb", "STS-B", ("sentence1", "sentence2"), 1, (), True, "pearson",
            ("pearson", "spearman", "corr"), ("validation",), True,
            ("sentence1", "sentence2", "score"),
            paper=PaperRow(init_r=2, target_r=1, lora_alpha=32, lr=2.2e-3, epochs=25,
                           max_length=128, orth_reg_weight=0.3,  # paper: gamma 0.1
                           tinit=800, delta_t=10, tfinal=2000, warmup=100, cls_dropout=0.2,
                           weight_decay=0.1),
            quick=QuickRow(epochs=1, max_length=128, max_train_samples=None, batch_size=32,
                           orth_reg_weight=0.3, lora_alpha=32, delta_t=10, cls_dropout=0.2,
                           weight_decay=0.1),
        ),
        GlueTask(
            "mnli", "MNLI", ("premise", "hypothesis"), 3,
            ("entailment", "neutral", "contradiction"), False, "accuracy", ("accuracy",),
            ("validation_matched", "validation_mismatched"), True,
            ("sentence1", "sentence2", "gold_label"),
            tsv_files=(
                ("train", "train.tsv"),
                ("validation_matched", "dev_matched.tsv"),
                ("validation_mismatched", "dev_mismatched.tsv"),
            ),
            paper=PaperRow(init_r=3, target_r=1, lora_alpha=16, lr=5e-4, epochs=7,
                           max_length=256, orth_reg_weight=0.1, tinit=8000, delta_t=100,
                           tfinal=50000, warmup=1000, cls_dropout=0.15, weight_decay=0.0),
            quick=QuickRow(epochs=1, max_length=128, max_train_samples=8000, batch_size=32,
                           orth_reg_weight=0.1, lora_alpha=16, delta_t=10, cls_dropout=0.15,
                           weight_decay=0.0),
        ),
        GlueTask(
            "qnli", "QNLI", ("question", "sentence"), 2, _NLI2, False, "accuracy", ("accuracy",),
            ("validation",), True, ("question", "sentence", "label"),
            paper=PaperRow(init_r=2, target_r=1, lora_alpha=32, lr=5e-4,  # paper: lr 1.2e-3
                           epochs=5, max_length=512, orth_reg_weight=0.1, tinit=2000,
                           delta_t=100, tfinal=8000, warmup=500, cls_dropout=0.1,
                           weight_decay=0.01),
            quick=QuickRow(epochs=1, max_length=128, max_train_samples=8000, batch_size=32,
                           orth_reg_weight=0.1, lora_alpha=32, delta_t=10, cls_dropout=0.1,
                           weight_decay=0.01),
        ),
        GlueTask(
            "rte", "RTE", ("sentence1", "sentence2"), 2, _NLI2, False, "accuracy", ("accuracy",),
            ("validation",), True, ("sentence1", "sentence2", "label"),
            paper=PaperRow(init_r=2, target_r=1, lora_alpha=32, lr=1.2e-3, epochs=50,
                           max_length=320, orth_reg_weight=0.3, tinit=600, delta_t=1,
                           tfinal=1800, warmup=200, cls_dropout=0.2, weight_decay=0.01),
            quick=QuickRow(epochs=1, max_length=128, max_train_samples=None, batch_size=16,
                           orth_reg_weight=0.3, lora_alpha=32, delta_t=1, cls_dropout=0.2,
                           weight_decay=0.01),
        ),
    ]
}
# fmt: on


def get_task(task: str) -> GlueTask:
    """Return ``TASKS[task]``; ValueError listing the known tasks otherwise."""
    try:
        return TASKS[task]
    except KeyError:
        raise ValueError(f"unknown GLUE task {task!r}; known: {', '.join(TASKS)}") from None


# ---------------------------------------------------------------------------- files
