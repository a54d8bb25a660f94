"""Input checks that need the loaded model (stage 2 of experiments/validation/checks.py): lengths
against the model's positions, --target-modules entries against its Linear layers, adapter
ranks against the adapted matrices. ``held_logs`` keeps the model's load report back meanwhile.
"""

from __future__ import annotations

import contextlib
import math

from experiments.methods import ADAPTER_METHODS as ADAPTERS
from experiments.methods import ALLOCATING_METHODS as ALLOCATING
from experiments.validation.base import bad, flag, given


def max_positions(config) -> int | None:
    """Tokens a model can take (None: no absolute position table, e.g. T5, DeBERTa-v3)."""
    mt = getattr(config, "model_type", "")
    if mt in ("t5", "mt5", "umt5", "longt5"):
        return None
    if mt in ("deberta", "deberta-v2") and not getattr(config, "position_biased_input", True):
        return None  # relative positions only
    n = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not isinstance(n, int) or n <= 0:
        return None
    if mt in ("roberta", "xlm-roberta", "camembert", "xlm-roberta-xl", "data2vec-text"):
        n -= (getattr(config, "pad_token_id", 1) or 1) + 1  # positions start after the padding id
    return n


def check_model(model, cfg, seq2seq: bool = False) -> None:
    """Lengths against the model's positions; adapter ranks against the adapted matrices
    (``cfg``: the run's config after methods.plan_budget filled init_r / lora_r / budget /
    n_modules)."""
    limit = max_positions(getattr(model, "config", None))
    keys = ["max_length"] + (["max_target_length", "gen_max_length"] if seq2seq else [])
    for key in keys if limit is not None else ():
        v = getattr(cfg, key, None)
        if v is not None and v > limit:
            raise bad(
                cfg,
                key,
                v,
                f"longer than the model's {limit} positions "
                f"({getattr(model.config, 'model_type', '?')}: longer inputs index past its "
                "position table)",
                f"pass {flag(key)} {limit} or less",
            )
    if cfg.method in ADAPTERS:
        _check_target_entries(model, cfg)
        _check_adapter_ranks(model, cfg)


def _check_target_entries(model, cfg) -> None:
    """Every entry of a --target-modules list matches some Linear layer (PEFT only needs one
    entry to match: a misspelt entry would be dropped silently)."""
    from adalora.targets import _is_linear

    tm = cfg.target_modules
    if not isinstance(tm, (list, tuple)) or cfg.lora_rank_pattern:
        return
    linear = [n for n, m in model.named_modules() if n and _is_linear(m)]
    for k in tm:
        if not any(n == k or n.endswith("." + k) for n in linear):
            suffixes = sorted({n.rsplit(".", 1)[-1] for n in linear})
            raise bad(
                cfg,
                "target_modules",
                tm,
                f"{k!r} matches no Linear layer of {type(model).__name__}",
                f"pass suffixes of its Linear layers ({', '.join(suffixes)}), a regex or "
                "all-linear",
            )


def _smallest_matrix(model, cfg) -> tuple[str, tuple[int, int]]:
    from adalora import find_targets
    from adalora.targets import head_modules

    names = cfg.lora_rank_pattern or find_targets(model, cfg.target_modules, head_modules(model))
    shapes = {n: tuple(model.get_submodule(n).weight.shape) for n in names}
    name = min(shapes, key=lambda n: min(shapes[n]))
    return name, shapes[name]


def _rank_key(cfg) -> str:
    budget_given = given(cfg, "budget") or getattr(cfg, "budget_level", None) is not None
    return "budget" if budget_given else "target_r"


def check_planned_ranks(cfg) -> None:
    """Once the budget is planned over cfg.n_modules matrices (also in a dry run, without the
    model): an allocating method's final average rank is at most its init_r."""
    if cfg.method in ALLOCATING and cfg.target_r > cfg.init_r:
        rank_key, r, n = _rank_key(cfg), cfg.init_r, cfg.n_modules
        raise bad(
            cfg,
            rank_key,
            cfg.budget if rank_key == "budget" else cfg.target_r,
            f"final average rank {cfg.target_r:g} (b(T) {cfg.budget} over {n} adapted "
            f"matrices) > init_r {r}: AdaLoRA only prunes",
            f"pass --budget {r * n} or less, or raise --init-r",
        )


def _check_adapter_ranks(model, cfg) -> None:
    name, shape = _smallest_matrix(model, cfg)
    side, n = min(shape), cfg.n_modules
    rank_key = _rank_key(cfg)
    if cfg.method in ALLOCATING:
        r, what = cfg.init_r, "init_r"
        key = "init_r" if given(cfg, "init_r") else rank_key
        check_planned_ranks(cfg)  # --budget over n matrices above an explicit --init-r
    elif cfg.method == "lora":
        r, what = cfg.lora_r, "lora_r"
        key = "lora_r" if given(cfg, "lora_r") else rank_key
    else:  # svd_lora: the final rank from the start
        r, what = max(1, int(round(cfg.target_r))), "rank"
        key = rank_key
    if r <= side:
        return
    # the largest value of the blamed flag that keeps the rank within the smaller side
    top_r = math.floor(side / 1.5) if cfg.method in ALLOCATING else side  # init_r = 1.5 x
    if key == "budget":
        fix, value = f"pass --budget {top_r * n} or less", cfg.budget
    elif key == "target_r":
        fix, value = f"pass --target-r {top_r} or less", cfg.target_r
    else:
        fix, value = f"pass {flag(key)} {side} or less", r
    raise bad(
        cfg,
        key,
        value,
        f"{what} {r} exceeds {side}, the smaller side of the adapted matrix {name} "
        f"({shape[0]} x {shape[1]}): a rank above min(in, out) cannot be used",
        fix,
    )


@contextlib.contextmanager
def held_logs():
    """Hold transformers' log records (a model's load report, e.g. the newly initialised
    classifier) while the model loads and is checked: a bad input then prints its one line
    only; when the checks pass, the records are logged as usual. The weight-loading progress
    bar stays off meanwhile (the Trainer's own bars are not affected)."""
    import logging

    from transformers.utils import logging as hf_logging

    root = logging.getLogger("transformers")
    held: list = []

    class _Hold(logging.Handler):
        def emit(self, record):
            held.append(record)

    saved, bars = root.handlers[:], hf_logging.is_progress_bar_enabled()
    root.handlers = [_Hold()]
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        root.handlers = saved
        if bars:
            hf_logging.enable_progress_bar()
    for record in held:
        root.handle(record)
