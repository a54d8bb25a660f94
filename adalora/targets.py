"""Which layers get adapters: PEFT 0.21's matching rules, per-architecture defaults, clear errors.

An explicit ``target_modules`` selects exactly the modules that PEFT 0.21 selects for the same
spec (``peft.tuners.tuners_utils.check_target_module_exists`` and
``_maybe_include_all_linear_layers``):

- a list of names: a module matches if its full name is in the list or ends with
  ``"." + entry`` (so "dense" matches every ``*.dense``, the pooler's included);
- a string: ``re.fullmatch`` on the full module name;
- ``"all-linear"`` (any case): every ``nn.Linear`` / ``Conv1D`` except the output layer
  (``model.get_output_embeddings()``, e.g. ``lm_head``) and, for ``task_type="SEQ_CLS"``
  models without one, the first of the top-level ``score`` / ``classifier`` modules (the module
  itself: the children of a container head such as RoBERTa's are not excluded by this rule);
- never a module inside ``modules_to_save``: PEFT drops every name that matches
  ``(^|.*\\.)<entry>($|\\..*)``, i.e. the entry as a dotted component anywhere in the name.

A matched module must be an ``nn.Linear`` or transformers' ``Conv1D``; anything else raises,
as in PEFT (PEFT's AdaLoRA also takes ``nn.Conv2d``, this library does not).

``target_modules=None`` keeps this library's own rule: all six matrix types of every layer
(``DEFAULT_TARGET_MODULES``, the paper's default) matched as suffixes, never inside a task head
(``TASK_HEADS``) or the output layer, non-Linear matches skipped.
"""

from __future__ import annotations

import re

from torch import nn

# All six matrix types of every layer (Wq, Wk, Wv, Wo, Wf1, Wf2), the paper's default.
_BERT_LIKE = [
    "query",
    "key",
    "value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
]
_DECODER = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
_BART_LIKE = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
_T5_LIKE = ["q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo"]
DEFAULT_TARGET_MODULES = {
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
    "xlm-roberta": _BERT_LIKE,
    "electra": _BERT_LIKE,
    # DeBERTa v2 and v3
    "deberta-v2": ["query_proj", "key_proj", "value_proj", *_BERT_LIKE[3:]],
    "deberta": ["in_proj", *_BERT_LIKE[3:]],
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
    "bart": _BART_LIKE,
    "mbart": _BART_LIKE,
    "pegasus": _BART_LIKE,
    "t5": _T5_LIKE,
    "mt5": _T5_LIKE,
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "llama": _DECODER,
    "mistral": _DECODER,
    "qwen2": _DECODER,
}

# Top-level task heads: trained in full through ``modules_to_save`` (``head_modules`` picks the
# ones a model has; that is the default ``modules_to_save``) and never adapted by the default.
TASK_HEADS = ("classifier", "score", "classification_head", "qa_outputs")

ALL_LINEAR = "all-linear"  # PEFT's INCLUDE_LINEAR_LAYERS_SHORTHAND
_SEQ_CLS_HEADS = ("score", "classifier")  # PEFT's SEQ_CLS_HEAD_NAMES, in its order


def _conv1d_class():
    try:  # transformers' GPT-2 style Conv1D (weight stored in x out)
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover
        return None
    return Conv1D


def _is_linear(m: nn.Module) -> bool:
    if isinstance(m, nn.Linear):
        return True
    conv1d = _conv1d_class()
    return conv1d is not None and isinstance(m, conv1d)


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


def _name_of(model: nn.Module, module: nn.Module) -> str | None:
    return next((n for n, m in model.named_modules() if m is module), None)


def _is_transformers_model(model: nn.Module) -> bool:
    """PEFT applies its output-layer and head rules to transformers models only."""
    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, PreTrainedModel)


def _output_layer(model: nn.Module) -> str | None:
    """Name of the output (vocabulary) layer of a transformers model, if it has one."""
    if not _is_transformers_model(model):
        return None
    out = model.get_output_embeddings()
    return None if out is None else _name_of(model, out)


def is_all_linear(target_modules) -> bool:
    return isinstance(target_modules, str) and target_modules.lower() == ALL_LINEAR


def all_linear_names(model: nn.Module, task_type: str | None = None) -> set[str]:
    """PEFT's ``"all-linear"``: every Linear / Conv1D but the output layer (or, for SEQ_CLS
    without one, the top-level ``score`` or ``classifier`` module itself)."""
    names = {n for n, m in model.named_modules() if _is_linear(m)}
    out = _output_layer(model)
    if out is not None:
        names.discard(out)
    elif task_type == "SEQ_CLS" and _is_transformers_model(model):
        for h in _SEQ_CLS_HEADS:
            head = getattr(model, h, None)
            if head is not None:
                names.discard(_name_of(model, head))
                break
    return names


def in_modules_to_save(name: str, modules_to_save) -> bool:
    """PEFT's guard: adapters never go inside a module to save (entries are regex fragments)."""
    return any(re.match(rf"(^|.*\.){m}($|\..*)", name) for m in modules_to_save or ())


def _under(name: str, prefixes) -> bool:
    return any(f".{p}." in f".{name}." for p in prefixes)


def find_targets(
    model: nn.Module,
    target_modules: list | set | tuple | str | None,
    modules_to_save: list | None = None,
    task_type: str | None = None,
) -> list[str]:
    """Names of the modules to adapt, in ``named_modules()`` order.

    ``target_modules``: a list of names (a full module name or a suffix after a dot: "query"
    matches "...attention.self.query"), a regex string (``re.fullmatch`` on the full name),
    ``"all-linear"``, or None for the architecture default. With an explicit spec the result is
    PEFT 0.21's selection for the same ``target_modules``, ``modules_to_save`` and
    ``task_type`` (see the module docstring); a matched module that is not a Linear / Conv1D
    raises ``ValueError``."""
    if target_modules is None:
        keys = default_targets(model)
        out = _output_layer(model)
        excluded = list(TASK_HEADS) + ([out] if out else [])

        def hit(name):
            return any(name == k or name.endswith("." + k) for k in keys) and not _under(
                name, excluded
            )

    elif is_all_linear(target_modules):
        keys = all_linear_names(model, task_type)

        def hit(name):
            return name in keys

    elif isinstance(target_modules, str):
        keys = target_modules

        def hit(name):
            return re.fullmatch(keys, name) is not None

    else:
        keys = list(target_modules)

        def hit(name):
            return name in keys or any(name.endswith("." + k) for k in keys)

    found, saved = [], []
    for name, module in model.named_modules():
        if not name or not hit(name):
            continue
        if in_modules_to_save(name, modules_to_save):
            saved.append(name)
            continue
        if not _is_linear(module):
            if target_modules is None:
                continue  # the default's suffixes are meant for Linear layers only
            raise ValueError(
                f"target module {name!r} ({type(module).__name__}) is not supported: only "
                "torch.nn.Linear and transformers' Conv1D can be adapted. Narrow "
                f"target_modules {target_modules!r} (a longer suffix or a regex). Linear "
                f"layers of this model: {_linear_summary(model)}"
            )
        found.append(name)
    if not found:
        why = (
            f" (matches inside modules_to_save {list(modules_to_save)} are never adapted: "
            f"{saved[:5]})"
            if saved
            else ""
        )
        raise ValueError(
            f"target_modules {target_modules if target_modules is not None else keys!r} "
            f"matched no Linear layer of {type(model).__name__}{why}. Its Linear layers are: "
            f"{_linear_summary(model)}. Pass names from this list (suffixes), a regex or "
            f"{ALL_LINEAR!r}."
        )
    return found


def head_modules(model: nn.Module) -> list[str]:
    """Top-level task heads present in the model (the default ``modules_to_save``)."""
    children = dict(model.named_children())
    return [h for h in TASK_HEADS if h in children]
