"""GLUE with AdaLoRA, LoRA, full fine-tuning or BitFit: one run, one result file.

    python experiments/glue.py --task rte --method adalora            # quick preset, MiniLM, CPU
    python experiments/glue.py --task rte --method lora --target-r 2  # LoRA at the matched budget
    python experiments/glue.py --preset paper --task rte --method adalora \
        --model microsoft/deberta-v3-base --dry-run                   # the paper's configuration

Data: --data-dir (or GLUE_DIR) in the official GLUE TSV layout, else the Hub (nyu-mll/glue).
Every flag overrides the preset; --help lists them. Results: results/runs/<run-name>.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from experiments import train  # noqa: E402
from experiments.glue_data import TASKS, load_glue  # noqa: E402
from experiments.metrics import glue_metrics  # noqa: E402

# ---------------------------------------------------------------- presets
# The authors' GLUE scripts for DeBERTaV3-base (spec section 5): batch 32, betas 0.85, all six
# matrix types. (init_r, target_r, alpha, lr, epochs, max_len, gamma, tinit, deltaT, tfinal,
# warmup, cls_dropout, weight_decay); warm-up < 1 is a ratio.
PAPER = {
    "mnli": (3, 1, 16, 5e-4, 7, 256, 0.1, 8000, 100, 50000, 1000, 0.15, 0.0),
    "rte": (2, 1, 32, 1.2e-3, 50, 320, 0.3, 600, 1, 1800, 200, 0.2, 0.01),
    "qnli": (2, 1, 32, 5e-4, 5, 512, 0.1, 2000, 100, 8000, 500, 0.1, 0.01),
    "mrpc": (2, 1, 32, 1e-3, 30, 320, 0.1, 600, 1, 1800, 0.1, 0.0, 0.01),
    "qqp": (2, 1, 16, 8e-4, 5, 320, 0.1, 8000, 100, 25000, 2000, 0.15, 0.01),
    "sst2": (2, 1, 16, 8e-4, 24, 128, 0.1, 6000, 100, 22000, 1000, 0.0, 0.01),
    "cola": (3, 1, 32, 8e-4, 25, 64, 0.1, 800, 10, 3500, 100, 0.1, 0.0),
    "stsb": (2, 1, 32, 2.2e-3, 25, 128, 0.3, 800, 10, 2000, 100, 0.2, 0.1),
}
COMMON = {
    "batch_size": 32,
    "grad_accum": 1,
    "beta1": 0.85,
    "beta2": 0.85,
    "lora_dropout": 0.0,
    "score": "triplet",
    "schedule": "cubic",
    "variant": "peft",
    "target_modules": None,
    "precision": "fp32",
    "max_train_samples": None,
    "max_eval_samples": None,
    "lora_r": None,
    "budget": None,
}


def paper_preset(task: str, method: str) -> dict:
    r0, rT, alpha, lr, ep, ml, gamma, tinit, dt, tfinal, warm, cls, wd = PAPER[task]
    return {
        **COMMON,
        "model": "microsoft/deberta-v3-base",
        "init_r": r0,
        "target_r": rT,
        "lora_alpha": alpha,
        "lr": lr,
        "epochs": ep,
        "max_length": ml,
        "orth_reg_weight": gamma,
        "tinit": tinit,
        "delta_t": dt,
        "tfinal": tfinal,
        "warmup": warm,
        "cls_dropout": cls,
        "weight_decay": wd,
        "evals": int(ep),
        "eval_batch_size": 64,
        "precision": "bf16",
    }


# quick: the packaged all-MiniLM-L6-v2, one pass over (at most 8000) training examples, sized
# to finish in under 10 minutes on 2 CPU cores. Schedule fractions follow the paper's (tinit ~
# 0.15 T, tfinal ~ 0.45 T). Per task: (epochs, max_len, train cap, batch, gamma, alpha, deltaT,
# cls_dropout, weight_decay).
QUICK = {
    "rte": (1, 128, None, 16, 0.3, 32, 1, 0.2, 0.01),
    "mrpc": (1, 128, None, 32, 0.1, 32, 1, 0.0, 0.01),
    "stsb": (1, 128, None, 32, 0.3, 32, 10, 0.2, 0.1),
    "cola": (1, 64, None, 32, 0.1, 32, 10, 0.1, 0.0),
    "sst2": (1, 64, 8000, 32, 0.1, 16, 10, 0.0, 0.01),
    "qnli": (1, 128, 8000, 32, 0.1, 32, 10, 0.1, 0.01),
    "qqp": (1, 128, 8000, 32, 0.1, 16, 10, 0.15, 0.01),
    "mnli": (1, 128, 8000, 32, 0.1, 16, 10, 0.15, 0.0),
}
QUICK_LR = {
    "adalora": 1e-3,
    "lora": 1e-3,
    "svd_lora": 1e-3,
    "prune_lora": 1e-3,
    "full": 5e-5,
    "bitfit": 1e-3,
}


def quick_preset(task: str, method: str) -> dict:
    ep, ml, cap, bs, gamma, alpha, dt, cls, wd = QUICK[task]
    return {
        **COMMON,
        "model": "minilm",
        "batch_size": bs,
        "init_r": None,
        "target_r": 8,
        "lora_alpha": alpha,
        "lr": QUICK_LR[method],
        "epochs": ep,
        "max_length": ml,
        "orth_reg_weight": gamma,
        "tinit": None,
        "tinit_frac": 0.15,
        "tfinal": None,
        "tfinal_frac": 0.45,
        "delta_t": dt,
        "warmup": 0.06,
        "cls_dropout": cls,
        "weight_decay": wd,
        "evals": 2,
        "eval_batch_size": 128,
        "max_train_samples": cap,
    }


PRESETS = {"quick": quick_preset, "paper": paper_preset}


# ---------------------------------------------------------------- task
def make_task(args) -> train.Task:
    meta = TASKS[args.task]

    def load_model(name, hp):
        from transformers import AutoConfig, AutoModelForSequenceClassification

        kw = {"num_labels": meta.num_labels}
        cfg = train.load_pretrained(AutoConfig, name, **kw)
        if hp.get("cls_dropout") is not None:
            for attr in ("classifier_dropout", "cls_dropout", "pooler_dropout"):
                setattr(cfg, attr, hp["cls_dropout"])
        return train.load_pretrained(AutoModelForSequenceClassification, name, config=cfg)

    def load_tokenizer(name):
        from transformers import AutoTokenizer

        return train.load_pretrained(AutoTokenizer, name)

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
        return (
            encode(tok, tr, ml),
            {s: encode(tok, v, ml) for s, v in evs.items()},
            len(tr),
            {s: len(v) for s, v in evs.items()},
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

    return train.Task(
        kind="glue",
        name=args.task,
        main_metric=meta.main_metric,
        load_model=load_model,
        load_tokenizer=load_tokenizer,
        load_data=load_data,
        collator=collator,
        compute_metrics=compute_metrics,
    )


def main(argv=None):
    tasks = ["sst2"] + [t for t in TASKS if t != "sst2"]  # the first is the default task
    return train.main(make_task, PRESETS, __doc__.splitlines()[0], tasks, argv)


if __name__ == "__main__":
    main()
