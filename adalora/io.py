"""Save / load adapters in PEFT's on-disk format, so either library reads the other's files.

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
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import AdaLoraConfig, config_from_dict

PREFIX = "base_model.model."
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


def _param_keys(config) -> tuple[str, ...]:
    return (
        ("lora_A", "lora_B", "lora_E")
        if isinstance(config, AdaLoraConfig)
        else ("lora_A.weight", "lora_B.weight")
    )


def adapter_state_dict(model, resize: bool = True) -> dict[str, torch.Tensor]:
    """Adapter weights under PEFT's key names; with ``resize`` only the kept triplets."""
    config = model.config_
    pattern = config.rank_pattern if (resize and isinstance(config, AdaLoraConfig)) else None
    sd = {}
    for name, layer in model.adapter_layers().items():
        a, b = layer.lora_A.detach(), layer.lora_B.detach()
        e = layer.lora_E.detach() if isinstance(config, AdaLoraConfig) else None
        if pattern is not None and layer.r == config.init_r:
            keep = torch.as_tensor(pattern[f"{name}.lora_E"], dtype=torch.bool, device=a.device)
            a, b, e = a[keep], b[:, keep], e[keep]
        tensors = (a, b, e) if e is not None else (a, b)
        for key, t in zip(_param_keys(config), tensors):
            sd[f"{PREFIX}{name}.{key}"] = t.contiguous().cpu()
    for m in config.modules_to_save or ():
        for pname, p in model.model.get_submodule(m).named_parameters():
            sd[f"{PREFIX}{m}.{pname}"] = p.detach().contiguous().cpu()
    return sd


def peft_config_dict(model) -> dict:
    """adapter_config.json contents that PEFT 0.21 accepts."""
    c = model.config_
    d = {k: getattr(c, k) for k in _PEFT_KEYS if hasattr(c, k)}
    d["peft_type"] = c.peft_type
    d["bias"] = "none"
    d["inference_mode"] = True
    # exact module names: PEFT matches list entries as suffixes, so this re-creates our layers
    d["target_modules"] = list(model._layer_names)
    base = getattr(getattr(model.model, "config", None), "_name_or_path", None)
    d["base_model_name_or_path"] = base or None
    if isinstance(c, AdaLoraConfig):
        if c.rank_pattern is not None:
            d["rank_pattern"] = {k: [bool(x) for x in v] for k, v in c.rank_pattern.items()}
        if d.get("total_step") is None:
            # PEFT refuses total_step=None even for inference; the value does not affect loading
            d["total_step"] = c.tinit + c.tfinal + 1
        d["lora_alpha"] = c.lora_alpha
    return d


def save_adapter(model, path, resize: bool = True) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    c = model.config_
    if model.rankallocator is None and isinstance(c, AdaLoraConfig) and not resize:
        raise ValueError("this model was resized: save it with resize=True.")
    sd = adapter_state_dict(model, resize=resize)
    _atomic(
        path / "adapter_model.safetensors",
        lambda tmp: save_file(sd, tmp, metadata={"format": "pt"}),
    )
    _write_json(path / "adapter_config.json", peft_config_dict(model))
    ours = c.to_dict()
    if ours.get("rank_pattern") is not None:
        ours["rank_pattern"] = {k: [bool(x) for x in v] for k, v in c.rank_pattern.items()}
    ours["resized"] = bool(resize and isinstance(c, AdaLoraConfig) and c.rank_pattern is not None)
    ours["target_module_names"] = list(model._layer_names)
    _write_json(path / "adalora_config.json", ours)
    state_file = path / "allocator_state.safetensors"
    if not resize and model.rankallocator is not None:
        st = {k: v.contiguous().cpu() for k, v in model.rankallocator.state_dict().items()}
        _atomic(state_file, lambda tmp: save_file(st, tmp))
    elif state_file.exists():
        state_file.unlink()  # a stale state would not match the weights just written


def load_adapter(base_model, path, adapter_name: str = "default", is_trainable: bool = False):
    """Our folders and PEFT's (LoRA or AdaLoRA) alike. Resizes to rank_pattern when the
    weights were saved resized; restores allocator state when it was saved."""
    from .model import AdaLoraModel

    path = Path(path)
    ours, peft = path / "adalora_config.json", path / "adapter_config.json"
    if not ours.exists() and not peft.exists():
        raise FileNotFoundError(
            f"{path} holds no adalora_config.json or adapter_config.json: "
            "not an adapter folder saved by save_pretrained."
        )
    raw = json.loads((ours if ours.exists() else peft).read_text())
    names = raw.get("target_module_names")
    config = config_from_dict(raw)
    if names:  # re-create exactly the saved layers, whatever the original pattern was
        config.target_modules = "^(" + "|".join(n.replace(".", r"\.") for n in names) + ")$"
    if config.modules_to_save:
        # PEFT's SEQ_CLS config lists every head name it knows (["classifier", "score"]);
        # keep only the ones this model has
        present = dict(base_model.named_modules())
        config.modules_to_save = [m for m in config.modules_to_save if m in present]
    pattern = getattr(config, "rank_pattern", None)  # LoraConfig has none
    pattern = (
        {k.replace(f".{adapter_name}", ""): v for k, v in pattern.items()} if pattern else None
    )
    if isinstance(config, AdaLoraConfig):
        config.rank_pattern = pattern
    model = AdaLoraModel(base_model, config, adapter_name)
    sd = load_file(str(path / "adapter_model.safetensors"))
    resized = (
        raw.get("resized", pattern is not None) if isinstance(config, AdaLoraConfig) else False
    )
    if resized and pattern is not None:
        model.resize_modules_by_rank_pattern(pattern)
    model_sd = model.model.state_dict()
    expected = set(adapter_state_dict(model, resize=False))
    missing, unexpected = expected - set(sd), set(sd) - expected
    if missing or unexpected:
        raise ValueError(
            f"adapter weights in {path} do not match the model: missing "
            f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    with torch.no_grad():
        for key, t in sd.items():
            model_sd[
                key[len(PREFIX) :]
                .replace("lora_A.weight", "lora_A")
                .replace("lora_B.weight", "lora_B")
            ].copy_(t)
    state_file = path / "allocator_state.safetensors"
    if state_file.exists() and model.rankallocator is not None:
        model.rankallocator.load_state_dict(load_file(str(state_file)), strict=True)
    if not is_trainable:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
    return model
