"""Which Linear layers get adapters: defaults per architecture, matching, and clear errors."""

from __future__ import annotations

import re
from collections.abc import Iterable

from torch import nn

# All six matrix types of every layer (Wq, Wk, Wv, Wo, Wf1, Wf2), the paper's default.
DEFAULT_TARGET_MODULES = {
    "bert": [
        "query",
        "key",
        "value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    ],
    "roberta": [
        "query",
        "key",
        "value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    ],
    "xlm-roberta": [
        "query",
        "key",
        "value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    ],
    "electra": [
        "query",
        "key",
        "value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    ],
    "deberta-v2": [
        "query_proj",
        "key_proj",
        "value_proj",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    ],  # DeBERTa v2 and v3
    "deberta": ["in_proj", "attention.output.dense", "intermediate.dense", "output.dense"],
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
    "bart": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    "mbart": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    "pegasus": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    "t5": ["q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"],
    "mt5": ["q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}
# Task heads: never adapted by a default or suffix match (train them via modules_to_save).
HEAD_NAMES = ("classifier", "score", "classification_head", "lm_head", "qa_outputs", "pooler")


def _is_linear(m: nn.Module) -> bool:
    if isinstance(m, nn.Linear):
        return True
    try:  # transformers' GPT-2 style Conv1D (weight stored in x out)
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover
        return False
    return isinstance(m, Conv1D)


def is_conv1d(m: nn.Module) -> bool:
    return _is_linear(m) and not isinstance(m, nn.Linear)


def default_targets(model: nn.Module) -> list[str]:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in DEFAULT_TARGET_MODULES:
        raise ValueError(
            f"no default target_modules for model_type {model_type!r}; pass target_modules "
            f"explicitly. Known defaults: {sorted(DEFAULT_TARGET_MODULES)}. "
            f"Linear layers of this model: {_linear_summary(model)}"
        )
    return DEFAULT_TARGET_MODULES[model_type]


def _linear_summary(model: nn.Module, limit: int = 40) -> str:
    names = [n for n, m in model.named_modules() if _is_linear(m)]
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") or f".{p}." in f".{name}." for p in prefixes)


def find_targets(
    model: nn.Module,
    target_modules: list | str | None,
    modules_to_save: list | None = None,
) -> list[str]:
    """Names of the Linear/Conv1D modules to adapt.

    ``target_modules``: a list of names matched as suffixes ("query" matches
    "...attention.self.query"), a regex string (full match on the module name), or None for
    the architecture default. Modules inside ``modules_to_save`` or a task head are skipped by
    lists and defaults (a regex is taken literally)."""
    explicit_regex = isinstance(target_modules, str)
    keys = default_targets(model) if target_modules is None else target_modules
    excluded = tuple(modules_to_save or ()) + (() if explicit_regex else HEAD_NAMES)
    found = []
    for name, module in model.named_modules():
        if not name or not _is_linear(module) or _under(name, excluded):
            continue
        if explicit_regex:
            hit = re.fullmatch(keys, name) is not None
        else:
            hit = any(name == k or name.endswith("." + k) for k in keys)
        if hit:
            found.append(name)
    if not found:
        raise ValueError(
            f"target_modules {keys!r} matched no Linear layer of {type(model).__name__}. "
            f"Its Linear layers are: {_linear_summary(model)}. Pass names from this list "
            "(suffixes) or a regex."
        )
    return found


def head_modules(model: nn.Module) -> list[str]:
    """Top-level task heads present in the model (the default ``modules_to_save``)."""
    children = dict(model.named_children())
    return [
        h for h in ("classifier", "score", "classification_head", "qa_outputs") if h in children
    ]
