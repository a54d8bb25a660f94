"""The transformers Trainer as the runners use it: one evaluation per split, the callbacks that
record evaluations and stop a diverged run, and the TrainingArguments of a run's config."""

from __future__ import annotations

import dataclasses
import functools
import math
import tempfile
from collections.abc import Callable

import transformers
from transformers import PrinterCallback, ProgressCallback, TrainerCallback
from transformers.integrations import get_reporting_integration_callbacks
from transformers.trainer_callback import ExportableState

from experiments.provenance import cpu_has_native_bf16


class SplitEvalMixin:
    """evaluate() runs once per evaluation split (a dict of data sets), with metric keys
    ``eval_<split>_<metric>`` and ``split_metrics(eval_pred, split=name)`` as compute_metrics,
    so that a task scores each split on its own (MNLI has two). Our callbacks run before the
    reporting ones (W&B, progress bar), so that what they add to the logs is reported."""

    def __init__(self, *args, split_metrics: Callable, **kwargs):
        super().__init__(*args, compute_metrics=None, **kwargs)
        self.split_metrics = split_metrics
        reporters = (
            ProgressCallback,
            PrinterCallback,
            *get_reporting_integration_callbacks(self.args.report_to),
        )
        # a stable sort: the default flow callback and ours first, in order; reporters last
        self.callback_handler.callbacks.sort(key=lambda cb: isinstance(cb, reporters))

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval", **kwargs):
        datasets = self.eval_dataset if eval_dataset is None else eval_dataset
        if not isinstance(datasets, dict):
            return super().evaluate(datasets, ignore_keys, metric_key_prefix, **kwargs)
        metrics = {}
        for split, ds in datasets.items():
            self.compute_metrics = functools.partial(self.split_metrics, split=split)
            try:
                prefix = f"{metric_key_prefix}_{split}"
                metrics.update(super().evaluate(ds, ignore_keys, prefix, **kwargs))
            finally:
                self.compute_metrics = None
        return metrics

    def _save(self, output_dir=None, state_dict=None):
        """A checkpoint's model file (--save-steps, experiments/checkpoints.py) holds what
        training changes: the trainable parameters and every buffer (AdaLoRA's allocator state:
        importance EMAs, rank mask, last step), one copy of each tied tensor; the frozen base
        weights come back from --model on resume (the Trainer loads with strict=False)."""
        import os

        import safetensors.torch
        import torch

        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        if state_dict is None:
            state_dict = training_state_dict(self.model)
        path = os.path.join(output_dir, "model.safetensors")
        safetensors.torch.save_file(state_dict, path, metadata={"format": "pt"})
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _issue_warnings_after_load(self, load_result):
        """Frozen base weights are missing from our checkpoints by design: warn about the rest."""
        expected = set(training_state_dict(self.model))
        missing = [k for k in load_result.missing_keys if k in expected]
        if missing or load_result.unexpected_keys:
            import warnings

            warnings.warn(
                f"checkpoint lacks {missing} / has unexpected {load_result.unexpected_keys}",
                stacklevel=2,
            )


def training_state_dict(model) -> dict:
    """The trainable parameters and the buffers of ``model`` (its state dict without the frozen
    parameters), each tensor once (tied weights under their first name), detached."""
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    params = {id(p) for p in model.parameters()}
    out, seen = {}, set()
    for name, t in model.state_dict(keep_vars=True).items():
        if (id(t) in params and id(t) not in trainable) or id(t) in seen:
            continue
        seen.add(id(t))
        out[name] = t.detach().contiguous()
    return out


class SplitEvalTrainer(SplitEvalMixin, transformers.Trainer):
    pass


class SplitEvalSeq2SeqTrainer(SplitEvalMixin, transformers.Seq2SeqTrainer):
    pass


class EvalRecorder(TrainerCallback, ExportableState):
    """Every evaluation of every split: ``rows`` [{"step", "epoch", "split", <metric>: ...}].
    The rows are saved in checkpoints (``state()``) and restored on resume."""

    def __init__(self, splits):
        self.splits = list(splits)
        self.rows: list[dict] = []

    def state(self) -> dict:
        return {"args": {"splits": self.splits}, "attributes": {"rows": self.rows}}

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        for split in self.splits:
            pre = f"eval_{split}_"
            vals = {k[len(pre) :]: v for k, v in (metrics or {}).items() if k.startswith(pre)}
            if vals:
                self.rows.append(
                    {"step": state.global_step, "epoch": state.epoch, "split": split, **vals}
                )


class DivergenceGuard(TrainerCallback, ExportableState):
    """Stop the run, and flag it, when the training loss becomes nan or inf."""

    def __init__(self):
        self.diverged = False

    def state(self) -> dict:
        return {"args": {}, "attributes": {"diverged": self.diverged}}

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.diverged = True
            control.should_training_stop = True


def training_arguments(
    cfg,
    run_name: str,
    report_to: list[str],
    world: int,
    seq2seq: bool,
    extra: dict,
):
    """TrainingArguments for the run's config ``cfg`` (experiments/config.py, schedule
    resolved): T steps, linear decay after warm-up, ``cfg.evals`` evaluations, nothing saved
    (the result file is the output) unless ``extra`` asks for checkpoints (output_dir,
    save_strategy, ...: experiments/checkpoints.py)."""
    import torch

    extra = dict(extra)
    output_dir = extra.pop("output_dir", None) or tempfile.mkdtemp(prefix="adalora-trainer-")
    save_strategy = extra.pop("save_strategy", "no")
    logging_steps = max(1, min(50, cfg.total_step // 20))
    if extra.get("save_steps"):  # checkpoints on logging steps: the Trainer's running loss
        # restarts when a run resumes, so a resumed run then logs the losses of an uninterrupted one
        extra["save_steps"] = -(-extra["save_steps"] // logging_steps) * logging_steps
    n_evals = max(1, cfg.evals or 1)
    precision = cfg.precision_used or resolve_precision(cfg.precision or "fp32")
    on_gpu = torch.cuda.is_available()
    fields = {f.name for f in dataclasses.fields(transformers.TrainingArguments)}
    if "train_sampling_strategy" in fields:  # transformers >= 5.x renamed group_by_length
        grouping = {
            "train_sampling_strategy": "group_by_length" if cfg.group_by_length else "random"
        }
    else:
        grouping = {"group_by_length": bool(cfg.group_by_length)}
    cls = transformers.Seq2SeqTrainingArguments if seq2seq else transformers.TrainingArguments
    return cls(
        output_dir=output_dir,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size or cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum or 1,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        max_steps=cfg.total_step,
        warmup_steps=cfg.warmup_steps,
        lr_scheduler_type="linear",
        eval_strategy="steps",
        # ceil, not floor: with floor a T not divisible by n gave n + 1 evaluations, the last
        # two a few steps apart (the final one at T); with ceil the n-th is the one at T
        # whenever T > (n - 1)^2 (every real run; a tinier T may get fewer than n)
        eval_steps=max(1, -(-cfg.total_step // n_evals)),
        logging_steps=logging_steps,
        save_strategy=save_strategy,
        report_to=report_to,
        run_name=run_name,
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=not on_gpu,
        bf16=precision == "bf16",  # autocast: weights, adapters and optimizer state stay fp32
        fp16=precision == "fp16",
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=0,
        average_tokens_across_devices=False,
        disable_tqdm=False,
        ddp_backend="gloo" if (world > 1 and not on_gpu) else None,
        ddp_find_unused_parameters=False,
        **grouping,
        **extra,
    )


def resolve_precision(precision: str, given: bool = False) -> str:
    """The precision a run trains in: ``precision`` where this machine runs it natively.

    bf16 without native support (a CPU without avx512_bf16 / AMX, a GPU before Ampere) would be
    emulated: on such a CPU a step takes 14-18x as long as in fp32
    (results/bench/train_cpu_mrpc_lora_no_native_bf16.json). ``given`` (the user's
    --precision): refused, since training in another precision than the one asked for would
    make a run that is not the one its command describes; a preset's bf16 (``given`` False; the
    paper presets, written for recent GPUs) trains in fp32 and says so, recorded as
    precision_used. fp16 needs CUDA. Raises BadInput."""
    import sys

    import torch

    from experiments.validation.base import BadInput

    on_gpu = torch.cuda.is_available()
    if precision == "fp32" or (precision == "fp16" and on_gpu):
        return precision
    if precision == "fp16":
        raise BadInput("--precision", "fp16", "needs a CUDA GPU", "on CPU use bf16 or fp32")
    if on_gpu:
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        where = f"this GPU ({torch.cuda.get_device_name()}) has no native bf16 (compute 8.0+)"
        speed = "slower than fp32"
    else:
        native = cpu_has_native_bf16()
        where = "this CPU has no native bf16 (avx512_bf16 / AMX)"
        speed = "14-18x slower than fp32 (results/bench/train_cpu_mrpc_lora_no_native_bf16.json)"
    if native:
        return "bf16"
    if given:
        raise BadInput(
            "--precision",
            "bf16",
            f"{where}, so bf16 autocast would be emulated, {speed}",
            "pass --precision fp32 (a different run: results in fp32 are not comparable seed for "
            "seed with bf16 ones), or run it where bf16 is native (a CPU with avx512_bf16 / AMX, "
            "or a GPU of compute capability 8.0 or newer)",
        )
    print(
        f"note: {where}: training in fp32 instead of the preset's bf16 (recorded as "
        "precision_used).",
        file=sys.stderr,
    )
    return "fp32"


def train_log(log_history: list[dict]) -> list[dict]:
    """The training curve (every logging step): shows when a run that ends at chance stopped
    learning."""
    return [
        {k: h[k] for k in ("step", "loss", "grad_norm", "learning_rate") if k in h}
        for h in log_history
        if "loss" in h and "step" in h
    ]
