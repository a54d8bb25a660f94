"""The runners' command line: flags, presets overridden by flags, and the entry point.

glue.py and summarization.py share every flag here; a runner adds its own (``extra_flags``).
Hyperparameters end up in a flat dict ``hp``: the preset's values, overridden by every flag the
user gave (a flag left out is None here, so the preset decides).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from adalora.config import SCHEDULES, SCORES, VARIANTS
from experiments.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT_DIR = ROOT / "results" / "runs"  # git-ignored; committed runs: results/evidence
PRECISIONS = ("fp32", "bf16", "fp16")
WANDB_MODES = ("online", "offline", "disabled")


def yes_no(text: str) -> bool:
    """argparse type of a boolean flag: yes/no, true/false, 1/0."""
    value = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}
    if text.lower() not in value:
        raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")
    return value[text.lower()]


# flag -> (type, help[, choices]). Defaults come from the preset; None here means "not given".
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
    "rank_pattern_from": (
        str,
        "LoRA only: fixed per-module ranks taken from an AdaLoRA result file's final rank "
        "pattern (rank-0 modules unadapted), each at the scale lora_alpha / lora_r",
    ),
    "lora_alpha": (float, "adapter alpha; AdaLoRA scales by alpha / init_r, LoRA by alpha / r"),
    "lora_dropout": (float, "dropout on the adapter input"),
    "tinit": (int, "AdaLoRA warm-up steps before pruning (default: a fraction of T, see preset)"),
    "tfinal": (int, "AdaLoRA final steps with a fixed mask (default: a fraction of T)"),
    "tinit_frac": (float, "tinit as a fraction of T, when --tinit is not given"),
    "tfinal_frac": (float, "tfinal as a fraction of T, when --tfinal is not given"),
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
        SCORES,
    ),
    "schedule": (str, "budget schedule shape: cubic (the paper's), linear, constant", SCHEDULES),
    "variant": (
        str,
        "AdaLoRA rules: peft (= authors' code, default) or paper (eq. 4 regulariser, "
        "pre-step sensitivity) or authors (frozen-score final phase)",
        VARIANTS,
    ),
    "max_train_samples": (int, "use the first N training examples"),
    "max_eval_samples": (int, "use the first N examples of each eval split"),
    "evals": (int, "number of evaluations over training (the last one at the final step)"),
    "precision": (
        str,
        "fp32, bf16 (autocast on GPU, and on CPUs with native bf16: avx512_bf16 / AMX; "
        "adapters and optimizer state stay fp32) or fp16 (GPU only)",
        PRECISIONS,
    ),
    "group_by_length": (
        yes_no,
        "yes: batch training examples of similar length (less padding; the Trainer's "
        "length-grouped sampler), no: random batches",
    ),
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its errors on one line (``<prog>: error: <message>``, exit status 2), like
    the runners' own checks (experiments/validate.py)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (--help lists the flags)\n")


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
    p = ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(*task_flags, dest="task", default=tasks[0], choices=tasks)
    p.add_argument(
        "--method",
        default="adalora",
        choices=METHODS,
        help="; ".join(m.help for m in METHODS.values()),
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
    p.add_argument("--output-dir", default=str(DEFAULT_OUTPUT_DIR))
    p.add_argument(
        "--run-name", default=None, help="result file name (default: unique, timestamped)"
    )
    p.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps (T)")
    p.add_argument(
        "--wandb",
        default=None,
        choices=WANDB_MODES,
        help="W&B mode (default: online when logged in, else offline)",
    )
    p.add_argument("--wandb-project", default="adalora")
    p.add_argument(
        "--sweep-json", default=None, help="JSON dict of swept hyperparameters (ablate.py)"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the resolved configuration and exit"
    )
    p.add_argument(
        "--save-steps",
        type=int,
        default=None,
        help="write a checkpoint every N optimizer steps into "
        "<output-dir>/checkpoints/<run-name>/ (deleted once the result file is written)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the --run-name run from its latest checkpoint (the same command with "
        "the same --run-name does so by itself while it has no result file)",
    )
    p.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep the checkpoints after the result file is written",
    )
    for name, (typ, help_, *choices) in {**HP_FLAGS, **(extra_flags or {})}.items():
        p.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=typ,
            default=None,
            choices=choices[0] if choices else None,
            help=help_,
        )
    return p


def _split_target_modules(tm):
    """'a,b' -> ['a', 'b']; a plain name -> [name]; 'all-linear' (PEFT's shorthand), a regex
    (or anything else) unchanged."""
    from adalora.targets import is_all_linear

    if is_all_linear(tm):
        return tm
    if isinstance(tm, str) and "," in tm:
        return [s.strip() for s in tm.split(",") if s.strip()]
    if isinstance(tm, str) and not any(c in tm for c in "^$*|()[]\\"):
        return [tm]
    return tm


def resolve_hp(args: argparse.Namespace, preset: dict, extra_flags: dict | None = None) -> dict:
    """Preset values overridden by every flag given (flags left None keep the preset)."""
    hp = dict(preset)
    for name in [*HP_FLAGS, *(extra_flags or {})]:
        v = getattr(args, name)
        if v is not None:
            hp[name] = v
    if args.max_steps is not None:
        hp["max_steps"] = args.max_steps
    if "target_modules" in hp:
        hp["target_modules"] = _split_target_modules(hp["target_modules"])
    if args.orth_reg_weight is None and args.method == "prune_lora":
        hp["orth_reg_weight"] = 0.0  # LoRA has no orthogonality to regularise
    return hp


def main(
    task_factory: Callable,
    presets: dict[str, Callable],
    description: str,
    tasks: list[str],
    argv: list[str] | None = None,
    task_flags: tuple = ("--task",),
    extra_flags: dict | None = None,
    adjust_hp: Callable[[argparse.Namespace, dict], dict] | None = None,
) -> dict | None:
    """Parse flags, resolve the preset, build the task (``task_factory(args) -> train.Task``)
    and run it. ``presets``: name -> (task, method) -> hp. ``task_flags`` and ``extra_flags``
    as in build_parser; ``adjust_hp(args, hp) -> hp`` lets a runner derive hyperparameters from
    the resolved ones (summarization.py: --budget-level -> target_r)."""
    from experiments import train, validate

    explicit_argv = argv is not None
    argv = list(sys.argv[1:] if argv is None else argv)
    runner = getattr(sys.modules.get(task_factory.__module__), "__file__", None)
    parser = build_parser(description, tasks, list(presets), task_flags, extra_flags)
    if runner:
        parser.prog = Path(runner).name  # glue.py: error: ... (also when called in-process)
    args = parser.parse_args(argv)
    prog = sys.argv[0]
    if explicit_argv:  # called in-process (glue.main([...])): record the runner, not the caller
        prog = runner or prog
        prog = os.path.relpath(prog, ROOT) if Path(prog).resolve().is_relative_to(ROOT) else prog
    try:  # every bad flag, value or file: one line, exit status 2, nothing written
        preset = presets[args.preset](args.task, args.method)
        hp = resolve_hp(args, preset, extra_flags)
        hp["model"] = args.model or preset["model"]
        if adjust_hp is not None:
            hp = adjust_hp(args, hp)
        task = task_factory(args)
        validate.check_flags(args, hp, task.kind)
        return train.run(task, args, hp, [prog] + argv)
    except validate.BadInput as e:
        parser.exit(2, f"{parser.prog}: error: {e.line()}\n")
