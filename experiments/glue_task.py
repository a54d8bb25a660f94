"""The GLUE task as the trainer runs it (experiments/train.py ``Task``): the model with its
classification head, the tokenizer, the encoded data, the collator and the metrics. glue.py
runs it; scripts/bench_train.py times the same one."""

from __future__ import annotations

import numpy as np

from experiments.config import GlueConfig
from experiments.data.glue import load_glue
from experiments.hub import load_pretrained
from experiments.metrics import glue_metrics
from experiments.tasks import TASKS
from experiments.train import Data, Task


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
