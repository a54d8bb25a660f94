"""GLUE with AdaLoRA, LoRA, full fine-tuning or BitFit: one run, one result file.

    python experiments/glue.py --task rte --method adalora            # quick preset, MiniLM, CPU
    python experiments/glue.py --task rte --method lora --target-r 2  # LoRA at the matched budget
    python experiments/glue.py --preset paper --task rte --method adalora \
        --model microsoft/deberta-v3-base --dry-run                   # the paper's configuration

Data: --data-dir (or GLUE_DIR) in the official GLUE TSV layout, else the Hub (nyu-mll/glue).
Every flag overrides the preset; --help lists them. Results: results/runs/<run-name>.json.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from experiments import cli
from experiments.glue_data import TASKS, load_glue
from experiments.hub import load_pretrained
from experiments.metrics import glue_metrics
from experiments.presets import BASE, QUICK_LR
from experiments.train import Data, Task

TASK_CHOICES = ["sst2"] + [t for t in TASKS if t != "sst2"]  # the first is the default task


# ---------------------------------------------------------------- presets
@dataclass(frozen=True)
class PaperRow:
    """One task of the authors' GLUE scripts for DeBERTaV3-base (QingruZhang/AdaLoRA,
    NLU/scripts/run_debertav3_<task>.sh; the paper's appendix lists them as its GLUE
    hyperparameters, with the differences noted per row)."""

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


# Batch 32, betas 0.85, all six matrix types of every layer (COMMON) for every task.
# fmt: off
PAPER = {
    "mnli": PaperRow(init_r=3, target_r=1, lora_alpha=16, lr=5e-4, epochs=7, max_length=256,
                     orth_reg_weight=0.1, tinit=8000, delta_t=100, tfinal=50000, warmup=1000,
                     cls_dropout=0.15, weight_decay=0.0),
    "rte": PaperRow(init_r=2, target_r=1, lora_alpha=32, lr=1.2e-3, epochs=50, max_length=320,
                    orth_reg_weight=0.3, tinit=600, delta_t=1, tfinal=1800, warmup=200,
                    cls_dropout=0.2, weight_decay=0.01),
    "qnli": PaperRow(init_r=2, target_r=1, lora_alpha=32, lr=5e-4,  # paper: lr 1.2e-3
                     epochs=5, max_length=512, orth_reg_weight=0.1, tinit=2000, delta_t=100,
                     tfinal=8000, warmup=500, cls_dropout=0.1, weight_decay=0.01),
    "mrpc": PaperRow(init_r=2, target_r=1, lora_alpha=32, lr=1e-3, epochs=30, max_length=320,
                     orth_reg_weight=0.1, tinit=600, delta_t=1, tfinal=1800, warmup=0.1,
                     cls_dropout=0.0, weight_decay=0.01),
    "qqp": PaperRow(init_r=2, target_r=1, lora_alpha=16, lr=8e-4,  # paper: lr 5e-4
                    epochs=5, max_length=320, orth_reg_weight=0.1, tinit=8000, delta_t=100,
                    tfinal=25000, warmup=2000, cls_dropout=0.15, weight_decay=0.01),
    "sst2": PaperRow(init_r=2, target_r=1, lora_alpha=16, lr=8e-4, epochs=24, max_length=128,
                     orth_reg_weight=0.1, tinit=6000, delta_t=100, tfinal=22000, warmup=1000,
                     cls_dropout=0.0, weight_decay=0.01),
    "cola": PaperRow(init_r=3, target_r=1, lora_alpha=32, lr=8e-4,  # paper: lr 5e-4, gamma 0.5
                     epochs=25, max_length=64, orth_reg_weight=0.1, tinit=800, delta_t=10,
                     tfinal=3500, warmup=100, cls_dropout=0.1, weight_decay=0.0),
    "stsb": PaperRow(init_r=2, target_r=1, lora_alpha=32, lr=2.2e-3, epochs=25,
                     max_length=128, orth_reg_weight=0.3,  # paper: gamma 0.1
                     tinit=800, delta_t=10, tfinal=2000, warmup=100, cls_dropout=0.2,
                     weight_decay=0.1),
}
# fmt: on
COMMON = {**BASE, "batch_size": 32, "precision": "fp32"}


def paper_preset(task: str, method: str) -> dict:
    row = PAPER[task]
    return {
        **COMMON,
        "model": "microsoft/deberta-v3-base",
        **asdict(row),
        "evals": int(row.epochs),
        "eval_batch_size": 64,
        "precision": "bf16",
    }


@dataclass(frozen=True)
class QuickRow:
    """One task of the quick preset."""

    epochs: int
    max_length: int
    max_train_samples: int | None  # None: every training example
    batch_size: int
    orth_reg_weight: float
    lora_alpha: int
    delta_t: int
    cls_dropout: float
    weight_decay: float


# quick: the packaged all-MiniLM-L6-v2, one pass over (at most 8000) training examples, sized
# to finish in under 10 minutes on 2 CPU cores; gamma, alpha, cls dropout and weight decay as
# the paper's row, deltaT at most 10. Schedule fractions follow the paper's (tinit ~ 0.15 T,
# tfinal ~ 0.45 T).
# fmt: off
QUICK = {
    "rte": QuickRow(epochs=1, max_length=128, max_train_samples=None, batch_size=16,
                    orth_reg_weight=0.3, lora_alpha=32, delta_t=1, cls_dropout=0.2,
                    weight_decay=0.01),
    "mrpc": QuickRow(epochs=1, max_length=128, max_train_samples=None, batch_size=32,
                     orth_reg_weight=0.1, lora_alpha=32, delta_t=1, cls_dropout=0.0,
                     weight_decay=0.01),
    "stsb": QuickRow(epochs=1, max_length=128, max_train_samples=None, batch_size=32,
                     orth_reg_weight=0.3, lora_alpha=32, delta_t=10, cls_dropout=0.2,
                     weight_decay=0.1),
    "cola": QuickRow(epochs=1, max_length=64, max_train_samples=None, batch_size=32,
                     orth_reg_weight=0.1, lora_alpha=32, delta_t=10, cls_dropout=0.1,
                     weight_decay=0.0),
    "sst2": QuickRow(epochs=1, max_length=64, max_train_samples=8000, batch_size=32,
                     orth_reg_weight=0.1, lora_alpha=16, delta_t=10, cls_dropout=0.0,
                     weight_decay=0.01),
    "qnli": QuickRow(epochs=1, max_length=128, max_train_samples=8000, batch_size=32,
                     orth_reg_weight=0.1, lora_alpha=32, delta_t=10, cls_dropout=0.1,
                     weight_decay=0.01),
    "qqp": QuickRow(epochs=1, max_length=128, max_train_samples=8000, batch_size=32,
                    orth_reg_weight=0.1, lora_alpha=16, delta_t=10, cls_dropout=0.15,
                    weight_decay=0.01),
    "mnli": QuickRow(epochs=1, max_length=128, max_train_samples=8000, batch_size=32,
                     orth_reg_weight=0.1, lora_alpha=16, delta_t=10, cls_dropout=0.15,
                     weight_decay=0.0),
}
# fmt: on


def quick_preset(task: str, method: str) -> dict:
    return {
        **COMMON,
        "model": "minilm",
        **asdict(QUICK[task]),
        "init_r": None,
        "target_r": 8,
        "lr": QUICK_LR[method],
        "tinit": None,
        "tinit_frac": 0.15,
        "tfinal": None,
        "tfinal_frac": 0.45,
        "warmup": 0.06,
        "evals": 2,
        "eval_batch_size": 128,
    }


PRESETS = {"quick": quick_preset, "paper": paper_preset}


# ---------------------------------------------------------------- task
def make_task(args) -> Task:
    meta = TASKS[args.task]

    def load_model(name, hp):
        from transformers import AutoConfig, AutoModelForSequenceClassification

        kw = {"num_labels": meta.num_labels}
        cfg = load_pretrained(AutoConfig, name, **kw)
        if hp.get("cls_dropout") is not None:
            for attr in ("classifier_dropout", "cls_dropout", "pooler_dropout"):
                setattr(cfg, attr, hp["cls_dropout"])
        return load_pretrained(AutoModelForSequenceClassification, name, config=cfg)

    def load_tokenizer(name):
        from transformers import AutoTokenizer

        return load_pretrained(AutoTokenizer, name)

    def encode(tok, rows, max_len):
        a = [r["sentence1"] for r in rows]
        b = [r["sentence2"] for r in rows] if rows and rows[0]["sentence2"] is not None else None
        enc = tok(a, b, truncation=True, max_length=max_len)
        dtype = float if meta.is_regression else int
        # a list of feature dicts is all the Trainer's DataLoader needs
        return [
            {**{k: enc[k][i] for k in enc}, "labels": dtype(r["label"])} for i, r in enumerate(rows)
        ]

    def load_data(tok, hp, data_dir):
        tr = load_glue(args.task, "train", data_dir, limit=hp.get("max_train_samples"))
        evs = {
            s: load_glue(args.task, s, data_dir, limit=hp.get("max_eval_samples"))
            for s in meta.eval_splits
        }
        ml = hp["max_length"]
        # evaluation sets sorted by length: batches of similar length carry little padding, and
        # every GLUE metric ignores the order of the examples
        return Data(
            train=encode(tok, tr, ml),
            evals={
                s: sorted(encode(tok, v, ml), key=lambda e: len(e["input_ids"]))
                for s, v in evs.items()
            },
            n_train=len(tr),
            n_eval={s: len(v) for s, v in evs.items()},
        )

    def collator(tok, model):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tok)

    def compute_metrics(eval_pred, split):
        logits = eval_pred.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        # regression: (N, 1) from most models, (N,) from DeBERTa-v2/v3 (it flattens them)
        preds = np.reshape(logits, -1) if meta.is_regression else np.argmax(logits, axis=-1)
        return glue_metrics(args.task, preds, eval_pred.label_ids)

    return Task(
        kind="glue",
        name=args.task,
        main_metric=meta.main_metric,
        load_model=load_model,
        load_tokenizer=load_tokenizer,
        load_data=load_data,
        collator=collator,
        compute_metrics=compute_metrics,
    )


DESCRIPTION = __doc__.splitlines()[0]


def build_parser():
    """glue.py's argument parser (scripts/ablate.py reads its flags from it)."""
    return cli.build_parser(DESCRIPTION, TASK_CHOICES, list(PRESETS))


def main(argv=None):
    return cli.main(make_task, PRESETS, DESCRIPTION, TASK_CHOICES, argv)


if __name__ == "__main__":
    main()
