"""Configurations for AdaLoRA and the fixed-rank LoRA baseline, validated on construction.

Field names follow PEFT's AdaLoraConfig / LoraConfig so that configs move between the two.

Variants: ``variant`` picks the defaults of three fields (each can also be set alone):

=================  ==================  ==================  ==================
field              "peft" (default)    "authors"           "paper"
=================  ==================  ==================  ==================
orth_reg_form      "norm_mean"         "norm_mean"         "squared_sum"
score_weights      "post_step"         "post_step"         "pre_step"
final_phase        "fixed"             "frozen_scores"     "fixed"
=================  ==================  ==================  ==================

- orth_reg_form: "norm_mean" (PEFT and the authors' code): the mean over all P and Q of
  ||P^T P - I||_F and ||Q Q^T - I||_F, not squared; "squared_sum" (the paper, eq. 4): the sum
  over modules of ||P^T P - I||_F^2 + ||Q Q^T - I||_F^2.
- score_weights: "post_step" (both codebases): |w * g| with the weights already updated by
  ``optimizer.step()``; "pre_step" (the paper, Algorithm 1): with the weights before the step
  (call ``model.update_importance()`` before ``optimizer.step()``; AdaLoraCallback does this).
- final_phase: "fixed" (PEFT): one mask forced at t = T - tfinal, then re-applied every step;
  "frozen_scores" (the authors' code): the mask is recomputed every final-phase step from the
  scores frozen at T - tfinal.

Score variants the paper ablates (``score``): "triplet" (S_i = s(lambda_i) + mean s(Q_i.) +
mean s(P_.i), s = Ibar * Ubar), "sensitivity" (s = I = |w * g| of the current step, no
smoothing or uncertainty), "magnitude" (S_i = |lambda_i|).
Schedule shapes (``schedule``): "cubic" (the paper's), "linear", "constant" (b = b(T) as soon as
t > tinit).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import InitVar, dataclass

from adalora.schedule import SHAPES

_VARIANT_DEFAULTS = {
    "peft": {"orth_reg_form": "norm_mean", "score_weights": "post_step", "final_phase": "fixed"},
    "paper": {"orth_reg_form": "squared_sum", "score_weights": "pre_step", "final_phase": "fixed"},
    "authors": {
        "orth_reg_form": "norm_mean",
        "score_weights": "post_step",
        "final_phase": "frozen_scores",
    },
}
# The values of AdaLoraConfig's ``score``, ``schedule`` and ``variant``: the runners' flags offer
# exactly these (experiments/cli.py, scripts/ablate.py).
SCORES = ("triplet", "sensitivity", "magnitude")
SCHEDULES = tuple(SHAPES)  # ("cubic", "linear", "constant")
VARIANTS = tuple(_VARIANT_DEFAULTS)  # ("peft", "paper", "authors")
_CHOICES = {
    "orth_reg_form": ("norm_mean", "squared_sum"),
    "score_weights": ("post_step", "pre_step"),
    "final_phase": ("fixed", "frozen_scores"),
    "score": SCORES,
    "schedule": SCHEDULES,
}


def _is_int(v) -> bool:
    """An integer (numpy's too), never a bool: True would silently mean 1."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v) -> bool:
    """A finite real number (numpy's too), never a bool: NaN compares False with every bound,
    so a range check alone lets it through."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _bad(name: str, rule: str, value, fix: str) -> ValueError:
    """The one message shape of every field check: what the field must be, what it got, the fix."""
    return ValueError(f"{name} must be {rule}, got {value!r}. {fix}.")


def _int_field(cfg, name: str, minimum: int, rule: str, fix: str, optional: bool = False) -> None:
    v = getattr(cfg, name)
    if optional and v is None:
        return
    if not _is_int(v) or v < minimum:
        raise _bad(name, rule, v, fix)
    setattr(cfg, name, int(v))  # a numpy integer becomes a plain int (JSON-serialisable)


def _number_field(cfg, name: str, in_range, rule: str, fix: str) -> None:
    v = getattr(cfg, name)
    if not _is_number(v) or not in_range(v):
        raise _bad(name, rule, v, fix)
    if not isinstance(v, int | float):
        setattr(cfg, name, float(v))  # e.g. numpy.float32, which JSON cannot write


def _bool_field(cfg, name: str) -> None:
    v = getattr(cfg, name)
    if not isinstance(v, bool):
        raise _bad(name, "True or False", v, f"Pass {name}=True or {name}=False")


def _check_common(cfg) -> None:
    """The fields LoraConfig and AdaLoraConfig share."""
    _number_field(
        cfg,
        "lora_alpha",
        lambda v: True,
        "a finite number",
        "Pass a number such as 8 (the default)",
    )
    _number_field(
        cfg,
        "lora_dropout",
        lambda v: 0 <= v < 1,
        "in [0, 1) (a dropout probability)",
        "Pass 0.0 for no dropout, or a probability such as 0.1",
    )
    _bool_field(cfg, "fan_in_fan_out")
    tm = cfg.target_modules
    if tm is not None and not isinstance(tm, str):
        cfg.target_modules = list(tm)
        if not cfg.target_modules or not all(isinstance(t, str) and t for t in cfg.target_modules):
            raise ValueError(
                "target_modules must be a regex string or a non-empty list of names "
                f"(module-name suffixes), got {tm!r}."
            )
    if isinstance(tm, str):
        try:
            re.compile(tm)
        except re.error as e:
            raise ValueError(f"target_modules {tm!r} is not a valid regex: {e}") from None
    ms = cfg.modules_to_save
    if ms is not None:
        if isinstance(ms, str) or not all(isinstance(m, str) and m for m in ms):
            raise _bad(
                "modules_to_save",
                "None or a list of module names",
                ms,
                "Pass a list such as ['classifier'], [] for none, or None for the model's task "
                "heads",
            )
        cfg.modules_to_save = list(ms)


def _check_pattern(cfg, name: str, value_ok, kind: str, fix: str) -> None:
    """LoraConfig's rank_pattern / alpha_pattern: {module name or suffix: value}."""
    pattern = getattr(cfg, name)
    if pattern is None:
        return
    if not isinstance(pattern, Mapping):
        raise _bad(name, f"None or a dict {{module name or suffix: {kind}}}", pattern, fix)
    bad = {k: v for k, v in pattern.items() if not (isinstance(k, str) and k and value_ok(v))}
    if bad:
        raise ValueError(f"{name} values must be positive {kind}s, got {bad}. {fix}.")


def _pattern_value(pattern: dict | None, module_name: str, default):
    """PEFT's pattern lookup: the first key that equals the module name or a dotted suffix of it."""
    for key, value in (pattern or {}).items():
        if re.match(rf"(.*\.)?{key}$", module_name):
            return value
    return default


def _set_peft_type(cfg, given, expected: str) -> None:
    """Accept PEFT's ``peft_type`` keyword (a string or PEFT's PeftType) for the right class;
    ``cfg.peft_type`` is then always the plain string."""
    if given is not None and str(getattr(given, "value", given)).upper() != expected:
        raise ValueError(
            f"{type(cfg).__name__} has peft_type {expected!r}, got {given!r}: use "
            f"{'LoraConfig' if expected == 'ADALORA' else 'AdaLoraConfig'} for that."
        )
    cfg.peft_type = expected


@dataclass
class LoraConfig:
    r"""Fixed-rank LoRA (Hu et al. 2021): dW = B A * lora_alpha / r, B (out x r) = 0 at init.

    ``rank_pattern`` / ``alpha_pattern`` (PEFT's fields): per-module r and lora_alpha, keyed by a
    module name or a name suffix (PEFT's rule: key k matches module name n when
    ``re.match(rf"(.*\.)?{k}$", n)``); modules no key matches take ``r`` / ``lora_alpha``.
    """

    r: int = 8
    lora_alpha: float = 8
    rank_pattern: dict | None = None  # {module name or suffix: r}
    alpha_pattern: dict | None = None  # {module name or suffix: lora_alpha}
    target_modules: list | str | None = None  # None: per-architecture default
    lora_dropout: float = 0.0
    modules_to_save: list | None = None  # e.g. ["classifier"]: trained in full, saved
    fan_in_fan_out: bool = False  # True for transformers' Conv1D (GPT-2); set automatically
    task_type: str | None = None  # "SEQ_CLS", "SEQ_2_SEQ_LM", ...: PEFT interop only
    peft_type: InitVar[str | None] = None  # PEFT's keyword: accepted if "LORA"

    def __post_init__(self, peft_type=None):
        _set_peft_type(self, peft_type, "LORA")
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad field, its value and the fix (run on
        construction and again by AdaLoraModel, so fields set afterwards are checked too)."""
        if not _is_int(self.r) or self.r <= 0:
            raise ValueError(
                f"LoRA rank r must be a positive integer, got {self.r!r}. Pass an int such as r=8."
            )
        self.r = int(self.r)
        no_zero = "leave a module out of target_modules instead of rank 0"
        _check_pattern(
            self,
            "rank_pattern",
            lambda v: _is_int(v) and v > 0,
            "integer",
            f"Pass an int rank per module, e.g. {{'query': 4}}; {no_zero}",
        )
        _check_pattern(
            self,
            "alpha_pattern",
            lambda v: _is_number(v) and v > 0,
            "number",
            "Pass a finite lora_alpha per module, e.g. {'query': 16}",
        )
        if self.rank_pattern:
            self.rank_pattern = {k: int(v) for k, v in self.rank_pattern.items()}
        self.rank_pattern = self.rank_pattern or None
        self.alpha_pattern = dict(self.alpha_pattern) if self.alpha_pattern else None
        _check_common(self)

    def r_and_alpha(self, module_name: str) -> tuple[int, float]:
        """(r, lora_alpha) of one module: its pattern entries, else ``r`` / ``lora_alpha``."""
        return (
            _pattern_value(self.rank_pattern, module_name, self.r),
            _pattern_value(self.alpha_pattern, module_name, self.lora_alpha),
        )

    @property
    def scaling(self) -> float:
        return self.lora_alpha / self.r

    def to_dict(self) -> dict:
        # PEFT reads the patterns as dicts ({} when unused), never None
        patterns = {
            "rank_pattern": self.rank_pattern or {},
            "alpha_pattern": self.alpha_pattern or {},
        }
        return dataclasses.asdict(self) | patterns | {"peft_type": self.peft_type}


@dataclass
class AdaLoraConfig:
    """AdaLoRA: SVD-form adapters with importance-driven rank allocation.

    Step semantics: ``t`` is the number of optimizer steps completed before this one
    (0-based: the call after the first ``optimizer.step()`` passes t = 0), as in PEFT's example
    loops and the authors' Trainer (which passes ``state.global_step`` before incrementing it);
    a run of total_step steps passes t = 0 .. total_step - 1. Budget b(t) in total rank over
    all adapted modules: b0 = init_r * n_modules while t <= tinit; decreasing by ``schedule``
    to bT = target_r * n_modules (or ``target_total_rank``) at t = total_step - tfinal; bT and
    a fixed mask afterwards. Masking happens when t % deltaT == 0 in the budgeting phase.

    PEFT's constructor keywords are accepted where they mean the same here, ``peft_type``
    ("ADALORA") and ``task_type`` included (PEFT requires ``total_step``; here it may stay None
    when AdaLoraCallback takes it from the Trainer). PEFT keywords this library does not
    implement raise TypeError: ``r`` (use init_r), ``bias``, ``inference_mode``,
    ``layers_to_transform``, ``layers_pattern``, ``exclude_modules``, ``init_lora_weights``,
    ``use_dora``, ``use_rslora``, ``target_parameters``, ...
    """

    init_r: int = 12
    target_r: float = 8  # average final rank per module; may be fractional if target_total_rank
    lora_alpha: float = 8
    target_modules: list | str | None = None
    lora_dropout: float = 0.0
    tinit: int = 0
    tfinal: int = 0
    deltaT: int = 1
    beta1: float = 0.85
    beta2: float = 0.85
    orth_reg_weight: float = 0.5
    total_step: int | None = None  # the Trainer callback fills it in when None
    rank_pattern: dict | None = None  # {"<module>.lora_E": [bool] * init_r}, set by allocation
    modules_to_save: list | None = None
    fan_in_fan_out: bool = False
    task_type: str | None = None
    target_total_rank: int | None = None  # absolute b(T); overrides target_r * n_modules
    variant: str = "peft"
    orth_reg_form: str | None = None  # None: from variant
    score_weights: str | None = None  # None: from variant
    final_phase: str | None = None  # None: from variant
    score: str = "triplet"
    schedule: str = "cubic"
    prune_lora: bool = False  # "Prune LoRA" ablation: lambda frozen as a 0/1 gate, P = 0 at init
    peft_type: InitVar[str | None] = None  # PEFT's keyword: accepted if "ADALORA"

    def __post_init__(self, peft_type=None):
        _set_peft_type(self, peft_type, "ADALORA")
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad field, its value and the fix (run on
        construction and again by AdaLoraModel, so fields set afterwards are checked too).
        Fills the variant's defaults into the fields left None."""
        if not isinstance(self.variant, str) or self.variant not in _VARIANT_DEFAULTS:
            raise ValueError(
                f"variant must be one of {sorted(_VARIANT_DEFAULTS)}, got {self.variant!r}."
            )
        for k, v in _VARIANT_DEFAULTS[self.variant].items():
            if getattr(self, k) is None:
                setattr(self, k, v)
        for k, allowed in _CHOICES.items():
            if getattr(self, k) not in allowed:
                raise ValueError(f"{k} must be one of {allowed}, got {getattr(self, k)!r}.")
        _int_field(
            self,
            "init_r",
            1,
            "a positive integer (the rank every adapter starts at)",
            "Pass an int such as init_r=12",
        )
        _number_field(
            self,
            "target_r",
            lambda v: v >= 0,
            ">= 0 and finite (the average final rank per module)",
            "Pass a number such as target_r=8",
        )
        if self.target_r > self.init_r:
            raise ValueError(
                f"target_r ({self.target_r}) > init_r ({self.init_r}): AdaLoRA only prunes ranks. "
                "Set init_r >= target_r (the paper uses init_r = 1.5 x the final average rank)."
            )
        _int_field(
            self,
            "target_total_rank",
            0,
            ">= 0 and an integer, or None (the final total rank b(T) over all modules)",
            "Pass an int, or None for target_r x the number of modules",
            optional=True,
        )
        for name in ("beta1", "beta2"):
            _number_field(
                self,
                name,
                lambda v: 0 < v < 1,
                "in (0, 1) (an EMA coefficient)",
                f"Pass a number such as {name}=0.85 (the default)",
            )
        _number_field(
            self,
            "orth_reg_weight",
            lambda v: v >= 0,
            ">= 0 and finite",
            "Pass 0 to turn the orthogonal regulariser off, or a weight such as 0.5 (the default)",
        )
        _int_field(
            self,
            "deltaT",
            1,
            "an integer >= 1 (steps between two maskings)",
            "Pass an int such as deltaT=10",
        )
        for name in ("tinit", "tfinal"):
            _int_field(
                self,
                name,
                0,
                "an integer >= 0 (a number of steps)",
                f"Pass an int such as {name}=0",
            )
        _bool_field(self, "prune_lora")
        self._check_rank_pattern()
        if self.total_step is not None:
            self.check_schedule(self.total_step)
            self.total_step = int(self.total_step)
        _check_common(self)

    def _check_rank_pattern(self) -> None:
        """{"<module>.lora_E": keep-mask of init_r booleans} (what allocation stores)."""
        pattern, rule = self.rank_pattern, f"{self.init_r} booleans (init_r: one per triplet)"
        if pattern is None:
            return
        fix = "Pass the rank_pattern that update_and_allocate returned, or None"
        if not isinstance(pattern, Mapping):
            raise _bad(
                "rank_pattern", "None or a dict {'<module>.lora_E': [bool, ...]}", pattern, fix
            )
        for k, keep in pattern.items():
            if not (
                isinstance(k, str)
                and isinstance(keep, list | tuple)
                and len(keep) == self.init_r
                and all(isinstance(x, bool) or (_is_int(x) and x in (0, 1)) for x in keep)
            ):
                raise _bad(f"rank_pattern[{k!r}]", f"a list of {rule}", keep, fix)

    def check_schedule(self, total_step: int) -> None:
        """Raise unless total_step is a positive integer and tinit < total_step - tfinal (a
        budgeting phase of >= 1 step exists)."""
        if not _is_int(total_step) or total_step <= 0:
            raise _bad(
                "total_step",
                "a positive integer (the number of optimizer steps of the run)",
                total_step,
                "Pass an int, or leave it None in the config for AdaLoraCallback to take it "
                "from the Trainer",
            )
        if self.tinit + self.tfinal >= total_step:
            raise ValueError(
                f"No budgeting phase: tinit ({self.tinit}) + tfinal ({self.tfinal}) >= total_step "
                f"({total_step}). tinit and tfinal are durations in steps; decrease them or train "
                "longer so that tinit + tfinal < total_step."
            )

    @property
    def scaling(self) -> float:
        """alpha / r_init, fixed for the run (masking and resizing never change it)."""
        alpha = self.lora_alpha if self.lora_alpha > 0 else float(self.init_r)
        return alpha / self.init_r

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"peft_type": self.peft_type}


def config_from_dict(d: dict):
    """Inverse of ``to_dict``; also takes a PEFT adapter_config.json dict (drops unknown keys)."""
    d = dict(d)
    peft_type = d.pop("peft_type", "ADALORA")
    cls = {"ADALORA": AdaLoraConfig, "LORA": LoraConfig}.get(peft_type)
    if cls is None:
        raise ValueError(f"unsupported peft_type {peft_type!r}: expected ADALORA or LORA.")
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in d.items() if k in names}
    return cls(**kwargs)
