"""GLUE with AdaLoRA, LoRA, full fine-tuning or BitFit: one run, one result file.

    python experiments/glue.py --task rte --method adalora            # quick preset, MiniLM, CPU
    python experiments/glue.py --task rte --method lora --target-r 2  # LoRA at the matched budget
    python experiments/glue.py --preset paper --task rte --method adalora \
        --model microsoft/deberta-v3-base --dry-run                   # the paper's configuration

Data: --data-dir (or GLUE_DIR) in the official GLUE TSV layout, else the Hub (nyu-mll/glue).
Every flag overrides the preset; --help lists them. Results: results/runs/<run-name>.json.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from experiments import cli
from experiments.config import GlueConfig
from experiments.config import build_parser as config_parser
from experiments.data.glue import load_glue
from experiments.hub import load_pretrained
from experiments.methods import METHODS
from experiments.metrics import glue_metrics
from experiments.presets import BASE, NoValue
from experiments.tasks import TASKS
from experiments.train import Data, Task

TASK_CHOICES = GlueConfig.__dataclass_fields__["task"].metadata["choices"]  # sst2 first


# ---------------------------------------------------------------- presets
# Per task: the rows of TASKS (experiments/tasks.py); per method: the quick LR (METHODS).
COMMON = {**BASE, "batch_size": 32, "precision": "fp32"}
PAPER_SEED = 6  # the authors' run_debertav3_<task>.sh (--seed 6)


def paper_preset(task: str, method: str) -> dict:
    """The authors' per-task settings for DeBERTaV3-base (tasks.PaperRow), with their
    scripts' seed. Their learning rate is AdaLoRA's, for every adapter method; neither the paper
    nor the scripts give one for full fine-tuning or BitFit, so those need --lr."""
    row = TASKS[task].paper
    preset = {
        **COMMON,
        "model": "microsoft/deberta-v3-base",
        **asdict(row),
        "evals": int(row.epochs),
        "eval_batch_size": 64,
        "precision": "bf16",
        "seed": PAPER_SEED,
    }
    if not METHODS[method].adapters:
        preset["lr"] = NoValue(
            f"the paper preset has no learning rate for --method {method}: the paper and the "
            "authors' scripts give one for the adapter methods only"
        )
    return preset


def quick_preset(task: str, method: str) -> dict:
    """MiniLM on CPU (tasks.QuickRow); schedule fractions follow the paper's (tinit ~ 0.15 T,
    tfinal ~ 0.45 T)."""
    return {
        **COMMON,
        "model": "minilm",
        **asdict(TASKS[task].quick),
        "init_r": None,
        "target_r": 8,
        "lr": METHODS[method].quick_lr,
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
def make_task(cfg: GlueConfig) -> Task:
    meta = TASKS[cfg.task]

    def load_model(name, cfg: GlueConfig):
        from transformers import AutoConfig, AutoModelForSequenceClassification

        kw = {"num_labels": meta.num_labels}
        config = load_pretrained(AutoConfig, name, **kw)
        if cfg.cls_dropout is not None:
            for attr in ("classifier_dropout", "cls_dropout", "pooler_dropout"):
                setattr(config, attr, cfg.cls_dropout)
        return load_pretrained(AutoModelForSequenceClassification, name, config=config)

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

    def load_data(tok, cfg: GlueConfig, data_dir):
        tr = load_glue(cfg.task, "train", data_dir, limit=cfg.max_train_samples)
        evs = {
            s: load_glue(cfg.task, s, data_dir, limit=cfg.max_eval_samples)
            for s in meta.eval_splits
        }
        ml = cfg.max_length
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
        return glue_metrics(cfg.task, preds, eval_pred.label_ids)

    return Task(
        kind="glue",
        name=cfg.task,
        main_metric=meta.main_metric,
        load_model=load_model,
        load_tokenizer=load_tokenizer,
        load_data=load_data,
        collator=collator,
        compute_metrics=compute_metrics,
    )


DESCRIPTION = __doc__.splitlines()[0]


def build_parser():
    """glue.py's argument parser (its flags: experiments/config.py GlueConfig)."""
    return config_parser(GlueConfig, DESCRIPTION)


def main(argv=None):
    """Run glue.py on ``argv`` (default: sys.argv[1:]); returns the result record (None for
    --dry-run)."""
    return cli.main(GlueConfig, PRESETS, make_task, DESCRIPTION, argv)


if __name__ == "__main__":
    main()
