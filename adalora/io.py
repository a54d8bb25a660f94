"""Adapter folders in PEFT's on-disk format, so either library reads the other's files.

A saved folder holds:
    adapter_model.safetensors   "base_model.model.<module>.lora_A|lora_B|lora_E" (AdaLoRA) or
                                "...lora_A.weight|lora_B.weight" (LoRA), plus the parameters of
                                modules_to_save as "base_model.model.<param name>"
    adapter_config.json         PEFT's config keys only (PeftModel.from_pretrained reads it)
    adalora_config.json         our full config (variant, score, schedule, ...)
    allocator_state.safetensors with resize=False only: the allocator's EMAs, mask and step,
                                so that training resumes exactly where it stopped
With resize=True (the default, PEFT's behaviour) only the kept triplets are written and the
loader resizes each module to its rank in rank_pattern (rank 0 allowed).

Reading is strict: a missing, unreadable or corrupted file, a config that does not validate, a
PEFT feature this library does not implement, and weights that do not fit the model (modules it
does not have, missing or unexpected parameters, other shapes) each raise one error naming the
file and the parameter, before any weight is loaded.

Pure functions on configs, dicts of tensors and paths: ``AdaLoraModel.save_pretrained`` and
``from_pretrained`` (adalora/model.py) build on them; this module does not import the model.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import AdaLoraConfig, config_from_dict

PREFIX = "base_model.model."
WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
OUR_CONFIG = "adalora_config.json"
ALLOCATOR_STATE = "allocator_state.safetensors"
_PEFT_KEYS = (
    "init_r",
    "target_r",
    "lora_alpha",
    "lora_dropout",
    "tinit",
    "tfinal",
    "deltaT",
    "beta1",
    "beta2",
    "orth_reg_weight",
    "total_step",
    "r",
    "fan_in_fan_out",
    "modules_to_save",
    "task_type",
)
# PEFT config keys that change which modules are adapted but that this library does not model:
# when a PEFT folder sets one, the adapted modules are read from its weights instead.
_PEFT_MATCHING_KEYS = ("exclude_modules", "layers_to_transform", "layers_pattern")
# PEFT config keys that change what a saved adapter computes and that this library does not
# implement: a folder that sets one is refused rather than loaded as something else.
_PEFT_UNSUPPORTED = ("use_dora", "use_rslora", "lora_bias")


def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_json(path: Path, data: dict) -> None:
    def w(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")

    _atomic(path, w)


def param_keys(config) -> tuple[str, ...]:
    """Per-module weight names in PEFT's files: bare AdaLoRA parameters, LoRA's Linear weights."""
    return (
        ("lora_A", "lora_B", "lora_E")
        if isinstance(config, AdaLoraConfig)
        else ("lora_A.weight", "lora_B.weight")
    )


def file_key_to_param(key: str) -> str:
    """'base_model.model.x.lora_A.weight' -> 'x.lora_A' (a parameter name of the base model)."""
    return key[len(PREFIX) :].replace("lora_A.weight", "lora_A").replace("lora_B.weight", "lora_B")


def _bool_pattern(pattern: dict) -> dict:
    return {k: [bool(x) for x in v] for k, v in pattern.items()}


def peft_config_dict(config, layer_names: list[str], base_name_or_path: str | None) -> dict:
    """adapter_config.json contents that PEFT 0.21 accepts."""
    d = {k: getattr(config, k) for k in _PEFT_KEYS if hasattr(config, k)}
    d["peft_type"] = config.peft_type
    d["bias"] = "none"
    d["inference_mode"] = True
    # exact module names: PEFT matches list entries as full names or suffixes, so this
    # re-creates our layers whatever spec selected them
    d["target_modules"] = list(layer_names)
    d["base_model_name_or_path"] = base_name_or_path or None
    if not isinstance(config, AdaLoraConfig):  # LoRA: per-module ranks and alphas
        d["rank_pattern"] = dict(config.rank_pattern or {})
        d["alpha_pattern"] = dict(config.alpha_pattern or {})
    if isinstance(config, AdaLoraConfig):
        if config.rank_pattern is not None:
            d["rank_pattern"] = _bool_pattern(config.rank_pattern)
        if d.get("total_step") is None:
            # PEFT refuses total_step=None even for inference; the value does not affect loading
            d["total_step"] = config.tinit + config.tfinal + 1
    return d


def our_config_dict(config, layer_names: list[str], resized: bool) -> dict:
    """adalora_config.json contents: the full config, the adapted module names, resized."""
    ours = config.to_dict()
    if isinstance(config, AdaLoraConfig) and config.rank_pattern is not None:
        ours["rank_pattern"] = _bool_pattern(config.rank_pattern)
    ours["resized"] = bool(resized)
    ours["target_module_names"] = list(layer_names)
    return ours


def write_adapter(
    path,
    weights: dict[str, torch.Tensor],
    peft_config: dict,
    our_config: dict,
    allocator_state: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write a folder atomically, file by file. Without ``allocator_state`` a stale state file
    from an earlier save is removed (it would not match the weights just written)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
    _atomic(path / WEIGHTS, lambda tmp: save_file(weights, tmp, metadata={"format": "pt"}))
    _write_json(path / PEFT_CONFIG, peft_config)
    _write_json(path / OUR_CONFIG, our_config)
    state_file = path / ALLOCATOR_STATE
    if allocator_state is not None:
        st = {k: v.contiguous().cpu() for k, v in allocator_state.items()}
        _atomic(state_file, lambda tmp: save_file(st, tmp))
    elif state_file.exists():
        state_file.unlink()


@dataclass
class SavedAdapter:
    """What a folder holds, ready for AdaLoraModel: the config to build it with (targets pinned
    to the saved modules where known), whether the weights are resized to rank_pattern, the
    weights under PEFT's key names, the allocator state if one was saved, and the base model it
    was saved from (adapter_config.json's base_model_name_or_path, for error messages)."""

    config: object  # AdaLoraConfig | LoraConfig
    resized: bool
    weights: dict[str, torch.Tensor]
    allocator_state: dict[str, torch.Tensor] | None
    base_model: str | None = None


def _read_json(file: Path) -> dict:
    try:
        raw = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{file} is not valid JSON ({e}): the adapter folder is corrupted. "
            "Save the adapter again with save_pretrained."
        ) from None
    if not isinstance(raw, dict):
        raise ValueError(
            f"{file} holds a JSON {type(raw).__name__}, not an object: it is not an adapter "
            "config. Save the adapter again with save_pretrained."
        )
    return raw


def _read_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except (SafetensorError, OSError) as e:
        raise ValueError(
            f"{file} is not a readable safetensors file ({e}): it is truncated or corrupted. "
            "Copy or save the adapter again."
        ) from None


def _origin(saved_from: str | None, model_name: str | None) -> str:
    if saved_from and model_name and saved_from != model_name:
        return f" (saved from {saved_from!r}, this model is {model_name!r})"
    return f" (saved from {saved_from!r})" if saved_from else ""


def read_adapter(path, module_names, adapter_name: str = "default") -> SavedAdapter:
    """Read our folders and PEFT's (LoRA or AdaLoRA) alike. ``module_names``: the names of the
    base model's modules (to refuse an adapter of modules the model does not have, and to keep
    only the modules_to_save entries that it has). Raises FileNotFoundError / ValueError
    naming the file (module docstring)."""
    path = Path(path)
    if not path.is_dir():
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise FileNotFoundError(
            f"adapter folder {path} {what}: pass the folder that save_pretrained wrote "
            f"(holding {WEIGHTS} and {PEFT_CONFIG})."
        )
    ours, peft = path / OUR_CONFIG, path / PEFT_CONFIG
    if not ours.exists() and not peft.exists():
        raise FileNotFoundError(
            f"{path} holds no {OUR_CONFIG} or {PEFT_CONFIG}: "
            "not an adapter folder saved by save_pretrained. Pass the folder that it wrote."
        )
    config_file = ours if ours.exists() else peft
    raw = _read_json(config_file)
    peft_raw = _read_json(peft) if peft.exists() else raw
    base_model = peft_raw.get("base_model_name_or_path") or None
    for key in _PEFT_UNSUPPORTED:
        if peft_raw.get(key):
            raise ValueError(
                f"{peft}: {key}={peft_raw[key]!r} is a PEFT feature this library does not "
                "implement, so these weights would compute something else here. Load the "
                "adapter with PEFT."
            )
    if peft_raw.get("bias", "none") != "none":
        raise ValueError(
            f"{peft}: bias={peft_raw['bias']!r} (trained biases) is a PEFT feature this library "
            "does not implement. Load the adapter with PEFT."
        )
    weights_file = path / WEIGHTS
    if not weights_file.exists():
        old = (path / "adapter_model.bin").exists()
        raise FileNotFoundError(
            f"{weights_file} is missing: the folder has its config but not its weights"
            + (" (only adapter_model.bin, PEFT's older pickle format)" if old else "")
            + ". Save the adapter again with save_pretrained"
            + (" (PEFT: safe_serialization=True)." if old else ".")
        )
    weights = _read_tensors(weights_file)
    foreign = sorted(k for k in weights if not k.startswith(PREFIX))
    if foreign:
        raise ValueError(
            f"{weights_file}: parameter {foreign[0]!r} is not an adapter parameter (PEFT's names "
            f"start with {PREFIX!r}): not an adapter file. Save the adapter again."
        )
    adapted = sorted({k[len(PREFIX) :].split(".lora_")[0] for k in weights if ".lora_" in k})
    present = set(module_names)
    absent = [n for n in adapted if n not in present]
    if absent:
        raise ValueError(
            f"{weights_file}: the adapter adapts {len(absent)} module(s) that this model does not "
            f"have, e.g. {absent[0]!r}: it was saved from another base model"
            f"{_origin(base_model, None)}. Load it into the model it was saved from."
        )
    names = raw.get("target_module_names")
    if not names and any(raw.get(k) for k in _PEFT_MATCHING_KEYS):
        names = adapted
    try:
        config = config_from_dict(raw)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{config_file}: {e}") from None
    if names:  # re-create exactly the saved layers, whatever the original spec was
        config.target_modules = "^(" + "|".join(n.replace(".", r"\.") for n in names) + ")$"
    if config.modules_to_save:
        # PEFT's SEQ_CLS config lists every head name it knows (["classifier", "score"]);
        # keep only the ones this model has
        config.modules_to_save = [m for m in config.modules_to_save if m in present]
    pattern = getattr(config, "rank_pattern", None)  # LoraConfig has none
    if pattern:
        pattern = {k.replace(f".{adapter_name}", ""): v for k, v in pattern.items()}
        config.rank_pattern = pattern
    resized = isinstance(config, AdaLoraConfig) and bool(raw.get("resized", bool(pattern)))
    if resized and pattern:
        unmasked = [n for n in adapted if f"{n}.lora_E" not in pattern and n not in pattern]
        if unmasked:
            raise ValueError(
                f"{config_file}: rank_pattern has no entry for module {unmasked[0]!r}, whose "
                f"resized weights are in {WEIGHTS}: the config does not match the weights. "
                "Save the adapter again."
            )
    state_file = path / ALLOCATOR_STATE
    state = _read_tensors(state_file) if state_file.exists() else None
    return SavedAdapter(config, resized and bool(pattern), weights, state, base_model)


def check_tensors(
    file,
    tensors: dict[str, torch.Tensor],
    expected: dict[str, torch.Tensor],
    saved_from: str | None = None,
    model_name: str | None = None,
) -> None:
    """Raise ValueError naming ``file`` and the parameter unless ``tensors`` (read from it) has
    exactly the names of ``expected`` (the model's tensors, meta ones included), each with the
    same shape and kind (floating point, integer or bool)."""
    origin = _origin(saved_from, model_name)
    fix = "Load it into the model it was saved from, with the config it was saved with."
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise ValueError(
            f"{file}: this model's parameter {missing[0]} is missing from the file "
            f"({len(missing)} missing in all): it was saved from another model or config"
            f"{origin}. {fix}"
        )
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise ValueError(
            f"{file}: parameter {unexpected[0]} is not in this model ({len(unexpected)} such): "
            f"it was saved from another model or config{origin}. {fix}"
        )
    for key in sorted(tensors):
        got, want = tensors[key], expected[key]
        if got.shape != want.shape:
            raise ValueError(
                f"{file}: parameter {key} has shape {tuple(got.shape)}, this model's has "
                f"{tuple(want.shape)}: it was saved from another base model or config{origin}. "
                f"{fix}"
            )
        if (got.is_floating_point(), got.dtype == torch.bool) != (
            want.is_floating_point(),
            want.dtype == torch.bool,
        ):
            raise ValueError(
                f"{file}: parameter {key} holds {got.dtype} values, this model's is "
                f"{want.dtype}: the file is corrupted or not an adapter. Save the adapter again."
            )
