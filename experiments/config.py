"""A run's configuration: every flag of glue.py and summarization.py is a field of one frozen
dataclass (``GlueConfig``, ``SummConfig``; what they share: ``RunConfig``), its help text in the
field's metadata. ``build_parser`` makes the command line from the fields, ``resolve`` turns the
parsed flags and the preset into the config; the rest of the code reads its attributes:

    flags = vars(build_parser(GlueConfig, description).parse_args(argv))
    cfg = resolve(GlueConfig, presets.GLUE, flags)     # a frozen GlueConfig
    cfg.lr, cfg.tinit_frac, cfg.method, ...

A field is one of three kinds (metadata "kind"):

    run      how and where to run (task, method, seed, paths, W&B, checkpoints): a flag with a
             default; not a hyperparameter.
    hp       a hyperparameter: the preset's value unless its flag is given, and a given flag
             always wins. ``hyperparameters()`` is what result files record (fields marked
             ``record="if_set"`` only when set, as result files always had them).
    derived  computed from the others, the model and the data by the steps of experiments/train.py
             (``with_budget``: n_modules and the ranks; ``with_schedule``: T, tinit / tfinal
             from their fractions, warm-up steps; the task's model_hp and Data.hp). No flag. Each
             step returns a new config (``dataclasses.replace``): a config never holds a key
             that its class does not declare.

Beyond "the flag wins" (``resolve``):

- ``--target-r`` or ``--budget`` without ``--init-r``: the preset's init_r (which goes with the
  preset's own target) gives way, for the methods that read it (AdaLoRA, Prune LoRA), to the
  paper's rule init_r = ceil(1.5 x target_r) (its text's b(0) = 1.5 b(T); ``with_budget``).
- a preset value ``NoValue`` (one its source does not give, e.g. the paper preset's LR of
  full fine-tuning) stops the run unless its flag is given.
- ``--tinit-frac F`` (``--tfinal-frac``) replaces the preset's tinit (tfinal) whether the preset
  gives it in steps or as a fraction: tinit = round(F x T) once T is known. Giving --tinit and
  --tinit-frac together is an error, as are --max-steps with --epochs and --budget with
  --target-r (one of the two would be dropped; experiments/validation/checks.py).
- prune_lora without --orth-reg-weight: 0 (LoRA has no orthogonality to regularise).
- --target-modules 'a,b' -> ('a', 'b'); 'all-linear' and a regex stay one string.
- a runner's own step (``own_step``; SummConfig: --budget-level -> target_r).
"""

from __future__ import annotations

import argparse
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from adalora.config import SCHEDULES, SCORES, VARIANTS
from experiments.data.summarization import DATASETS, SPLITS
from experiments.methods import ADAPTER_METHODS, METHODS
from experiments.summ_models import BUDGET_LEVELS
from experiments.tasks import TASKS as GLUE_TASKS


@dataclass(frozen=True)
class NoValue:
    """A preset's hyperparameter that the preset's source does not give (experiments/presets.py):
    ``resolve`` stops with ``why`` unless the flag is given."""

    why: str


ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT_DIR = ROOT / "results" / "runs"  # git-ignored; committed runs: results/evidence
PRESET_NAMES = ("quick", "paper")
GLUE_TASK_CHOICES = ("sst2", *(t for t in GLUE_TASKS if t != "sst2"))  # glue.py's default first
PRECISIONS = ("fp32", "bf16", "fp16")
WANDB_MODES = ("online", "offline", "disabled")


def yes_no(text: str) -> bool:
    """The flag type of a boolean hyperparameter: yes/no, true/false, 1/0."""
    value = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}
    if text.lower() not in value:
        raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")
    return value[text.lower()]


def split_target_modules(tm):
    """'a,b' -> ('a', 'b'); a plain name -> (name,); 'all-linear' (PEFT's shorthand), a regex
    (or anything else) unchanged."""
    from adalora.targets import is_all_linear

    if is_all_linear(tm):
        return tm
    if isinstance(tm, str) and "," in tm:
        return tuple(s.strip() for s in tm.split(",") if s.strip())
    if isinstance(tm, str) and not any(c in tm for c in "^$*|()[]\\"):
        return (tm,)
    return tm


# --------------------------------------------------------------------------- field kinds
def run(default, help: str, **meta):
    """A run setting: a flag with ``default``. ``meta``: flags (option strings), choices,
    action ("store_true"), type; from_preset=True: a preset may set it (the flag, else the
    preset's value, else ``default``)."""
    return field(default=default, metadata={"kind": "run", "help": help, **meta})


def hp(help: str, record: str = "always", **meta):
    """A hyperparameter: the preset's value unless the flag is given (None = not given).
    ``record="if_set"``: recorded only when not None; ``flags=()``: no flag."""
    return field(default=None, metadata={"kind": "hp", "help": help, "record": record, **meta})


def derived(help: str):
    """Computed by a resolution step; recorded when set; no flag."""
    return field(default=None, metadata={"kind": "derived", "help": help})


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """What glue.py and summarization.py share (module doc). Flags in field order."""

    # ------------------------------------------------------------------ run
    task: str = run(None, "the task (its runner's own list)")
    method: str = run(
        "adalora", "; ".join(m.help for m in METHODS.values()), choices=tuple(METHODS)
    )
    model: str | None = hp(
        "model name on the Hub or local path; 'minilm' = the packaged all-MiniLM-L6-v2 "
        "(default for --preset quick)"
    )
    data_dir: str | None = run(None, "local data folder (else env var, else the Hub)")
    seed: int = run(
        42,
        "random seed (model init, data order, dropout); unset: the preset's where it has one "
        "(glue.py --preset paper: 6, the authors' scripts'), else 42",
        from_preset=True,
    )
    preset: str = run(
        "quick",
        "quick: small, CPU-friendly; paper: the authors' per-task settings",
        choices=PRESET_NAMES,
    )
    output_dir: str = run(str(DEFAULT_OUTPUT_DIR), "folder of the result file")
    run_name: str | None = run(None, "result file name (default: unique, timestamped)")
    max_steps: int | None = hp("stop after N optimizer steps (T)", record="if_set")
    wandb: str | None = run(
        None, "W&B mode (default: online when logged in, else offline)", choices=WANDB_MODES
    )
    wandb_project: str = run("adalora", "W&B project")
    sweep_json: str | None = run(None, "JSON dict of swept hyperparameters (ablate.py)")
    dry_run: bool = run(False, "print the resolved configuration and exit", action="store_true")
    save_steps: int | None = run(
        None,
        "write a checkpoint every N optimizer steps into <output-dir>/checkpoints/<run-name>/ "
        "(deleted once the result file is written)",
    )
    resume: bool = run(
        False,
        "continue the --run-name run from its latest checkpoint (the same command with the "
        "same --run-name does so by itself while it has no result file)",
        action="store_true",
    )
    keep_checkpoints: bool = run(
        False, "keep the checkpoints after the result file is written", action="store_true"
    )

    # ------------------------------------------------------------------ hyperparameters
    lr: float | None = hp("peak learning rate")
    epochs: float | None = hp("training epochs")
    batch_size: int | None = hp("per-device train batch size")
    eval_batch_size: int | None = hp("per-device eval batch size")
    grad_accum: int | None = hp("gradient accumulation steps")
    max_length: int | None = hp("max source tokens (truncation)")
    init_r: int | None = hp(
        "AdaLoRA initial rank per matrix (default: ceil(1.5 x target_r), the paper's ratio)"
    )
    target_r: float | None = hp(
        "AdaLoRA final average rank per matrix; b(T) = target_r x n_modules"
    )
    budget: int | None = hp(
        "final total rank b(T) over all adapted matrices, as the paper states budgets "
        "(instead of --target-r: target_r = budget / n_modules)"
    )
    lora_r: int | None = hp("LoRA rank (default: matched to AdaLoRA's final parameter count)")
    rank_pattern_from: str | None = hp(
        "LoRA only: fixed per-module ranks taken from an AdaLoRA result file's final rank "
        "pattern (rank-0 modules unadapted), each at the scale lora_alpha / lora_r",
        record="if_set",
    )
    lora_alpha: float | None = hp(
        "adapter alpha; AdaLoRA scales by alpha / init_r, LoRA by alpha / r"
    )
    lora_dropout: float | None = hp("dropout on the adapter input")
    tinit: int | None = hp(
        "AdaLoRA warm-up steps before pruning (default: the preset's, in steps or a fraction of T)"
    )
    tfinal: int | None = hp("AdaLoRA final steps with a fixed mask (default: as --tinit)")
    tinit_frac: float | None = hp(
        "tinit as a fraction of T (replaces the preset's tinit; not with --tinit)",
        record="if_set",
    )
    tfinal_frac: float | None = hp(
        "tfinal as a fraction of T (replaces the preset's tfinal; not with --tfinal)",
        record="if_set",
    )
    delta_t: int | None = hp("steps between two re-allocations")
    beta1: float | None = hp("EMA coefficient of the sensitivity")
    beta2: float | None = hp("EMA coefficient of the uncertainty")
    orth_reg_weight: float | None = hp(
        "gamma, weight of the orthogonal regulariser (0 = the gamma=0 ablation)"
    )
    target_modules: str | tuple[str, ...] | None = hp(
        "comma-separated module-name suffixes or a regex (default: all six matrix types of "
        "every layer)",
        type=str,
    )
    warmup: float | None = hp("learning-rate warm-up: steps if >= 1, else a fraction of T")
    weight_decay: float | None = hp("AdamW weight decay")
    cls_dropout: float | None = hp("dropout before the classification head")
    score: str | None = hp(
        "importance score: triplet (AdaLoRA), sensitivity (s = I), magnitude (|lambda|)",
        choices=SCORES,
    )
    schedule: str | None = hp(
        "budget schedule shape: cubic (the paper's), linear, constant", choices=SCHEDULES
    )
    variant: str | None = hp(
        "AdaLoRA rules: peft (= authors' code, default) or paper (eq. 4 regulariser, "
        "pre-step sensitivity) or authors (frozen-score final phase)",
        choices=VARIANTS,
    )
    max_train_samples: int | None = hp("use the first N training examples")
    max_eval_samples: int | None = hp("use the first N examples of each eval split")
    evals: int | None = hp("number of evaluations over training (the last one at the final step)")
    precision: str | None = hp(
        "fp32, bf16 (autocast on GPU, and on CPUs with native bf16: avx512_bf16 / AMX; "
        "adapters and optimizer state stay fp32; refused on other CPUs, where a preset's bf16 "
        "trains in fp32, recorded as precision_used) or fp16 (GPU only)",
        choices=PRECISIONS,
    )
    group_by_length: bool | None = hp(
        "yes: batch training examples of similar length (less padding; the Trainer's "
        "length-grouped sampler), no: random batches"
    )

    # ------------------------------------------------------------------ derived
    n_modules: int | None = derived("adapted matrices (with_budget)")
    lora_rank_pattern: dict | None = derived("--rank-pattern-from's ranks (with_budget)")
    total_step: int | None = derived("T, optimizer steps (with_schedule)")
    steps_per_epoch: int | None = derived("optimizer steps per epoch (with_schedule)")
    warmup_steps: int | None = derived("learning-rate warm-up in steps (with_schedule)")
    precision_used: str | None = derived("the precision training runs in (train.run)")

    # the flags given on the command line (value not None / False): the checks name a value
    # as the user's or the preset's
    given: frozenset = field(default=frozenset(), metadata={"kind": "meta"})

    def hyperparameters(self) -> dict:
        """The flat dict of hyperparameters (and "model") as result files, --dry-run and W&B
        record them: hp fields (``if_set`` ones when set) and derived fields when set."""
        out = {}
        for f in fields(self):
            kind = f.metadata.get("kind")
            if kind not in ("hp", "derived"):
                continue
            v = getattr(self, f.name)
            if v is None and (kind == "derived" or f.metadata.get("record") == "if_set"):
                continue
            out[f.name] = list(v) if isinstance(v, tuple) else dict(v) if isinstance(v, dict) else v
        return out

    # ------------------------------------------------------------------ resolution steps
    def own_step(self) -> RunConfig:
        """A runner's own step at the end of ``resolve`` (none here)."""
        return self

    def with_budget(self, n_modules: int, rank_pattern: dict | None = None) -> RunConfig:
        """Ranks matched to the budget over ``n_modules`` adapted matrices (adapter methods):
        b(T) = round(target_r x n) (target_r = budget / n when --budget is given), init_r =
        ceil(1.5 x target_r) unless given, LoRA rank round(b(T) / n) unless given, i.e. the
        final parameter count of AdaLoRA (r (in + out) vs r (in + out + 1)). ``rank_pattern``
        (LoRA with --rank-pattern-from): its ranks, b(T) their sum."""
        if self.method not in ADAPTER_METHODS:
            return self
        n = n_modules
        target_r = self.budget / n if self.budget is not None else self.target_r
        budget = int(round(target_r * n))
        init_r = self.init_r if self.init_r is not None else max(1, math.ceil(1.5 * target_r))
        lora_r = self.lora_r
        if self.method == "lora" and lora_r is None:
            lora_r = max(1, int(round(budget / n)))
        extra = {}
        if self.method == "lora" and rank_pattern is not None:
            extra = {"lora_rank_pattern": dict(rank_pattern), "budget": sum(rank_pattern.values())}
        return replace(
            self,
            **{"target_r": target_r, "budget": budget, "init_r": init_r, "lora_r": lora_r,
               "n_modules": n, **extra},
        )  # fmt: skip

    def with_schedule(self, n_train: int | None, world: int = 1) -> RunConfig:
        """T = --max-steps, else ceil(epochs x ceil(n_train / (batch x grad_accum x world)));
        then tinit / tfinal = round(fraction x T) where no step count is set, and the warm-up in
        steps. ``n_train`` None (a dry run without the data, no --max-steps): T is unknown, only
        a warm-up given in steps resolves."""
        w = self.warmup or 0
        if n_train is None and not self.max_steps:
            return replace(self, warmup_steps=int(w)) if w >= 1 else self
        per_step = self.batch_size * self.grad_accum * world
        steps_per_epoch = max(1, math.ceil((n_train or 0) / per_step))
        T = self.max_steps or max(1, math.ceil(self.epochs * steps_per_epoch))
        tinit = self.tinit if self.tinit is not None else int(round(self.tinit_frac * T))
        tfinal = self.tfinal if self.tfinal is not None else int(round(self.tfinal_frac * T))
        return replace(
            self,
            total_step=T,
            steps_per_epoch=steps_per_epoch,
            tinit=tinit,
            tfinal=tfinal,
            warmup_steps=int(w) if w >= 1 else int(round(w * T)),
        )


@dataclass(frozen=True, kw_only=True)
class GlueConfig(RunConfig):
    """experiments/glue.py's configuration."""

    task: str = run("sst2", "GLUE task", choices=GLUE_TASK_CHOICES)


@dataclass(frozen=True, kw_only=True)
class SummConfig(RunConfig):
    """experiments/summarization.py's configuration (its module doc explains the flags)."""

    task: str = run(
        "xsum", "summarisation data set", flags=("--dataset", "--task"), choices=tuple(DATASETS)
    )
    cls_dropout: float | None = hp("(no classification head: unused)", flags=())
    max_target_length: int | None = hp("max summary tokens for training (labels are truncated)")
    num_beams: int | None = hp("beam size for generation")
    length_penalty: float | None = hp(
        "generation length penalty (unset: the model's generation config)"
    )
    no_repeat_ngram_size: int | None = hp(
        "block repeated n-grams in generation (unset: the model's generation config; 0 = off)"
    )
    gen_max_length: int | None = hp(
        "generation max_length in tokens (unset: --max-target-length, as the authors)"
    )
    source_prefix: str | None = hp(
        "text put before every document (unset: 'summarize: ' for T5, else '')"
    )
    train_split: str | None = hp("split to train on (unset: see the module doc)", choices=SPLITS)
    eval_split: str | None = hp("split to evaluate on (unset: see the module doc)", choices=SPLITS)
    budget_level: float | str | None = hp(
        "Table 3 budget: share of the model's parameters in %%; sets the final average rank "
        "(derived, see the module doc)",
        type=str,
        choices=BUDGET_LEVELS,
    )
    budget_level_note: str | None = derived("how --budget-level became target_r")
    generation: dict | None = derived("what generation uses (the task's model_hp)")
    data_note: str | None = derived("where the training and evaluation examples come from")

    def own_step(self) -> SummConfig:
        """--budget-level: the preset's ranks replaced by the derived final average rank
        (summarization.py's module doc): target_r, and init_r = ceil(1.5 x target_r) unless
        --init-r is given. Not with --target-r / --budget, which set the same rank."""
        if self.budget_level is None:
            return self
        from experiments.summ_models import derive_level_rank
        from experiments.validation.base import BadInput

        if "target_r" in self.given or "budget" in self.given:
            raise BadInput(
                "--budget-level",
                self.budget_level,
                "sets the final average rank, as --target-r / --budget do",
                "give it or --target-r / --budget, not both",
            )
        level = float(self.budget_level)
        try:
            d = derive_level_rank(level, self.model, self.target_modules)
        except (OSError, RuntimeError, ValueError) as e:
            raise BadInput(
                "--budget-level",
                self.budget_level,
                f"needs the model's config ({str(e).splitlines()[0]})",
                "pass --model PATH to a local model folder",
            ) from None
        target_r = round(d["target_r"], 4)
        note = (
            f"derived: avg final rank {target_r} = {level}% x {d['n_params']:,d} parameters / "
            f"{d['params_per_rank']:,d} (sum of in + out + 1 over {d['n_modules']} adapted "
            "matrices)"
        )
        return replace(
            self,
            budget_level=level,
            target_r=target_r,
            init_r=self.init_r if "init_r" in self.given else None,  # None: ceil(1.5 x target_r)
            budget_level_note=note,
        )


# --------------------------------------------------------------------------- parse and resolve
class ArgumentParser(argparse.ArgumentParser):
    """argparse with its errors on one line (``<prog>: error: <message>``, exit status 2), like
    the runners' own checks (experiments/validation/checks.py)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (--help lists the flags)\n")


def flag_fields(cls: type[RunConfig]) -> list:
    """The fields of ``cls`` that are flags, in --help order."""
    return [
        f
        for f in fields(cls)
        if f.metadata.get("kind") in ("run", "hp") and f.metadata.get("flags", None) != ()
    ]


def option_strings(f) -> tuple[str, ...]:
    return f.metadata.get("flags") or ("--" + f.name.replace("_", "-"),)


def _flag_type(f, hint) -> Callable:
    if "type" in f.metadata:
        return f.metadata["type"]
    types = [t for t in (typing.get_args(hint) or (hint,)) if t is not type(None)]
    return yes_no if types[0] is bool else types[0]


def build_parser(cls: type[RunConfig], description: str) -> ArgumentParser:
    """The command line of ``cls``: one flag per run / hp field (option strings ``--name``
    with dashes, or metadata "flags"). An hp flag left out parses to None: the preset decides."""
    p = ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    hints = typing.get_type_hints(cls)
    for f in flag_fields(cls):
        m = f.metadata
        if m.get("action"):
            p.add_argument(*option_strings(f), dest=f.name, action=m["action"], help=m["help"])
            continue
        p.add_argument(
            *option_strings(f),
            dest=f.name,
            type=_flag_type(f, hints[f.name]),
            default=None if m.get("from_preset") else f.default,
            choices=m.get("choices"),
            help=m["help"],
        )
    return p


def resolve(
    cls: type[RunConfig],
    presets: dict[str, Callable[[str, str], dict]],
    flags: dict,
) -> RunConfig:
    """The config of parsed ``flags`` (``vars`` of build_parser(cls)'s namespace): the preset's
    hyperparameters (``presets[name](task, method) -> {field: value}``), every flag given
    overriding them, and the rules of the module doc. Raises validation.base.BadInput for a bad
    combination it sees (the runners print it as one line); TypeError when a preset sets a key
    that is no hyperparameter of ``cls`` or leaves one out."""
    from experiments.validation.base import BadInput, flag

    hps = {f.name: f for f in fields(cls) if f.metadata.get("kind") == "hp"}
    from_preset = {f.name: f for f in fields(cls) if f.metadata.get("from_preset")}
    preset = presets[flags["preset"]](flags["task"], flags["method"])
    unknown = sorted(set(preset) - set(hps) - set(from_preset))
    missing = sorted(
        k for k, f in hps.items() if f.metadata["record"] == "always" and k not in preset
    )
    if unknown or missing:
        raise TypeError(
            f"the {flags['preset']} preset of {cls.__name__}: sets {unknown}, lacks {missing} "
            "(its keys are the config's hyperparameter fields and the run settings it may set)"
        )
    given = frozenset(k for k, v in flags.items() if v is not None and v is not False)
    values = dict(preset)
    for k, v in flags.items():
        if v is not None or (k not in hps and k not in from_preset):  # a run setting always
            values[k] = v
    for k, f in from_preset.items():
        values.setdefault(k, f.default)
    for k in ("tinit", "tfinal"):  # a given fraction replaces the preset's step count
        if k + "_frac" in given and k not in given:
            values[k] = None
    reads_init_r = "init_r" in METHODS[flags["method"]].reads
    if reads_init_r and given & {"target_r", "budget"} and "init_r" not in given:
        values["init_r"] = None  # the preset's goes with its own target: ceil(1.5 x target_r)
    for k, v in values.items():
        if isinstance(v, NoValue):
            raise BadInput(flag(k), None, v.why, f"pass {flag(k)}")
    if values.get("target_modules") is not None:
        values["target_modules"] = split_target_modules(values["target_modules"])
        if values["target_modules"] == ():
            raise BadInput(
                "--target-modules",
                repr(flags["target_modules"]),
                "names no module",
                "pass comma-separated module-name suffixes (e.g. query,value), a regex or "
                "all-linear",
            )
    if values["method"] == "prune_lora" and "orth_reg_weight" not in given:
        values["orth_reg_weight"] = 0.0  # LoRA has no orthogonality to regularise
    return cls(**values, given=given).own_step()
