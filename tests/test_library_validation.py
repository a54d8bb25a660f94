"""The library refuses bad input with one clear exception naming the field (or file and
parameter), the value, the problem and the fix: config fields (NaN, non-integers, bools where a
number is meant), AdaLoraModel's and update_and_allocate's arguments, and adapter folders that
are corrupted or were saved from another model (with and without low_cpu_mem_usage). Each case
asserts the exact message; a regex only where it holds a temporary path or a library's own text.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from adalora_helpers import batches, randomize_adapters, tiny_bert, trainable
from safetensors.torch import load_file, save_file

from adalora import AdaLoraConfig, AdaLoraModel, LoraConfig
from adalora.layers import _AdapterLayer

NAN, INF = math.nan, math.inf
Q0 = "bert.encoder.layer.0.attention.self.query"


# ---------------------------------------------------------------- config fields
def _fix_int(name, example):
    return f"Pass an int such as {name}={example}."


TOTAL_STEP = (
    "total_step must be a positive integer (the number of optimizer steps of the run), got {}. "
    "Pass an int, or leave it None in the config for AdaLoraCallback to take it from the Trainer."
)
ORTH = (
    "orth_reg_weight must be >= 0 and finite, got {}. Pass 0 to turn the orthogonal "
    "regulariser off, or a weight such as 0.5 (the default)."
)
DROPOUT = (
    "lora_dropout must be in [0, 1) (a dropout probability), got {}. Pass 0.0 for no dropout, "
    "or a probability such as 0.1."
)
ALPHA = "lora_alpha must be a finite number, got {}. Pass a number such as 8 (the default)."
INIT_R = "init_r must be a positive integer (the rank every adapter starts at), got {}. " + (
    _fix_int("init_r", 12)
)
TARGET_R = (
    "target_r must be >= 0 and finite (the average final rank per module), got {}. "
    "Pass a number such as target_r=8."
)
TOTAL_RANK = (
    "target_total_rank must be >= 0 and an integer, or None (the final total rank b(T) over all "
    "modules), got {}. Pass an int, or None for target_r x the number of modules."
)
DELTA_T = "deltaT must be an integer >= 1 (steps between two maskings), got {}. " + _fix_int(
    "deltaT", 10
)
ADA_PATTERN_FIX = "Pass the rank_pattern that update_and_allocate returned, or None."
ADALORA_CASES = {
    "orth_reg_weight nan": ({"orth_reg_weight": NAN}, ORTH.format("nan")),
    "orth_reg_weight inf": ({"orth_reg_weight": INF}, ORTH.format("inf")),
    "orth_reg_weight text": ({"orth_reg_weight": "0.1"}, ORTH.format("'0.1'")),
    "lora_dropout nan": ({"lora_dropout": NAN}, DROPOUT.format("nan")),
    "lora_alpha nan": ({"lora_alpha": NAN}, ALPHA.format("nan")),
    "lora_alpha bool": ({"lora_alpha": True}, ALPHA.format("True")),
    "beta1 nan": (
        {"beta1": NAN},
        "beta1 must be in (0, 1) (an EMA coefficient), got nan. "
        "Pass a number such as beta1=0.85 (the default).",
    ),
    "beta2 text": (
        {"beta2": "0.85"},
        "beta2 must be in (0, 1) (an EMA coefficient), got '0.85'. "
        "Pass a number such as beta2=0.85 (the default).",
    ),
    "target_r nan": ({"target_r": NAN}, TARGET_R.format("nan")),
    "init_r float": ({"init_r": 4.0, "target_r": 2}, INIT_R.format("4.0")),
    "init_r bool": ({"init_r": True, "target_r": 1}, INIT_R.format("True")),
    "target_total_rank float": ({"target_total_rank": 2.5}, TOTAL_RANK.format("2.5")),
    "target_total_rank bool": ({"target_total_rank": False}, TOTAL_RANK.format("False")),
    "deltaT float": ({"deltaT": 2.5}, DELTA_T.format("2.5")),
    "deltaT bool": ({"deltaT": True}, DELTA_T.format("True")),
    "tinit float": (
        {"tinit": 1.5},
        "tinit must be an integer >= 0 (a number of steps), got 1.5. " + _fix_int("tinit", 0),
    ),
    "tfinal negative": (
        {"tfinal": -1},
        "tfinal must be an integer >= 0 (a number of steps), got -1. " + _fix_int("tfinal", 0),
    ),
    "total_step float": ({"total_step": 10.0}, TOTAL_STEP.format("10.0")),
    "total_step bool": ({"total_step": True}, TOTAL_STEP.format("True")),
    "total_step nan": ({"total_step": NAN}, TOTAL_STEP.format("nan")),
    "total_step text": ({"total_step": "100"}, TOTAL_STEP.format("'100'")),
    "prune_lora text": (
        {"prune_lora": "no"},
        "prune_lora must be True or False, got 'no'. Pass prune_lora=True or prune_lora=False.",
    ),
    "fan_in_fan_out int": (
        {"fan_in_fan_out": 1},
        "fan_in_fan_out must be True or False, got 1. "
        "Pass fan_in_fan_out=True or fan_in_fan_out=False.",
    ),
    "modules_to_save string": (
        {"modules_to_save": "classifier"},
        "modules_to_save must be None or a list of module names, got 'classifier'. Pass a list "
        "such as ['classifier'], [] for none, or None for the model's task heads.",
    ),
    "rank_pattern list": (
        {"rank_pattern": [True, False]},
        "rank_pattern must be None or a dict {'<module>.lora_E': [bool, ...]}, got "
        f"[True, False]. {ADA_PATTERN_FIX}",
    ),
    "rank_pattern wrong length": (
        {"init_r": 4, "target_r": 2, "rank_pattern": {"q.lora_E": [True, False]}},
        "rank_pattern['q.lora_E'] must be a list of 4 booleans (init_r: one per triplet), got "
        f"[True, False]. {ADA_PATTERN_FIX}",
    ),
    "rank_pattern not booleans": (
        {"init_r": 2, "target_r": 1, "rank_pattern": {"q.lora_E": [2, 0]}},
        "rank_pattern['q.lora_E'] must be a list of 2 booleans (init_r: one per triplet), got "
        f"[2, 0]. {ADA_PATTERN_FIX}",
    ),
    "variant list": (
        {"variant": ["peft"]},
        "variant must be one of ['authors', 'paper', 'peft'], got ['peft'].",
    ),
}


@pytest.mark.parametrize("kw, msg", ADALORA_CASES.values(), ids=ADALORA_CASES)
def test_bad_adalora_config(kw, msg):
    with pytest.raises(ValueError) as e:
        AdaLoraConfig(**kw)
    assert str(e.value) == msg


RANK_FIX = (
    "Pass an int rank per module, e.g. {'query': 4}; "
    "leave a module out of target_modules instead of rank 0."
)
LORA_R = "LoRA rank r must be a positive integer, got {}. Pass an int such as r=8."
LORA_CASES = {
    "r bool": ({"r": True}, LORA_R.format("True")),
    "r float": ({"r": 2.0}, LORA_R.format("2.0")),
    "r nan": ({"r": NAN}, LORA_R.format("nan")),
    "lora_alpha inf": ({"lora_alpha": INF}, ALPHA.format("inf")),
    "lora_dropout nan": ({"lora_dropout": NAN}, DROPOUT.format("nan")),
    "rank_pattern list": (
        {"rank_pattern": [("query", 2)]},
        "rank_pattern must be None or a dict {module name or suffix: integer}, got "
        f"[('query', 2)]. {RANK_FIX}",
    ),
    "rank_pattern float": (
        {"rank_pattern": {"query": 2.5}},
        f"rank_pattern values must be positive integers, got {{'query': 2.5}}. {RANK_FIX}",
    ),
    "rank_pattern bool": (
        {"rank_pattern": {"query": True}},
        f"rank_pattern values must be positive integers, got {{'query': True}}. {RANK_FIX}",
    ),
    "rank_pattern zero": (
        {"rank_pattern": {"query": 0}},
        f"rank_pattern values must be positive integers, got {{'query': 0}}. {RANK_FIX}",
    ),
    "alpha_pattern nan": (
        {"alpha_pattern": {"query": NAN}},
        "alpha_pattern values must be positive numbers, got {'query': nan}. "
        "Pass a finite lora_alpha per module, e.g. {'query': 16}.",
    ),
}


@pytest.mark.parametrize("kw, msg", LORA_CASES.values(), ids=LORA_CASES)
def test_bad_lora_config(kw, msg):
    with pytest.raises(ValueError) as e:
        LoraConfig(**kw)
    assert str(e.value) == msg


def test_check_schedule_refuses_a_non_integer_total_step():
    with pytest.raises(ValueError) as e:
        AdaLoraConfig().check_schedule(12.5)
    assert str(e.value) == TOTAL_STEP.format("12.5")


def test_numpy_integers_become_ints(tmp_path):
    """Integers computed with numpy are accepted and stored as plain ints (JSON-serialisable),
    so a config built from them saves; the values and the defaults are unchanged."""
    c = AdaLoraConfig(
        init_r=np.int64(4),
        target_r=2,
        tinit=np.int32(1),
        tfinal=np.int64(2),
        total_step=np.int64(8),
    )
    assert [type(getattr(c, k)) for k in ("init_r", "tinit", "tfinal", "total_step")] == [int] * 4
    assert (c.init_r, c.tinit, c.tfinal, c.total_step, c.deltaT) == (4, 1, 2, 8, 1)
    AdaLoraModel(tiny_bert(), c).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "adalora_config.json").read_text())["total_step"] == 8
    lc = LoraConfig(r=np.int64(2), rank_pattern={"query": np.int64(3)})
    assert type(lc.r) is int and type(lc.rank_pattern["query"]) is int
    f = AdaLoraConfig(orth_reg_weight=np.float32(0.25), lora_alpha=16)
    assert type(f.orth_reg_weight) is float and f.orth_reg_weight == 0.25
    assert type(f.lora_alpha) is int and f.lora_alpha == 16  # plain ints and floats kept as given


def test_fields_set_after_construction_are_checked_by_the_model():
    c = AdaLoraConfig(init_r=4, target_r=2)
    c.orth_reg_weight = NAN  # would silently turn the regulariser off (nan > 0 is False)
    with pytest.raises(ValueError) as e:
        AdaLoraModel(tiny_bert(), c)
    assert str(e.value) == ORTH.format("nan")


# ---------------------------------------------------------------- AdaLoraModel(...)
NEW = "AdaLoraModel(model, config): "
CONFIG_TYPE = (
    NEW + "config must be an AdaLoraConfig or a LoraConfig, got {}. Build one "
    "(AdaLoraConfig(**d), LoraConfig(**d)), or convert a to_dict() / adapter_config.json dict "
    "with adalora.config.config_from_dict(d)."
)
MODEL_CASES = {
    "config dict": (
        lambda: (tiny_bert(), {"init_r": 4}),
        {},
        CONFIG_TYPE.format("dict"),
    ),
    "config None": (lambda: (tiny_bert(), None), {}, CONFIG_TYPE.format("NoneType")),
    "model name": (
        lambda: ("bert-base-uncased", AdaLoraConfig()),
        {},
        NEW + "model must be a torch.nn.Module, got str. Pass the loaded model "
        "(e.g. AutoModelForSequenceClassification.from_pretrained(name)).",
    ),
    "adapter_name empty": (
        lambda: (tiny_bert(), AdaLoraConfig()),
        {"adapter_name": ""},
        NEW + "adapter_name must be a non-empty string, got ''. Pass e.g. 'default'.",
    ),
    "low_cpu_mem_usage text": (
        lambda: (tiny_bert(), AdaLoraConfig()),
        {"low_cpu_mem_usage": "yes"},
        NEW + "low_cpu_mem_usage must be True or False, got 'yes'. "
        "Pass low_cpu_mem_usage=True or False.",
    ),
}


@pytest.mark.parametrize("make, kw, msg", MODEL_CASES.values(), ids=MODEL_CASES)
def test_bad_model_arguments(make, kw, msg):
    model, config = make()
    with pytest.raises(TypeError) as e:
        AdaLoraModel(model, config, **kw)
    assert str(e.value) == msg
    if isinstance(model, torch.nn.Module):  # refused before the model was touched
        assert not any(isinstance(m, _AdapterLayer) for m in model.modules())
        assert all(p.requires_grad for p in model.parameters())


# ---------------------------------------------------------------- update_and_allocate(step)
STEP = (
    "update_and_allocate(step): step must be a non-negative int (the number of optimizer steps "
    "completed before this one), got {}. Pass an int: 0 after the first optimizer.step(), then "
    "1, 2, ... (the Trainer's state.global_step)."
)
STEP_CASES = {
    "float": (2.7, TypeError, STEP.format("2.7 (float)")),
    "integral float": (3.0, TypeError, STEP.format("3.0 (float)")),
    "text": ("3", TypeError, STEP.format("'3' (str)")),
    "bool": (True, TypeError, STEP.format("True (bool)")),
    "None": (None, TypeError, STEP.format("None (NoneType)")),
    "numpy float": (np.float64(3.0), TypeError, STEP.format(f"{np.float64(3.0)!r} (float64)")),
    "negative": (-1, ValueError, STEP.format("-1")),
    "negative numpy": (np.int64(-2), ValueError, STEP.format("-2")),
    "float tensor": (
        torch.tensor(1.0),
        TypeError,
        STEP.format("a torch.float32 tensor of shape ()"),
    ),
    "1-element tensor": (
        torch.tensor([1]),
        TypeError,
        STEP.format("a torch.int64 tensor of shape (1,)"),
    ),
    "tensor off the CPU": (
        torch.tensor(1, device="meta"),
        TypeError,
        STEP.format("a tensor on meta: reading it would wait for the GPU at every step"),
    ),
}


def _stepped_model():
    m = AdaLoraModel(
        tiny_bert(), AdaLoraConfig(init_r=4, target_r=2, tinit=1, tfinal=1, total_step=10)
    )
    opt = torch.optim.SGD(trainable(m), lr=0.1)
    ((x, y),) = batches(1)
    m(input_ids=x, labels=y).loss.backward()
    opt.step()
    return m


@pytest.mark.parametrize("step, exc, msg", STEP_CASES.values(), ids=STEP_CASES)
def test_bad_step(step, exc, msg):
    m = _stepped_model()
    with pytest.raises(exc) as e:
        m.update_and_allocate(step)
    assert str(e.value) == msg
    m.update_and_allocate(0)  # the refused call did not consume the step
    assert m.rankallocator.last_step() == 0


@pytest.mark.parametrize("step", [0, np.int64(0), torch.tensor(0)], ids=["int", "numpy", "tensor"])
def test_integer_steps_accepted(step):
    m = _stepped_model()
    budget, _ = m.update_and_allocate(step)
    assert budget == 48 and m.rankallocator.last_step() == 0
    assert type(m.rankallocator.last_step()) is int


# ---------------------------------------------------------------- loading adapter folders
W, CFG, PEFT_CFG, STATE = (
    "adapter_model.safetensors",
    "adalora_config.json",
    "adapter_config.json",
    "allocator_state.safetensors",
)


def _named(model, name):
    model.config._name_or_path = name
    return model


def _bert(**kw):
    return _named(tiny_bert(**kw), "tiny-bert")


def _roberta():
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(0)
    cfg = RobertaConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=40,
        num_labels=2,
    )
    return _named(RobertaForSequenceClassification(cfg), "tiny-roberta")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Folders saved from a trained tiny BERT: resized (the default), not resized (with the
    allocator state), and PEFT's format only (no adalora_config.json)."""
    root = tmp_path_factory.mktemp("saved")
    m = AdaLoraModel(_bert(), AdaLoraConfig(init_r=4, target_r=2, tinit=1, tfinal=1, total_step=6))
    randomize_adapters(m)
    opt = torch.optim.SGD(trainable(m), lr=0.1)
    for t, (x, y) in enumerate(batches(6)):
        m(input_ids=x, labels=y).loss.backward()
        opt.step()
        m.update_and_allocate(t)
        opt.zero_grad()
    m.save_pretrained(root / "resized")
    m.save_pretrained(root / "full", resize=False)
    shutil.copytree(root / "resized", root / "peft")
    (root / "peft" / CFG).unlink()
    return root


def _edit_tensors(file: Path, edit) -> None:
    t = load_file(str(file))
    edit(t)
    save_file({k: v.contiguous() for k, v in t.items()}, str(file))


def _edit_json(file: Path, edit) -> None:
    d = json.loads(file.read_text())
    edit(d)
    file.write_text(json.dumps(d))


def _resized_lora_a(sd):
    return next(k for k in sorted(sd) if k.endswith(".lora_A") and sd[k].shape[0] > 0)


FIX = "Load it into the model it was saved from, with the config it was saved with."
# case -> ("<saved folder>[:<path to load inside its copy d>]", edit of d, base model,
# exception, message regex with {d} for d). Every case also runs with low_cpu_mem_usage=True.
LOAD_CASES = {
    "missing folder": (
        "resized:nope",
        None,
        _bert,
        FileNotFoundError,
        r"adapter folder {d}/nope does not exist: pass the folder that save_pretrained wrote "
        r"\(holding adapter_model\.safetensors and adapter_config\.json\)\.",
    ),
    "a file, not the folder": (
        f"resized:{W}",
        None,
        _bert,
        FileNotFoundError,
        r"adapter folder {d}/adapter_model\.safetensors is a file, not a folder: pass the "
        r"folder that save_pretrained wrote \(holding adapter_model\.safetensors and "
        r"adapter_config\.json\)\.",
    ),
    "missing weights": (
        "resized",
        lambda d: (d / W).unlink(),
        _bert,
        FileNotFoundError,
        r"{d}/adapter_model\.safetensors is missing: the folder has its config but not its "
        r"weights\. Save the adapter again with save_pretrained\.",
    ),
    "weights only as .bin": (
        "peft",
        lambda d: (d / W).rename(d / "adapter_model.bin"),
        _bert,
        FileNotFoundError,
        r"{d}/adapter_model\.safetensors is missing: the folder has its config but not its "
        r"weights \(only adapter_model\.bin, PEFT's older pickle format\)\. Save the adapter "
        r"again with save_pretrained \(PEFT: safe_serialization=True\)\.",
    ),
    "truncated weights": (
        "resized",
        lambda d: (d / W).write_bytes((d / W).read_bytes()[:-64]),
        _bert,
        ValueError,
        r"{d}/adapter_model\.safetensors is not a readable safetensors file \(.+\): it is "
        r"truncated or corrupted\. Copy or save the adapter again\.",
    ),
    "garbage weights": (
        "peft",
        lambda d: (d / W).write_bytes(b"not a tensor file" * 8),
        _bert,
        ValueError,
        r"{d}/adapter_model\.safetensors is not a readable safetensors file \(.+\): it is "
        r"truncated or corrupted\. Copy or save the adapter again\.",
    ),
    "empty weights": (
        "resized",
        lambda d: (d / W).write_bytes(b""),
        _bert,
        ValueError,
        r"{d}/adapter_model\.safetensors is not a readable safetensors file \(.+\): it is "
        r"truncated or corrupted\. Copy or save the adapter again\.",
    ),
    "corrupted allocator state": (
        "full",
        lambda d: (d / STATE).write_bytes((d / STATE).read_bytes()[:100]),
        _bert,
        ValueError,
        r"{d}/allocator_state\.safetensors is not a readable safetensors file \(.+\): it is "
        r"truncated or corrupted\. Copy or save the adapter again\.",
    ),
    "config not JSON": (
        "resized",
        lambda d: (d / CFG).write_text('{"init_r": 4,'),
        _bert,
        ValueError,
        r"{d}/adalora_config\.json is not valid JSON \(.+\): the adapter folder is corrupted\. "
        r"Save the adapter again with save_pretrained\.",
    ),
    "config a list": (
        "peft",
        lambda d: (d / PEFT_CFG).write_text("[1, 2]"),
        _bert,
        ValueError,
        r"{d}/adapter_config\.json holds a JSON list, not an object: it is not an adapter "
        r"config\. Save the adapter again with save_pretrained\.",
    ),
    "config field NaN": (
        "resized",
        lambda d: _edit_json(d / CFG, lambda c: c.update(orth_reg_weight=NAN)),
        _bert,
        ValueError,
        r"{d}/adalora_config\.json: " + re.escape(ORTH.format("nan")),
    ),
    "PEFT config rank_pattern of another init_r": (
        "peft",
        lambda d: _edit_json(d / PEFT_CFG, lambda c: c.update(init_r=3, target_r=1)),
        _bert,
        ValueError,
        r"{d}/adapter_config\.json: rank_pattern\['.+\.lora_E'\] must be a list of 3 booleans "
        r"\(init_r: one per triplet\), got \[.+\]\. " + re.escape(ADA_PATTERN_FIX),
    ),
    "PEFT DoRA adapter": (
        "peft",
        lambda d: _edit_json(d / PEFT_CFG, lambda c: c.update(use_dora=True)),
        _bert,
        ValueError,
        r"{d}/adapter_config\.json: use_dora=True is a PEFT feature this library does not "
        r"implement, so these weights would compute something else here\. Load the adapter "
        r"with PEFT\.",
    ),
    "PEFT config targets other modules": (
        "peft",
        lambda d: _edit_json(d / PEFT_CFG, lambda c: c.update(target_modules=["nosuch"])),
        _bert,
        ValueError,
        r"adapter folder {d} does not fit this model: target_modules \['nosuch'\] matched no "
        r"Linear layer of BertForSequenceClassification\. Its Linear layers are: .+\. Pass "
        r"names from this list \(suffixes\), a regex or 'all-linear'\.",
    ),
    "rank_pattern without a module": (
        "resized",
        lambda d: _edit_json(d / CFG, lambda c: c["rank_pattern"].pop(f"{Q0}.lora_E")),
        _bert,
        ValueError,
        r"{d}/adalora_config\.json: rank_pattern has no entry for module "
        rf"'{re.escape(Q0)}', whose resized weights are in adapter_model\.safetensors: the "
        r"config does not match the weights\. Save the adapter again\.",
    ),
    "key outside the model's namespace": (
        "resized",
        lambda d: _edit_tensors(d / W, lambda t: t.update(stray=torch.zeros(1))),
        _bert,
        ValueError,
        r"{d}/adapter_model\.safetensors: parameter 'stray' is not an adapter parameter "
        r"\(PEFT's names start with 'base_model\.model\.'\): not an adapter file\. Save the "
        r"adapter again\.",
    ),
    "another model type": (
        "resized",
        None,
        _roberta,
        ValueError,
        r"{d}/adapter_model\.safetensors: the adapter adapts 12 module\(s\) that this model "
        r"does not have, e.g\. 'bert\.encoder\.layer\.0\.attention\.output\.dense': it was "
        r"saved from another base model \(saved from 'tiny-bert'\)\. Load it into the model it "
        r"was saved from\.",
    ),
    "another depth": (
        "peft",
        None,
        lambda: _bert(num_hidden_layers=1),
        ValueError,
        r"{d}/adapter_model\.safetensors: the adapter adapts 6 module\(s\) that this model "
        r"does not have, e.g\. 'bert\.encoder\.layer\.1\.attention\.output\.dense': it was "
        r"saved from another base model \(saved from 'tiny-bert'\)\. Load it into the model it "
        r"was saved from\.",
    ),
    "another width": (
        "full",
        None,
        lambda: _named(tiny_bert(hidden_size=48), "tiny-bert-48"),
        ValueError,
        r"{d}/adapter_model\.safetensors: parameter "
        r"base_model\.model\.bert\.encoder\.layer\.0\.attention\.output\.dense\.lora_A has "
        r"shape \(4, 32\), this model's has \(4, 48\): it was saved from another base model or "
        r"config \(saved from 'tiny-bert', this model is 'tiny-bert-48'\)\. " + re.escape(FIX),
    ),
    "another head": (
        "resized",
        None,
        lambda: _bert(num_labels=3),
        ValueError,
        r"{d}/adapter_model\.safetensors: parameter base_model\.model\.classifier\.bias has "
        r"shape \(2,\), this model's has \(3,\): it was saved from another base model or "
        r"config \(saved from 'tiny-bert'\)\. " + re.escape(FIX),
    ),
    "shape edited": (
        "peft",
        lambda d: _edit_tensors(
            d / W, lambda t: t.update({_resized_lora_a(t): t[_resized_lora_a(t)][:, :-1]})
        ),
        _bert,
        ValueError,
        r"{d}/adapter_model\.safetensors: parameter base_model\.model\..+\.lora_A has shape "
        r"\(\d, 31\), this model's has \(\d, 32\): it was saved from another base model or "
        r"config \(saved from 'tiny-bert'\)\. " + re.escape(FIX),
    ),
    "missing parameter": (
        "resized",
        lambda d: _edit_tensors(d / W, lambda t: t.pop(f"base_model.model.{Q0}.lora_B")),
        _bert,
        ValueError,
        r"{d}/adapter_model\.safetensors: this model's parameter "
        rf"base_model\.model\.{re.escape(Q0)}\.lora_B is missing from the file \(1 missing in "
        r"all\): it was saved from another model or config \(saved from 'tiny-bert'\)\. "
        + re.escape(FIX),
    ),
    "unexpected parameter": (
        "full",
        lambda d: _edit_tensors(
            d / W, lambda t: t.update({"base_model.model.bert.pooler.dense.scale": torch.ones(1)})
        ),
        _bert,
        ValueError,
        r"{d}/adapter_model\.safetensors: parameter base_model\.model\.bert\.pooler\.dense\.scale "
        r"is not in this model \(1 such\): it was saved from another model or config \(saved "
        r"from 'tiny-bert'\)\. " + re.escape(FIX),
    ),
    "integer weights": (
        "full",
        lambda d: _edit_tensors(
            d / W,
            lambda t: t.update(
                {f"base_model.model.{Q0}.lora_E": torch.zeros(4, 1, dtype=torch.int64)}
            ),
        ),
        _bert,
        ValueError,
        r"{d}/adapter_model\.safetensors: parameter "
        rf"base_model\.model\.{re.escape(Q0)}\.lora_E holds torch\.int64 values, this model's "
        r"is torch\.float32: the file is corrupted or not an adapter\. Save the adapter again\.",
    ),
    "allocator state of another shape": (
        "full",
        lambda d: _edit_tensors(d / STATE, lambda t: t.update(ipt_E=t["ipt_E"][:-1])),
        _bert,
        ValueError,
        r"{d}/allocator_state\.safetensors: parameter ipt_E has shape \(11, 4, 1\), this "
        r"model's has \(12, 4, 1\): it was saved from another base model or config \(saved "
        r"from 'tiny-bert'\)\. " + re.escape(FIX),
    ),
}


@pytest.mark.parametrize("low_cpu_mem_usage", [False, True], ids=["", "low_cpu_mem_usage"])
@pytest.mark.parametrize("source, edit, make, exc, msg", LOAD_CASES.values(), ids=LOAD_CASES)
def test_bad_adapter_folder(saved, tmp_path, source, edit, make, exc, msg, low_cpu_mem_usage):
    source, _, inside = source.partition(":")
    d = tmp_path / "adapter"
    shutil.copytree(saved / source, d)
    if edit is not None:
        edit(d)
    model = make()
    path = d / inside if inside else d
    with pytest.raises(exc) as e:
        AdaLoraModel.from_pretrained(model, path, low_cpu_mem_usage=low_cpu_mem_usage)
    assert re.fullmatch(msg.format(d=re.escape(str(d))), str(e.value)), str(e.value)


@pytest.mark.parametrize("source", ["resized", "full", "peft"])
@pytest.mark.parametrize("low_cpu_mem_usage", [False, True])
def test_good_folders_still_load(saved, source, low_cpu_mem_usage):
    """The folders the bad cases start from load, and give the same logits both ways."""
    x = torch.randint(0, 100, (2, 7), generator=torch.Generator().manual_seed(3))
    outs = []
    for low in (False, low_cpu_mem_usage):
        m = AdaLoraModel.from_pretrained(_bert(), saved / source, low_cpu_mem_usage=low)
        assert not any(p.is_meta for p in m.parameters())
        with torch.no_grad():
            outs.append(m(input_ids=x).logits)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_low_cpu_mem_usage_keeps_adapters_fp32(saved, tmp_path):
    """A file in another dtype loads as the adapters' own dtype both ways (as copy_ gives)."""
    shutil.copytree(saved / "resized", tmp_path / "half")
    _edit_tensors(tmp_path / "half" / W, lambda t: t.update({k: v.half() for k, v in t.items()}))
    for low in (False, True):
        m = AdaLoraModel.from_pretrained(_bert(), tmp_path / "half", low_cpu_mem_usage=low)
        assert {p.dtype for n, p in m.named_parameters() if "lora_" in n} == {torch.float32}


FROM = "AdaLoraModel.from_pretrained(model, path): "
FROM_CASES = {
    "model name": (
        ("bert-base-uncased", "x"),
        {},
        FROM + "model must be a torch.nn.Module, got str. Pass the loaded model "
        "(e.g. AutoModelForSequenceClassification.from_pretrained(name)).",
    ),
    "path not a path": (
        (None, 3),
        {},
        FROM + "path must be the adapter folder (a str or Path), got int. "
        "Pass the folder that save_pretrained wrote.",
    ),
    "is_trainable text": (
        (None, "x"),
        {"is_trainable": "False"},
        FROM + "is_trainable must be True or False, got 'False'. Pass is_trainable=True or False.",
    ),
}


@pytest.mark.parametrize("args, kw, msg", FROM_CASES.values(), ids=FROM_CASES)
def test_bad_from_pretrained_arguments(args, kw, msg):
    model, path = args
    with pytest.raises(TypeError) as e:
        AdaLoraModel.from_pretrained(model if model is not None else tiny_bert(), path, **kw)
    assert str(e.value) == msg


def test_same_folder_loads_into_a_copy_of_its_base(saved):
    """The mismatch checks compare against the model, not its name: a renamed copy loads."""
    m = AdaLoraModel.from_pretrained(_named(tiny_bert(), "elsewhere/tiny-bert"), saved / "full")
    assert len(m.adapter_layers()) == 12
    assert copy.deepcopy(m).final_ranks() == m.final_ranks()
