"""Save / load (resized or not), exact resume, merge / unmerge / merge_and_unload, resize."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from adalora_helpers import batches, randomize_adapters, tiny_bert, train, trainable
from torch import nn

from adalora import AdaLoraConfig, AdaLoraModel, LoraConfig
from adalora.layers import _AdapterLayer

X = torch.randint(0, 100, (3, 7), generator=torch.Generator().manual_seed(7))
CFG = dict(
    init_r=4, target_r=2, tinit=2, tfinal=3, total_step=12, lora_alpha=8, orth_reg_weight=0.1
)


@pytest.fixture(scope="module")
def base():
    return tiny_bert()


@pytest.fixture(scope="module")
def trained(base):
    """Trained to the end of the schedule (12 steps): ranks differ between modules."""
    m = AdaLoraModel(copy.deepcopy(base), AdaLoraConfig(**CFG))
    train(m, torch.optim.AdamW(trainable(m), lr=2e-2), batches(12))
    return m.eval()


def logits(m):
    with torch.no_grad():
        return m.eval()(input_ids=X).logits


def test_save_load_resized(base, trained, tmp_path):
    ranks = trained.final_ranks()
    assert sum(ranks.values()) <= 24 and len(set(ranks.values())) > 1  # a non-uniform allocation
    trained.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {
        "adapter_model.safetensors",
        "adapter_config.json",
        "adalora_config.json",
    }
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "ADALORA" and cfg["init_r"] == 4
    assert {k: sum(v) for k, v in cfg["rank_pattern"].items()} == {
        f"{n}.lora_E": r for n, r in ranks.items()
    }
    loaded = AdaLoraModel.from_pretrained(copy.deepcopy(base), tmp_path)
    assert {n: l.r for n, l in loaded.adapter_layers().items()} == ranks  # physically resized
    assert all(l.scale == pytest.approx(8 / 4, rel=1e-4) for l in loaded.adapter_layers().values())
    assert loaded.final_ranks() == ranks
    torch.testing.assert_close(logits(loaded), logits(trained), rtol=0, atol=1e-6)
    assert not any(p.requires_grad for p in loaded.parameters())  # inference by default
    # resized adapters hold exactly the kept triplets
    n_adapter = sum(p.numel() for n, p in loaded.named_parameters() if "lora_" in n)
    assert n_adapter == trained.adapter_parameters()


def test_save_load_not_resized(base, trained, tmp_path):
    trained.save_pretrained(tmp_path, resize=False)
    assert (tmp_path / "allocator_state.safetensors").exists()
    loaded = AdaLoraModel.from_pretrained(copy.deepcopy(base), tmp_path, is_trainable=True)
    assert all(l.r == 4 for l in loaded.adapter_layers().values())
    torch.testing.assert_close(logits(loaded), logits(trained), rtol=0, atol=1e-6)
    assert torch.equal(loaded.rankallocator.mask, trained.rankallocator.mask)
    assert int(loaded.rankallocator.step) == 12
    assert loaded.final_ranks() == trained.final_ranks()
    # saving again resized drops the allocator state file
    trained.save_pretrained(tmp_path)
    assert not (tmp_path / "allocator_state.safetensors").exists()


def test_load_errors(base, tmp_path):
    with pytest.raises(FileNotFoundError, match="no adalora_config.json or adapter_config.json"):
        AdaLoraModel.from_pretrained(copy.deepcopy(base), tmp_path)


def test_resume_is_exact(base, tmp_path):
    """Stop after step 5 (mid-budgeting), save with resize=False, reload into a fresh copy of
    the base model, and continue both with the same batches: identical masks and weights."""
    data = batches(12, seed=3)
    m = AdaLoraModel(copy.deepcopy(base), AdaLoraConfig(**CFG))
    opt = torch.optim.SGD(trainable(m), lr=0.5)  # stateless, so only the model must round-trip
    train(m, opt, data[:5])
    m.save_pretrained(tmp_path, resize=False)
    r = AdaLoraModel.from_pretrained(copy.deepcopy(base), tmp_path, is_trainable=True)
    sa, sb = m.rankallocator.state_dict(), r.rankallocator.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert sb["ipt_E"].abs().sum() > 0 and int(sb["step"]) == 5  # real state, not zeros
    ropt = torch.optim.SGD(trainable(r), lr=0.5)
    masks_m, masks_r = [], []
    for t, batch in enumerate(data[5:], start=6):
        train(m, opt, [batch], start=t)
        train(r, ropt, [batch], start=t)
        masks_m.append(m.rankallocator.mask.clone())
        masks_r.append(r.rankallocator.mask.clone())
    assert all(torch.equal(a, b) for a, b in zip(masks_m, masks_r))
    assert not torch.equal(masks_m[0], masks_m[-1])  # the allocation kept moving after resume
    sd_m, sd_r = m.state_dict(), r.state_dict()
    assert sd_m.keys() == sd_r.keys()
    assert all(torch.equal(sd_m[k], sd_r[k]) for k in sd_m)


def test_merge_unmerge(base):
    m = AdaLoraModel(copy.deepcopy(base), AdaLoraConfig(init_r=3, target_r=1))
    randomize_adapters(m)
    ref = logits(m)
    w0 = {n: l.base_layer.weight.clone() for n, l in m.adapter_layers().items()}
    m.merge_adapter()
    assert all(l.merged for l in m.adapter_layers().values())
    torch.testing.assert_close(logits(m), ref, rtol=1e-5, atol=1e-5)
    m.merge_adapter()  # idempotent
    torch.testing.assert_close(logits(m), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="unmerge"):
        next(iter(m.adapter_layers().values())).resize(torch.ones(3, dtype=torch.bool))
    m.unmerge_adapter()
    for n, l in m.adapter_layers().items():
        torch.testing.assert_close(l.base_layer.weight, w0[n], rtol=0, atol=1e-6)
    torch.testing.assert_close(logits(m), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "cfg", [AdaLoraConfig(init_r=3, target_r=1), LoraConfig(r=2, lora_alpha=4)]
)
def test_merge_and_unload(base, cfg):
    m = AdaLoraModel(copy.deepcopy(base), copy.deepcopy(cfg))
    randomize_adapters(m)
    ref = logits(m)
    plain = m.merge_and_unload()
    assert type(plain) is type(base)
    assert not any(isinstance(mod, _AdapterLayer) for mod in plain.modules())
    assert not any("lora_" in n for n, _ in plain.named_parameters())
    assert isinstance(plain.bert.encoder.layer[0].attention.self.query, nn.Linear)
    assert plain.state_dict().keys() == base.state_dict().keys()
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(input_ids=X).logits, ref, rtol=1e-5, atol=1e-5)


def test_resize_by_rank_pattern_keeps_outputs(base):
    m = AdaLoraModel(copy.deepcopy(base), AdaLoraConfig(init_r=3, target_r=1))
    randomize_adapters(m)
    names = list(m.adapter_layers())
    pattern = {f"{n}.lora_E": [i % 2 == 0, i % 3 == 0, False] for i, n in enumerate(names)}
    pattern[f"{names[1]}.lora_E"] = [False, False, False]  # rank 0
    # what the kept triplets compute: zero the masked lambdas first
    with torch.no_grad():
        for n, l in m.adapter_layers().items():
            l.lora_E.mul_(torch.tensor(pattern[f"{n}.lora_E"], dtype=torch.float32).view(-1, 1))
    ref = logits(m)
    m.resize_modules_by_rank_pattern(pattern)
    ranks = {n: l.r for n, l in m.adapter_layers().items()}
    assert ranks == {n: sum(pattern[f"{n}.lora_E"]) for n in names} and ranks[names[1]] == 0
    assert m.final_ranks() == ranks
    torch.testing.assert_close(logits(m), ref, rtol=1e-6, atol=1e-6)
    with pytest.raises(RuntimeError, match="resized to their final ranks.*resize=False"):
        m.update_and_allocate(1)
    # training still works with rank-0 modules (orth. reg. included)
    ((x, y),) = batches(1)
    loss = m.train()(input_ids=x, labels=y).loss
    assert torch.isfinite(loss)
    loss.backward()
    # merging works with rank-0 modules too
    m.eval()
    m.merge_adapter()
    torch.testing.assert_close(logits(m), ref, rtol=1e-5, atol=1e-5)
    m.unmerge_adapter()


def test_resized_model_roundtrip(base, tmp_path):
    m = AdaLoraModel(copy.deepcopy(base), AdaLoraConfig(init_r=3, target_r=1))
    randomize_adapters(m)
    names = list(m.adapter_layers())
    pattern = {
        f"{n}.lora_E": [True, False, i == 0] if i else [False] * 3 for i, n in enumerate(names)
    }
    m.resize_modules_by_rank_pattern(pattern)
    ref = logits(m)
    with pytest.raises(ValueError, match="resize=True"):
        m.save_pretrained(tmp_path, resize=False)
    m.save_pretrained(tmp_path)
    loaded = AdaLoraModel.from_pretrained(copy.deepcopy(base), tmp_path)
    assert {n: l.r for n, l in loaded.adapter_layers().items()} == {
        n: l.r for n, l in m.adapter_layers().items()
    }
    torch.testing.assert_close(logits(loaded), ref, rtol=0, atol=1e-6)


def test_lora_save_load(base, tmp_path):
    m = AdaLoraModel(
        copy.deepcopy(base), LoraConfig(r=2, lora_alpha=4, target_modules=["query", "value"])
    )
    randomize_adapters(m)
    ref = logits(m)
    m.save_pretrained(tmp_path)
    loaded = AdaLoraModel.from_pretrained(copy.deepcopy(base), tmp_path)
    assert isinstance(loaded.config_, LoraConfig) and len(loaded.adapter_layers()) == 4
    torch.testing.assert_close(logits(loaded), ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("resize", [True, False])
def test_from_pretrained_low_cpu_mem_usage(base, trained, tmp_path, resize):
    """PEFT's low_cpu_mem_usage: adapters built on the meta device take the loaded tensors."""
    trained.save_pretrained(tmp_path, resize=resize)
    loaded = AdaLoraModel.from_pretrained(
        copy.deepcopy(base), tmp_path, is_trainable=not resize, low_cpu_mem_usage=True
    )
    assert not any(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])
    assert {n: l.r for n, l in loaded.adapter_layers().items()} == (
        trained.final_ranks() if resize else {n: 4 for n in trained.final_ranks()}
    )
    torch.testing.assert_close(logits(loaded), logits(trained), rtol=0, atol=1e-6)
    if not resize:  # the allocator state came back too, on a real device
        sa, sb = trained.rankallocator.state_dict(), loaded.rankallocator.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert loaded.rankallocator.last_step() == trained.rankallocator.last_step() == 12


def test_lora_low_cpu_mem_usage(base, tmp_path):
    m = AdaLoraModel(copy.deepcopy(base), LoraConfig(r=2, lora_alpha=4))
    randomize_adapters(m)
    m.save_pretrained(tmp_path)
    loaded = AdaLoraModel.from_pretrained(copy.deepcopy(base), tmp_path, low_cpu_mem_usage=True)
    assert not any(p.is_meta for p in loaded.parameters())
    torch.testing.assert_close(logits(loaded), logits(m), rtol=0, atol=1e-6)


def test_io_does_not_import_the_model():
    """adalora/io.py holds pure functions; model.py builds on it (no import cycle)."""
    import ast
    from pathlib import Path

    import adalora.io

    tree = ast.parse(Path(adalora.io.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
    assert not {".model", "adalora.model", ".callback", "adalora.callback"} & imported
