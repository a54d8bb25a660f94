"""The methods a run can train, and the numbers they derive from the hyperparameters.

AdaLoRA; LoRA at a matched budget; full fine-tuning; BitFit; and the paper's ablations
"SVD-LoRA" (SVD adapters with the orthogonal regulariser, nothing pruned) and "Prune LoRA"
(LoRA whose ranks are pruned by the same importance score). Every function returns a new
``hp`` dict; none changes the one it is given.
"""

from __future__ import annotations

import math

from experiments.validate_base import BadInput

METHODS = ("adalora", "lora", "full", "bitfit", "svd_lora", "prune_lora")
ADAPTER_METHODS = ("adalora", "lora", "svd_lora", "prune_lora")
ALLOCATING_METHODS = ("adalora", "prune_lora")  # methods whose ranks the allocator prunes

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
        ranks = rank_pattern_from(hp["rank_pattern_from"], hp.get("model"), model)
        hp["lora_rank_pattern"] = ranks
        hp["budget"] = sum(ranks.values())
    return hp


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
    both name one) whose ``rank_pattern`` maps module names to non-negative integers (not
    bools), at least one above 0. Anything else raises BadInput naming --rank-pattern-from."""
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
    if method == "lora" and hp.get("lora_rank_pattern"):
        # AdaLoRA's final ranks as fixed ranks, every module at LoRA's scale alpha / lora_r
        ranks = hp["lora_rank_pattern"]
        common["target_modules"] = list(ranks)
        alphas = {m: hp["lora_alpha"] * r / hp["lora_r"] for m, r in ranks.items()}
        cfg = LoraConfig(r=hp["lora_r"], rank_pattern=ranks, alpha_pattern=alphas, **common)
        return None, AdaLoraModel(model, cfg)
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


def init_total_rank(method: str, hp: dict) -> int:
    """Total rank at step 0: init_r per matrix for the allocating methods, else the fixed rank."""
    r = (
        hp["init_r"]
        if method in ALLOCATING_METHODS
        else hp.get("lora_r") or int(round(hp["target_r"]))
    )
    return r * hp["n_modules"]
