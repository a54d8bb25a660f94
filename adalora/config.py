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
import re
from dataclasses import InitVar, dataclass

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
SCHEDULES = ("cubic", "linear", "constant")
VARIANTS = tuple(_VARIANT_DEFAULTS)  # ("peft", "paper", "authors")
_CHOICES = {
    "orth_reg_form": ("norm_mean", "squared_sum"),
    "score_weights": ("post_step", "pre_step"),
    "final_phase": ("fixed", "frozen_scores"),
    "score": SCORES,
    "schedule": SCHEDULES,
}


def _check_common(cfg) -> None:
    if cfg.lora_dropout < 0 or cfg.lora_dropout >= 1:
        raise ValueError(f"lora_dropout must be in [0, 1), got {cfg.lora_dropout}.")
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
    if cfg.modules_to_save is not None:
        cfg.modules_to_save = list(cfg.modules_to_save)


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
        if not isinstance(self.r, int) or self.r <= 0:
            raise ValueError(f"LoRA rank r must be a positive integer, got {self.r!r}.")
        for name in ("rank_pattern", "alpha_pattern"):
            pattern = getattr(self, name) or {}
            bad = {k: v for k, v in pattern.items() if not (isinstance(v, int | float) and v > 0)}
            if bad or (
                name == "rank_pattern" and any(not isinstance(v, int) for v in pattern.values())
            ):
                raise ValueError(
                    f"{name} values must be positive "
                    f"{'integers' if name == 'rank_pattern' else 'numbers'}, "
                    f"got {bad or pattern}; leave a module out of target_modules instead of rank 0."
                )
            setattr(self, name, dict(pattern) or None)
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
        if self.variant not in _VARIANT_DEFAULTS:
            raise ValueError(
                f"variant must be one of {sorted(_VARIANT_DEFAULTS)}, got {self.variant!r}."
            )
        for k, v in _VARIANT_DEFAULTS[self.variant].items():
            if getattr(self, k) is None:
                setattr(self, k, v)
        for k, allowed in _CHOICES.items():
            if getattr(self, k) not in allowed:
                raise ValueError(f"{k} must be one of {allowed}, got {getattr(self, k)!r}.")
        if not isinstance(self.init_r, int) or self.init_r <= 0:
            raise ValueError(f"init_r must be a positive integer, got {self.init_r!r}.")
        if self.target_r < 0:
            raise ValueError(f"target_r must be >= 0, got {self.target_r}.")
        if self.target_r > self.init_r:
            raise ValueError(
                f"target_r ({self.target_r}) > init_r ({self.init_r}): AdaLoRA only prunes ranks. "
                "Set init_r >= target_r (the paper uses init_r = 1.5 x the final average rank)."
            )
        if self.target_total_rank is not None and self.target_total_rank < 0:
            raise ValueError(f"target_total_rank must be >= 0, got {self.target_total_rank}.")
        for name in ("beta1", "beta2"):
            b = getattr(self, name)
            if not 0 < b < 1:
                raise ValueError(f"{name} must be in (0, 1) (an EMA coefficient), got {b}.")
        if self.orth_reg_weight < 0:
            raise ValueError(f"orth_reg_weight must be >= 0, got {self.orth_reg_weight}.")
        if not isinstance(self.deltaT, int) or self.deltaT < 1:
            raise ValueError(f"deltaT must be an integer >= 1, got {self.deltaT!r}.")
        if self.tinit < 0 or self.tfinal < 0:
            raise ValueError(
                f"tinit and tfinal are step counts >= 0, got tinit={self.tinit}, "
                f"tfinal={self.tfinal}."
            )
        if self.total_step is not None:
            self.check_schedule(self.total_step)
        _check_common(self)

    def check_schedule(self, total_step: int) -> None:
        """Raise unless tinit < total_step - tfinal (a budgeting phase of >= 1 step exists)."""
        if total_step is None or total_step <= 0:
            raise ValueError(f"total_step must be a positive integer, got {total_step!r}.")
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
