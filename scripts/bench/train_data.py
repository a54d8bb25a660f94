"""bench_train's model and data (scripts/bench_train.py): the GLUE runner's own pieces, the dev
sets in file order, and the Trainer's training batches."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch


def setup(args):
    """(task, tokenizer, base model, config, Data) from the GLUE runner's own pieces: the quick
    preset with this benchmark's ranks and sizes (experiments/config.py GlueConfig), checked
    as glue.py checks them (experiments/validation/checks.py: the flags before anything loads,
    the model and the data right after loading; BadInput naming the flag)."""
    from dataclasses import replace

    from experiments import presets
    from experiments.config import GlueConfig, build_parser, resolve
    from experiments.glue_task import make_task
    from experiments.methods import plan_budget
    from experiments.validation import checks

    argv = ["--task", args.task, "--method", args.method, "--model", args.model]
    argv += ["--init-r", str(args.init_r), "--target-r", str(args.target_r)]
    if args.method == "lora":
        argv += ["--lora-r", str(args.lora_r)]
    for k in ("batch_size", "max_length", "max_train_samples", "max_eval_samples"):
        if getattr(args, k) is not None:
            argv += ["--" + k.replace("_", "-"), str(getattr(args, k))]
    argv += ["--data-dir", args.data_dir, "--output-dir", str(Path(args.out).parent)]
    cfg = resolve(GlueConfig, presets.GLUE, vars(build_parser(GlueConfig, "").parse_args(argv)))
    checks.check_flags(cfg, "glue")
    task = make_task(cfg)
    with checks.held_logs():
        with checks.blame(cfg, "model"):
            tok = task.load_tokenizer(cfg.model)
            model = task.load_model(cfg.model, cfg)
        with checks.blame(cfg, "library"):
            cfg = plan_budget(model, cfg)
            checks.check_model(model, cfg)
        with checks.blame(cfg, "data"):
            data = task.load_data(tok, cfg, args.data_dir)
    cfg = replace(cfg, **data.hp).with_schedule(data.n_train)
    # the run must not reach the end of AdaLoRA's schedule before the benchmark does
    n_steps = args.warmup_steps + args.rounds * args.steps_per_round
    T = max(cfg.total_step, n_steps + 1)
    cfg = replace(cfg, total_step=T, tfinal=min(cfg.tfinal, max(0, T - cfg.tinit - 1)))
    return task, tok, model, cfg, data


def file_order_eval(args, tok, hp, data) -> dict:
    """The dev sets in file order (what the Trainer evaluated before load_data sorted them),
    encoded as make_task's encode does; checked against the runner's sorted sets."""
    from experiments.data.glue import load_glue
    from experiments.tasks import TASKS

    meta, out = TASKS[args.task], {}
    for split, sorted_set in data.evals.items():
        rows = load_glue(args.task, split, args.data_dir, limit=hp.get("max_eval_samples"))
        a = [r["sentence1"] for r in rows]
        b = [r["sentence2"] for r in rows] if rows[0]["sentence2"] is not None else None
        enc = tok(a, b, truncation=True, max_length=hp["max_length"])
        cast = float if meta.is_regression else int
        exs = [
            {**{k: enc[k][i] for k in enc}, "labels": cast(r["label"])} for i, r in enumerate(rows)
        ]
        if sorted(exs, key=lambda e: len(e["input_ids"])) != sorted_set:
            raise RuntimeError(f"{split}: file-order encoding differs from the runner's data")
        out[split] = exs
    return out


def epoch_batches(train, collator, sampler: str, batch_size: int, n_needed: int, seed: int):
    """Whole epochs of the Trainer's training batches (collated), enough to hold n_needed, and
    the collation time per batch."""
    from torch.utils.data import DataLoader, RandomSampler
    from transformers.trainer_pt_utils import LengthGroupedSampler

    g = torch.Generator().manual_seed(seed)
    if sampler == "random":
        smp = RandomSampler(train, generator=g)
    else:
        smp = LengthGroupedSampler(
            batch_size, dataset=train, model_input_name="input_ids", generator=g
        )
    dl = DataLoader(train, batch_size=batch_size, sampler=smp, collate_fn=collator, num_workers=0)
    per_epoch = len(dl)
    epochs = max(1, math.ceil(n_needed / per_epoch))
    batches, t0 = [], time.perf_counter()
    for _ in range(epochs):
        batches.extend(dl)
    collate_ms = (time.perf_counter() - t0) * 1e3 / len(batches)
    return batches, per_epoch, collate_ms


def token_counts(batch) -> tuple[int, int]:
    """(real tokens, padded tokens) of a collated batch."""
    return int(batch["attention_mask"].sum()), int(batch["input_ids"].numel())


def spread(batches: list, n: int) -> list:
    """n batches spread evenly over ``batches`` (in order)."""
    if n >= len(batches):
        return [batches[i % len(batches)] for i in range(n)]
    return [batches[int(i * len(batches) / n)] for i in range(n)]


def token_totals(batches) -> tuple[int, int]:
    """(real tokens, padded tokens) of collated batches."""
    counts = [token_counts(b) for b in batches]
    return sum(r for r, _ in counts), sum(p for _, p in counts)
