"""The methods a run can train, and the numbers they derive from the hyperparameters.

AdaLoRA; LoRA at a matched budget; full fine-tuning; BitFit; and the paper's ablations
"SVD-LoRA" (SVD adapters with the orthogonal regulariser, nothing pruned) and "Prune LoRA"
(LoRA whose ranks are pruned by the same importance score). ``cfg`` is a run's frozen
config (experiments/config.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from experiments.validation.base import BadInput

# Hyperparameters of the adapter methods (matched budget, adapter shape and targets)
_ADAPTER_HP = frozenset({"target_r", "budget", "lora_alpha", "lora_dropout", "target_modules"})
# ... and of AdaLoRA's allocation: initial rank, schedule, importance score, regulariser
_ALLOCATION_HP = frozenset(
    {"init_r", "tinit", "tfinal", "tinit_frac", "tfinal_frac", "delta_t", "beta1", "beta2",
     "orth_reg_weight", "score", "schedule", "variant"}
)  # fmt: skip


@dataclass(frozen=True)
class Method:
    """One method a run can train (``METHODS``): what the CLI, the checks, the presets, the
    record and the report know of it. Its code is ``wrap``; adding a method is one entry here."""

    name: str  # --method value, result files' "method"
    label: str  # as the result tables name it
    help: str  # its part of --method's help
    quick_lr: float  # the quick presets' learning rate
    wrap: Callable  # (model, cfg) -> (model to train or None, AdaLoraModel or None)
    adapters: bool = False  # trains low-rank adapters at a rank budget b(T) over n_modules
    allocates: bool = False  # the allocator prunes its ranks from init_r down to b(T)
    scheduled: bool = False  # runs AdaLoRA's tinit / tfinal schedule (needs tinit + tfinal < T)
    reads: frozenset = frozenset()  # the method-specific hyperparameters it uses


# Adapted matrices with the default targets, for --dry-run when the model cannot be loaded
# (offline): 6 per DeBERTa layer; BART: 6 per encoder layer, 10 per decoder layer.
KNOWN_N_MODULES = {
    "microsoft/deberta-v3-base": 72,
    "microsoft/deberta-v3-large": 144,
    "facebook/bart-large": 192,
}


def variant_tag(cfg) -> str:
    """'' for the method's default; else the ablation tags the result tables group by."""
    if cfg.method == "lora" and cfg.rank_pattern_from:
        return "rank_pattern"
    if cfg.method not in SCHEDULED_METHODS:
        return ""
    tags = []
    if (cfg.score or "triplet") != "triplet":
        tags.append(f"score={cfg.score}")
    if cfg.orth_reg_weight == 0 and cfg.method != "prune_lora":
        tags.append("gamma=0")
    if (cfg.schedule or "cubic") != "cubic":
        tags.append(f"schedule={cfg.schedule}")
    if (cfg.variant or "peft") != "peft":
        tags.append(f"variant={cfg.variant}")
    return "+".join(tags)


def count_target_modules(model, cfg) -> int:
    from adalora import find_targets
    from adalora.targets import head_modules

    return len(find_targets(model, cfg.target_modules, head_modules(model)))


def plan_budget(model, cfg, n_modules: int | None = None):
    """``cfg`` with its ranks matched to the budget (config.RunConfig.with_budget) over the
    model's adapted matrices; ``n_modules`` replaces counting them (model may then be None).
    LoRA with --rank-pattern-from: that AdaLoRA run's final ranks."""
    if cfg.method not in ADAPTER_METHODS:
        return cfg
    n = n_modules if n_modules is not None else count_target_modules(model, cfg)
    ranks = None
    if cfg.method == "lora" and cfg.rank_pattern_from:
        ranks = rank_pattern_from(cfg.rank_pattern_from, cfg.model, model)
    return cfg.with_budget(n, ranks)


def rank_pattern_from(path: str, model: str | None = None, net=None) -> dict[str, int]:
    """{module: final rank} of an AdaLoRA result file, the fixed ranks of the rank-pattern LoRA
    baseline (modules AdaLoRA pruned to rank 0 stay unadapted). ``model``: the run's model name
    (the file must be of the same); ``net``: the loaded model, whose modules the pattern must
    name (check_rank_pattern). Raises BadInput naming --rank-pattern-from (read_rank_pattern)."""
    pattern = read_rank_pattern(path, model)
    if net is not None:
        check_rank_pattern(net, pattern, path)
    return {name: r for name, r in sorted(pattern.items()) if r > 0}


_RP_FIX = "pass the result JSON of an adalora run"


def _rank_pattern_error(path, problem: str, fix: str = _RP_FIX) -> BadInput:
    return BadInput("--rank-pattern-from", path, problem, fix)


def read_rank_pattern(path: str, model: str | None = None) -> dict[str, int]:
    """The whole final rank pattern {module: rank >= 0} of an AdaLoRA (or prune_lora) result
    file, checked without the model: a readable JSON object of that method (of ``model`` when
    both name one), of a run that did not fail (run_failure), whose ``rank_pattern`` maps module
    names to non-negative integers (not bools), at least one above 0. Anything else raises
    BadInput naming --rank-pattern-from."""
    import json
    from pathlib import Path

    try:
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _rank_pattern_error(path, f"cannot read it as a result file ({e})") from None
    if not isinstance(rec, dict):
        raise _rank_pattern_error(
            path, f"not an AdaLoRA result file (a JSON {type(rec).__name__}, not an object)"
        )
    ranks = rec.get("rank_pattern")
    if rec.get("method") not in ALLOCATING_METHODS or not ranks:
        raise _rank_pattern_error(
            path,
            f"not an AdaLoRA result file with a final rank pattern (method {rec.get('method')!r})",
        )
    if model is not None and rec.get("model") not in (None, model):
        raise _rank_pattern_error(
            path,
            f"its ranks are for model {rec.get('model')!r}, this run trains {model!r}",
            "pass an AdaLoRA result of the same model",
        )
    failure = run_failure(rec)
    if failure is not None:
        raise _rank_pattern_error(
            path,
            f"{failure}: the ranks it ended with are those of a broken model",
            "pass an adalora run whose status is 'ok' (rerun this one, e.g. at a smaller --lr)",
        )
    if not isinstance(ranks, dict):
        raise _rank_pattern_error(
            path,
            f"rank_pattern is a JSON {type(ranks).__name__}, not an object of module name -> rank",
            "pass an unedited result JSON of an adalora run",
        )
    for name, r in ranks.items():
        if not isinstance(r, int) or isinstance(r, bool) or r < 0:
            what = (
                "negative" if isinstance(r, int) and not isinstance(r, bool) else "not an integer"
            )
            raise _rank_pattern_error(
                path,
                f"rank_pattern[{name!r}] = {json.dumps(r)}: {what} (a rank is an integer >= 0; "
                "0 = the module stays unadapted)",
                "pass an unedited result JSON of an adalora run",
            )
    if not any(ranks.values()):
        raise _rank_pattern_error(
            path,
            f"every module of its rank_pattern has rank 0 ({len(ranks)} modules): nothing to adapt",
            "pass an adalora run that kept some ranks",
        )
    return dict(ranks)


def run_failure(rec: dict) -> str | None:
    """Why the run of result record ``rec`` failed, from what the runner records
    (experiments/record.py), or None: a training loss that became nan / inf in ``train_log``,
    a nan final main metric or status "constant" (one prediction for every example), status
    "diverged" (the loss became nan / inf and the run stopped), or any other status but "ok".
    A low but finite score is not a failure: no threshold tells a weak run from a broken one."""
    import math

    for e in rec.get("train_log") or []:
        loss = e.get("loss") if isinstance(e, dict) else None
        if isinstance(loss, float) and not math.isfinite(loss):
            return f"the run diverged (its training loss became {loss} at step {e.get('step')})"
    status = rec.get("status")
    metrics = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
    main, final = metrics.get("main", "main metric"), metrics.get("main_final")
    if status == "constant" or (isinstance(final, float) and not math.isfinite(final)):
        # files written before the "constant" status call such a run "diverged"
        return (
            f"the run collapsed (its final {main} is {final}: one prediction for every "
            f"example; status {status!r})"
        )
    if status == "diverged":
        return "the run diverged (status 'diverged': its training loss became nan / inf)"
    if status is not None and status != "ok":
        return f"the run did not finish (status {status!r})"
    return None


def check_rank_pattern(net, pattern: dict[str, int], path: str) -> None:
    """Every module of ``pattern`` is a Linear layer of ``net`` that adapters may target (not
    inside a task head) with its rank at most min(in, out); BadInput naming the first that is
    not. Modules at rank 0 are checked too: their names say which model the pattern is of."""
    from adalora.targets import _is_linear, head_modules, in_modules_to_save

    modules, heads = dict(net.named_modules()), head_modules(net)
    fix = f"pass an AdaLoRA result of this model ({type(net).__name__})"
    for name, r in sorted(pattern.items()):
        m = modules.get(name) if name else None
        if m is None:
            raise _rank_pattern_error(path, f"module {name!r} is not in {type(net).__name__}", fix)
        if not _is_linear(m):
            raise _rank_pattern_error(
                path, f"module {name!r} is a {type(m).__name__}, not a Linear layer", fix
            )
        head = next((h for h in heads if in_modules_to_save(name, [h])), None)
        if head is not None:
            raise _rank_pattern_error(
                path,
                f"module {name!r} is {'' if name == head else 'inside '}the task head "
                f"{head!r}, which is trained in full, never adapted",
                fix,
            )
        side = min(m.weight.shape)
        if r > side:
            raise _rank_pattern_error(
                path,
                f"rank {r} of module {name!r} exceeds {side}, the smaller side of its "
                f"{m.weight.shape[0]} x {m.weight.shape[1]} matrix: a rank above min(in, "
                "out) cannot be used",
                fix,
            )


def _full(model, cfg):
    for p in model.parameters():
        p.requires_grad_(True)
    return model, None


def _bitfit(model, cfg):
    from adalora.targets import head_modules

    heads = head_modules(model)
    for n, p in model.named_parameters():
        p.requires_grad_(n.endswith(".bias") or any(n.startswith(h + ".") for h in heads))
    return model, None


def _adapter_common(model, cfg) -> dict:
    from adalora.targets import head_modules

    return dict(
        lora_alpha=cfg.lora_alpha,
        target_modules=cfg.target_modules,
        lora_dropout=cfg.lora_dropout,
        modules_to_save=head_modules(model),
    )


def _lora(model, cfg):
    from adalora import AdaLoraModel, LoraConfig

    common = _adapter_common(model, cfg)
    if cfg.lora_rank_pattern:
        # AdaLoRA's final ranks as fixed ranks, every module at LoRA's scale alpha / lora_r
        ranks = cfg.lora_rank_pattern
        common["target_modules"] = list(ranks)
        alphas = {m: cfg.lora_alpha * r / cfg.lora_r for m, r in ranks.items()}
        lora = LoraConfig(r=cfg.lora_r, rank_pattern=ranks, alpha_pattern=alphas, **common)
        return None, AdaLoraModel(model, lora)
    return None, AdaLoraModel(model, LoraConfig(r=cfg.lora_r, **common))


def _adalora_kwargs(model, cfg) -> dict:
    return dict(
        beta1=cfg.beta1,
        beta2=cfg.beta2,
        orth_reg_weight=cfg.orth_reg_weight,
        tinit=cfg.tinit,
        tfinal=cfg.tfinal,
        deltaT=cfg.delta_t,
        total_step=cfg.total_step,
        score=cfg.score,
        schedule=cfg.schedule,
        variant=cfg.variant or "peft",
        **_adapter_common(model, cfg),
    )


def _svd_lora(model, cfg):
    """SVD adapters at the final rank, nothing pruned (k = 0 always)."""
    from adalora import AdaLoraConfig, AdaLoraModel

    r = max(1, int(round(cfg.target_r)))
    return None, AdaLoraModel(
        model, AdaLoraConfig(init_r=r, target_r=r, **_adalora_kwargs(model, cfg))
    )


def _allocating(prune_lora: bool):
    def wrap(model, cfg):
        from adalora import AdaLoraConfig, AdaLoraModel

        ada = AdaLoraConfig(
            init_r=cfg.init_r,
            target_r=cfg.target_r,
            target_total_rank=cfg.budget,
            prune_lora=prune_lora,
            **_adalora_kwargs(model, cfg),
        )
        return None, AdaLoraModel(model, ada)

    return wrap


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("adalora", "AdaLoRA", "adalora", 1e-3, _allocating(prune_lora=False),
               adapters=True, allocates=True, scheduled=True,
               reads=_ADAPTER_HP | _ALLOCATION_HP),
        Method("lora", "LoRA", "lora (fixed rank, budget matched to AdaLoRA's final parameter "
               "count)", 1e-3, _lora, adapters=True,
               reads=_ADAPTER_HP | {"lora_r", "rank_pattern_from"}),
        Method("full", "Full FT", "full fine-tuning", 5e-5, _full),
        Method("bitfit", "BitFit", "bitfit (biases + head)", 1e-3, _bitfit),
        Method("svd_lora", "SVD-LoRA", "svd_lora (SVD adapters with orth. reg. at the final "
               "rank, no allocation)", 1e-3, _svd_lora, adapters=True, scheduled=True,
               reads=_ADAPTER_HP | {"orth_reg_weight", "variant"}),
        Method("prune_lora", "Prune LoRA", "prune_lora (LoRA whose ranks are pruned by the same "
               "importance score)", 1e-3, _allocating(prune_lora=True), adapters=True,
               allocates=True, scheduled=True, reads=_ADAPTER_HP | _ALLOCATION_HP),
    )
}  # fmt: skip
ADAPTER_METHODS = tuple(m.name for m in METHODS.values() if m.adapters)
ALLOCATING_METHODS = tuple(m.name for m in METHODS.values() if m.allocates)
SCHEDULED_METHODS = tuple(m.name for m in METHODS.values() if m.scheduled)
# every method-specific hyperparameter (a method that does not read one ignores it)
METHOD_HP = frozenset().union(*(m.reads for m in METHODS.values()))


def wrap_model(model, cfg):
    """Apply the run's method (``cfg``: a config.RunConfig with budget and schedule resolved).
    Returns (model to train or None, AdaLoraModel or None)."""
    return METHODS[cfg.method].wrap(model, cfg)


def init_total_rank(cfg) -> int:
    """Total rank at step 0: init_r per matrix for the allocating methods, else the fixed rank."""
    if cfg.method in ALLOCATING_METHODS:
        r = cfg.init_r
    else:
        r = cfg.lora_r or int(round(cfg.target_r))
    return r * cfg.n_modules
