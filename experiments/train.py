"""The one training path that glue.py and summarization.py share.

A runner supplies a ``Task`` (how to load the model and data, how to score predictions) and
per-preset hyperparameters; experiments/cli.py turns the command line into a frozen config
(experiments/config.py), and ``run`` here completes it (budget plan, schedule), builds the
method, trains, evaluates and records:

    config.py     every flag as a config field, presets overridden by flags, the resolution
    cli.py        the entry point
    methods.py    the methods (the METHODS registry: AdaLoRA, LoRA at a matched budget, full
                  FT, BitFit, ablations) and how each wraps the model
    trainer.py    the transformers Trainer with per-split evaluation, and its callbacks
    record.py     the result record (schema and atomic writes in results.py; provenance.py:
                  versions, hardware, command)
    validation/   every flag, value and data file checked before anything runs (one-line errors)
    checkpoints.py  --save-steps / --resume: checkpoints of a run, and resuming a killed one
    runlock.py    one process per run: a second one with the same --run-name is refused
    wandb_log.py  W&B logging
    hub.py        models and data sets from a local path or the Hugging Face Hub
    presets.py    every runner's presets (GLUE's rows: tasks.py)
    glue_task.py  the GLUE task: model, tokenizer, encoded data, metrics (summarisation's: in
                  summarization.py)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from experiments.config import RunConfig
from experiments.methods import (
    ADAPTER_METHODS,
    ALLOCATING_METHODS,
    KNOWN_N_MODULES,
    plan_budget,
    variant_tag,
    wrap_model,
)
from experiments.record import RunOutcome, build_record
from experiments.results import result_path, write_result


@dataclass
class Data:
    """What ``Task.load_data`` returns."""

    train: Any  # training examples, ready for the collator
    evals: dict[str, Any]  # split -> examples; the first split is the primary one
    n_train: int
    n_eval: dict[str, int]
    hp: dict = field(default_factory=dict)  # config fields the data decided (recorded)


@dataclass
class Task:
    """What a runner provides. ``kind`` 'glue' or 'summarization'; ``cfg`` below is the run's
    config (experiments/config.py)."""

    kind: str
    name: str
    main_metric: str
    load_model: Callable[[str, RunConfig], Any]  # (model path/name, cfg) -> transformers model
    load_tokenizer: Callable[[str], Any]
    load_data: Callable[[Any, RunConfig, str | None], Data]  # (tokenizer, cfg, data dir) -> Data
    collator: Callable[[Any, Any], Any]  # (tokenizer, model) -> data collator
    compute_metrics: Callable  # (eval_pred, split) -> dict
    trainer_kwargs: Callable[[RunConfig], dict] = lambda cfg: {}  # extra TrainingArguments
    # config fields read off the loaded model (recorded): (model, cfg) -> {field: value}
    model_hp: Callable[[Any, RunConfig], dict] = lambda model, cfg: {}
    seq2seq: bool = False
    after_eval: Callable | None = None  # (result path, trainer, eval sets), after the result file
    # extra Trainer callbacks (those with a ``state()`` are saved in checkpoints and restored)
    callbacks: Callable[[], list] = lambda: []


def default_run_name(task: str, method: str, seed: int) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{task}-{method}-s{seed}-{stamp}-{os.getpid()}"


def config_view(task: Task, cfg: RunConfig, n_train, n_eval) -> dict:
    """The resolved configuration as --dry-run prints it and W&B records it."""
    return {
        "task": task.name,
        "method": cfg.method,
        "model": cfg.model,
        "seed": cfg.seed,
        "preset": cfg.preset,
        "n_train": n_train,
        "n_eval": n_eval,
        **cfg.hyperparameters(),
    }


# --------------------------------------------------------------------------- run
def run(task: Task, cfg: RunConfig, argv: list[str]) -> dict | None:
    """Complete ``cfg`` (budget plan once the model is loaded, schedule once the data is),
    train, evaluate and write the result file. Returns the record (None for --dry-run)."""
    from transformers import set_seed

    from experiments import checkpoints, wandb_log
    from experiments.trainer import resolve_precision, train_log
    from experiments.validation import checks

    t0 = time.time()
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    run_name = cfg.run_name or default_run_name(task.name, cfg.method, cfg.seed)
    out_file = result_path(cfg.output_dir, run_name)
    if out_file.exists():
        raise FileExistsError(
            f"{out_file} exists; results are never overwritten: pick another --run-name."
        )
    set_seed(cfg.seed)
    if cfg.dry_run:
        dry_run(task, cfg, world)
        return None

    # build: model, method, data, schedule. A bad flag, value or file stops the run here, as one
    # line naming its flag, before anything is trained or written (experiments/validation/)
    cfg = replace(  # first: it depends on the machine only (a --precision it cannot run natively)
        cfg, precision_used=resolve_precision(cfg.precision or "fp32", "precision" in cfg.given)
    )
    with checks.held_logs():  # the model's load report only once every check passed
        with checks.blame(cfg, "model", task.kind):
            tokenizer = task.load_tokenizer(cfg.model)
            model = task.load_model(cfg.model, cfg)
        with checks.blame(cfg, "library", task.kind):
            cfg = replace(cfg, **task.model_hp(model, cfg))
            cfg = plan_budget(model, cfg)
            checks.check_model(model, cfg, task.seq2seq)
        with checks.blame(cfg, "data", task.kind):
            data = task.load_data(tokenizer, cfg, cfg.data_dir)
        cfg = replace(cfg, **data.hp).with_schedule(data.n_train, world)
        checks.check_schedule(cfg)
        with checks.blame(cfg, "library", task.kind):
            base, ada = wrap_model(model, cfg)
    # one process per run (experiments/runlock.py), before it clears or resumes checkpoints
    with _claim(cfg, run_name, rank):
        # checkpoints (--save-steps): a run with the same --run-name continues from the latest one
        ck = checkpoints.plan(cfg, run_name)
        net = ada if ada is not None else base
        n_trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
        n_total = sum(p.numel() for p in net.parameters())
        if rank == 0:
            _print_plan(task, cfg, n_trainable, n_total)

        # train, with the final evaluation at T
        sweep = json.loads(cfg.sweep_json) if cfg.sweep_json else None
        wb = _start_wandb(task, cfg, data, run_name, sweep) if rank == 0 else None
        if rank == 0:
            checkpoints.start(ck, cfg)
            if ck.save_steps:
                print(f"[{task.name}] checkpoints: {ck.root} (the same command resumes from them)")
        trainer, recorder, guard, ada_cb = _make_trainer(
            task, cfg, net, ada, tokenizer, model, data, run_name, wb, world, ck
        )
        if ck.resume_from is not None:
            checkpoints.restore_callbacks(ck.resume_from, trainer.callback_handler.callbacks)
            if rank == 0:
                print(f"[{task.name}] resuming from {ck.resume_from}")
        trainer.train(resume_from_checkpoint=str(ck.resume_from) if ck.resume_from else None)
        if not recorder.rows or recorder.rows[-1]["step"] != trainer.state.global_step:
            trainer.evaluate()
        wall = time.time() - t0

        # record
        ranks = ada.final_ranks() if ada is not None else None
        if ada is not None and ada.rankallocator is not None and world > 1:
            _check_masks_agree(ada.rankallocator.mask, world)
        outcome = RunOutcome(
            evals=recorder.rows,
            diverged=guard.diverged,
            train_log=train_log(trainer.state.log_history),
            ranks=ranks,
            budget_curve=[[h["step"], h["budget"]] for h in ada_cb.history] if ada_cb else None,
            params={
                "trainable": n_trainable,
                "final_adapter": ada.adapter_parameters(ranks) if ada is not None else None,
                "total": n_total,
            },
            wall_time_s=wall,
        )
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        record = build_record(task, cfg, data, run_name, model_type, sweep, outcome, argv)
        if rank != 0:
            return record
        path = write_result(record, cfg.output_dir)
        if wb is not None:
            wandb_log.finish(wb, record)
        _print_result(task, record, wall, path)
        if task.after_eval is not None:
            task.after_eval(path, trainer, data.evals)
        checkpoints.finish(ck)
        return record


@contextmanager
def _claim(cfg: RunConfig, run_name: str, rank: int) -> Iterator[None]:
    """Hold the run's lock (rank 0, for all ranks) for the ``with`` block; refused, as a BadInput
    on --run-name, when another process is training the same run or has just written its
    result."""
    from experiments import runlock
    from experiments.validation.checks import check_no_result

    if rank != 0:
        yield
        return
    path = runlock.run_lock_path(cfg.output_dir, run_name)
    fix = "wait for it to end (its result file ends it), or pick another --run-name"
    with runlock.hold(path, "--run-name", run_name, fix):
        check_no_result(cfg.output_dir, run_name)  # landed between the flag checks and the lock
        yield


def _start_wandb(task: Task, cfg: RunConfig, data: Data, run_name: str, sweep):
    """The W&B run (None when --wandb / $WANDB_MODE say disabled)."""
    from experiments import wandb_log

    mode = wandb_log.wandb_mode(cfg.wandb)
    if mode == "disabled":
        return None
    config = config_view(task, cfg, data.n_train, data.n_eval)
    config.update(variant_tag=variant_tag(cfg), sweep=sweep)
    tags = [task.name, cfg.method]
    return wandb_log.start(mode, cfg.wandb_project, run_name, cfg.output_dir, config, tags)


def _make_trainer(task: Task, cfg, net, ada, tokenizer, model, data, run_name, wb, world, ck=None):
    """The Trainer and the callbacks whose state the record reads: (trainer, EvalRecorder,
    DivergenceGuard, AdaLoraCallback or None). ``ck``: checkpoints.Checkpointing (saving)."""
    from adalora import AdaLoraCallback
    from experiments import wandb_log
    from experiments.trainer import (
        DivergenceGuard,
        EvalRecorder,
        SplitEvalSeq2SeqTrainer,
        SplitEvalTrainer,
        training_arguments,
    )

    splits = list(data.evals)
    recorder, guard = EvalRecorder(splits), DivergenceGuard()
    callbacks = [recorder, guard]
    if wb is not None:
        callbacks.append(wandb_log.MainMetricLogger(wb, splits[0], task.main_metric))
    callbacks += task.callbacks()
    ada_cb = None
    if ada is not None and cfg.method in ALLOCATING_METHODS:
        # per-module ranks at every logging step when W&B records them (ranks over time)
        ada_cb = AdaLoraCallback(log_ranks=wb is not None)
        callbacks.append(ada_cb)
    report_to = ["wandb"] if wb is not None else []
    extra = {**task.trainer_kwargs(cfg), **(ck.trainer_kwargs() if ck is not None else {})}
    targs = training_arguments(cfg, run_name, report_to, world, task.seq2seq, extra)
    trainer_cls = SplitEvalSeq2SeqTrainer if task.seq2seq else SplitEvalTrainer
    trainer = trainer_cls(
        model=net,
        args=targs,
        train_dataset=data.train,
        eval_dataset=data.evals,
        data_collator=task.collator(tokenizer, model),
        callbacks=callbacks,
        split_metrics=task.compute_metrics,
    )
    return trainer, recorder, guard, ada_cb


def _print_plan(task: Task, cfg: RunConfig, n_trainable: int, n_total: int) -> None:
    print(
        f"[{task.name}] method={cfg.method} model={cfg.model} seed={cfg.seed} "
        f"T={cfg.total_step} steps, trainable params {n_trainable:,d} / {n_total:,d}"
    )
    if cfg.method in ADAPTER_METHODS:
        print(
            f"[{task.name}] budget: {cfg.n_modules} adapted matrices, final total rank "
            f"b(T)={cfg.budget} (avg {cfg.budget / cfg.n_modules:.2f}); "
            + (f"LoRA r={cfg.lora_r}" if cfg.method == "lora" else f"init_r={cfg.init_r}")
        )


def _print_result(task: Task, record: dict, wall: float, path) -> None:
    m = record["metrics"]
    msg = (
        f"{m['main']}={m['main_best']:.4f} (best) / {m['main_final']:.4f} (final)"
        if m["main_best"] is not None
        else "no evaluation"
    )
    print(
        f"[{task.name}] {record['method']}: dev {msg} on {m['primary_split']}; "
        f"{wall:.0f}s; status {record['status']}; result: {path}"
    )


def dry_run(task: Task, cfg: RunConfig, world: int = 1) -> dict:
    """--dry-run: print the resolved configuration as JSON. Works offline: what needs the model
    (the number of adapted matrices, hence the budget), the tokenizer or the data (n_train, hence
    T) is resolved when they load, else listed under "unresolved" (known models' module counts
    come from KNOWN_N_MODULES)."""
    from experiments.data.files import DataError
    from experiments.validation import checks

    unresolved, tokenizer, model, n_train, n_eval = {}, None, None, None, None
    try:
        tokenizer = task.load_tokenizer(cfg.model)
        model = task.load_model(cfg.model, cfg)
        cfg = replace(cfg, **task.model_hp(model, cfg))
    except checks.BadInput:  # the loaded model refuses a value (e.g. a summary length): not offline
        raise
    except (OSError, RuntimeError, ValueError) as e:
        unresolved["model"] = str(e).splitlines()[0]
    n_known = KNOWN_N_MODULES.get(cfg.model) if cfg.target_modules is None else None
    if cfg.method in ADAPTER_METHODS and model is None and n_known is None:
        unresolved["budget"] = "the number of adapted matrices needs the model"
    elif cfg.method in ADAPTER_METHODS:
        with checks.blame(cfg, "library", task.kind):  # a bad target or rank file: one line
            cfg = plan_budget(model, cfg, n_modules=None if model is not None else n_known)
        checks.check_planned_ranks(cfg)
    if tokenizer is not None:
        try:
            data = task.load_data(tokenizer, cfg, cfg.data_dir)
            n_train, n_eval, cfg = data.n_train, data.n_eval, replace(cfg, **data.hp)
        except (OSError, RuntimeError, DataError) as e:  # a missing or malformed file
            unresolved["data"] = str(e).splitlines()[0]
    if n_train is None and not cfg.max_steps:  # T = epochs x steps per epoch needs n_train
        unresolved["total_step"] = (
            "T = epochs x ceil(n_train / batch) needs the data (or --max-steps)"
        )
    cfg = cfg.with_schedule(n_train, world)
    view = {**config_view(task, cfg, n_train, n_eval), "unresolved": unresolved}
    print(json.dumps(view, indent=2, sort_keys=True, default=str))
    return view


def _check_masks_agree(mask, world: int) -> None:
    """Under DDP every rank must hold the same rank mask (gradients are all-reduced before the
    allocator reads them); a mismatch means a broken setup, so stop loudly."""
    import torch.distributed as dist

    if not dist.is_initialized():
        return
    masks = [None] * world
    dist.all_gather_object(masks, mask.cpu().tolist())
    if any(m != masks[0] for m in masks):
        raise RuntimeError(
            "AdaLoRA rank masks differ between DDP ranks: the allocator saw "
            "different gradients; check that DDP wraps the AdaLoraModel."
        )
