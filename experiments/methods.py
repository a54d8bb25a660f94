"""The methods a run can train, and the numbers they derive from the hyperparameters.

AdaLoRA; LoRA at a matched budget; full fine-tuning; BitFit; and the paper's ablations
"SVD-LoRA" (SVD adapters with the orthogonal regulariser, nothing pruned) and "Prune LoRA"
(LoRA whose ranks are pruned by the same importance score). Every function returns a new
``hp`` dict; none changes the one it is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

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
    wrap: Callable  # (model, hp) -> (model to train or None, AdaLoraModel or None)
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


def variant_tag(method: str, hp: dict) -> str:
    """'' for the method's default; else the ablation tags the result tables group by."""
    if method == "lora" and hp.get("rank_pattern_from"):
        return "rank_pattern"
    if method not in SCHEDULED_METHODS:
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


def count_target_modules(model, hp: dict) -> int:
    from adalora import find_targets
    from adalora.targets import head_modules

    return len(find_targets(model, hp.get("target_modules"), head_modules(model)))


def plan_budget(model, method: str, hp: dict, n_modules: int | None = None) -> dict:
    """Fill init_r / target_r / lora_r so budgets match: LoRA gets rank round(b(T) / n),
    i.e. the final parameter count of AdaLoRA (r (in + out) vs r (in + out + 1)).
    ``n_modules`` replaces counting the model's target modules (model may then be None)."""
    if method not in ADAPTER_METHODS:
        return hp
    hp = dict(hp)
    n = n_modules if n_modules is not None else count_target_modules(model, hp)
    if hp.get("budget") is not None:
        hp["target_r"] = hp["budget"] / n
    hp["budget"] = int(round(hp["target_r"] * n))
    if hp.get("init_r") is None:
        hp["init_r"] = max(1, math.ceil(1.5 * hp["target_r"]))
    if method == "lora" and hp.get("lora_r") is None:
        hp["lora_r"] = max(1, int(round(hp["budget"] / n)))
    hp["n_modules"] = n
    if method == "lora" and hp.get("rank_pattern_from"):
        ranks = rank_pattern_from(hp["rank_pattern_from"], hp.get("model"))
        hp["lora_rank_pattern"] = ranks
        hp["budget"] = sum(ranks.values())
    return hp


def rank_pattern_from(path: str, model: str | None = None) -> dict[str, int]:
    """{module: final rank} of an AdaLoRA result file, the fixed ranks of the rank-pattern LoRA
    baseline (modules AdaLoRA pruned to rank 0 stay unadapted)."""
    import json
    from pathlib import Path

    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(
            f"--rank-pattern-from {path}: cannot read it as a result file ({e})"
        ) from None
    rec = rec if isinstance(rec, dict) else {}
    ranks = rec.get("rank_pattern")
    if rec.get("method") not in ("adalora", "prune_lora") or not ranks:
        raise ValueError(
            f"--rank-pattern-from {path}: not an AdaLoRA result file with a final rank pattern "
            f"(method {rec.get('method')!r}); pass the result JSON of an adalora run."
        )
    if model is not None and rec.get("model") not in (None, model):
        raise ValueError(
            f"--rank-pattern-from {path}: its ranks are for model {rec.get('model')!r}, this run "
            f"trains {model!r}; pass an AdaLoRA result of the same model."
        )
    return {name: int(r) for name, r in sorted(ranks.items()) if int(r) > 0}


def schedule_steps(hp: dict, n_train: int, world: int = 1) -> dict:
    """T from epochs (or --max-steps), then tinit / tfinal / warm-up from their fractions."""
    hp = dict(hp)
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


def _full(model, hp: dict):
    for p in model.parameters():
        p.requires_grad_(True)
    return model, None


def _bitfit(model, hp: dict):
    from adalora.targets import head_modules

    heads = head_modules(model)
    for n, p in model.named_parameters():
        p.requires_grad_(n.endswith(".bias") or any(n.startswith(h + ".") for h in heads))
    return model, None


def _adapter_common(model, hp: dict) -> dict:
    from adalora.targets import head_modules

    return dict(
        lora_alpha=hp["lora_alpha"],
        target_modules=hp.get("target_modules"),
        lora_dropout=hp.get("lora_dropout", 0.0),
        modules_to_save=head_modules(model),
    )


def _lora(model, hp: dict):
    from adalora import AdaLoraModel, LoraConfig

    common = _adapter_common(model, hp)
    if hp.get("lora_rank_pattern"):
        # AdaLoRA's final ranks as fixed ranks, every module at LoRA's scale alpha / lora_r
        ranks = hp["lora_rank_pattern"]
        common["target_modules"] = list(ranks)
        alphas = {m: hp["lora_alpha"] * r / hp["lora_r"] for m, r in ranks.items()}
        cfg = LoraConfig(r=hp["lora_r"], rank_pattern=ranks, alpha_pattern=alphas, **common)
        return None, AdaLoraModel(model, cfg)
    return None, AdaLoraModel(model, LoraConfig(r=hp["lora_r"], **common))


def _adalora_kwargs(model, hp: dict) -> dict:
    return dict(
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
        **_adapter_common(model, hp),
    )


def _svd_lora(model, hp: dict):
    """SVD adapters at the final rank, nothing pruned (k = 0 always)."""
    from adalora import AdaLoraConfig, AdaLoraModel

    r = max(1, int(round(hp["target_r"])))
    return None, AdaLoraModel(
        model, AdaLoraConfig(init_r=r, target_r=r, **_adalora_kwargs(model, hp))
    )


def _allocating(prune_lora: bool):
    def wrap(model, hp: dict):
        from adalora import AdaLoraConfig, AdaLoraModel

        cfg = AdaLoraConfig(
            init_r=hp["init_r"],
            target_r=hp["target_r"],
            target_total_rank=hp["budget"],
            prune_lora=prune_lora,
            **_adalora_kwargs(model, hp),
        )
        return None, AdaLoraModel(model, cfg)

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


def wrap_model(model, method: str, hp: dict):
    """Apply the method. Returns (model to train, AdaLoraModel or None)."""
    return METHODS[method].wrap(model, hp)


def init_total_rank(method: str, hp: dict) -> int:
    """Total rank at step 0: init_r per matrix for the allocating methods, else the fixed rank."""
    r = (
        hp["init_r"]
        if method in ALLOCATING_METHODS
        else hp.get("lora_r") or int(round(hp["target_r"]))
    )
    return r * hp["n_modules"]
