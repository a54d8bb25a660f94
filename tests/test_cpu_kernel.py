"""The one-pass C importance update (adalora/cpu_kernel.py, use_cpu_kernel()): the same state,
scores and masks as the eager update in every variant it serves, stale scores never reused,
and one clear error where it cannot run. PEFT parity with it: test_allocator.py."""

from __future__ import annotations

import copy

import pytest
import torch
from adalora_helpers import BERT_TARGETS, tiny_bert

from adalora import AdaLoraConfig, AdaLoraModel, cpu_kernel


def _model(**kw):
    # T = 40, 30 steps run: the state compared at the end is the budgeting phase's, not reset
    cfg = dict(init_r=4, target_r=2, tinit=2, tfinal=5, deltaT=1, total_step=40,
               beta1=0.85, beta2=0.85, target_modules=BERT_TARGETS)  # fmt: skip
    cfg.update(kw)
    return AdaLoraModel(tiny_bert(), AdaLoraConfig(**cfg))


def _run(m, steps, seed=0, pre_step=False):
    """Random gradients and weight changes; the (budget, rank pattern) of every step."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in range(steps):
        for layer in m.adapter_layers().values():
            for p in (layer.lora_A, layer.lora_B, layer.lora_E):
                grad = torch.randn(p.shape, generator=g) * (1 + torch.rand(1, generator=g))
                p.grad = grad.to(p.dtype)
        if pre_step:
            m.update_importance()
        for layer in m.adapter_layers().values():
            for p in (layer.lora_A, layer.lora_B, layer.lora_E):
                with torch.no_grad():
                    p.add_(torch.randn(p.shape, generator=g).to(p.dtype), alpha=0.01)
        budget, pattern = m.update_and_allocate(t)
        out.append((budget, None if pattern is None else dict(pattern)))
    return out


@pytest.mark.parametrize(
    "kw",
    [{}, {"prune_lora": True}, {"score_weights": "pre_step"}, {"final_phase": "frozen_scores"}],
    ids=["default", "prune_lora", "pre_step", "frozen_scores"],
)
def test_same_state_and_masks_as_the_eager_update(kw):
    eager = _model(**kw)
    fused = copy.deepcopy(eager)
    fused.use_cpu_kernel()
    pre = kw.get("score_weights") == "pre_step"
    assert _run(fused, 30, pre_step=pre) == _run(eager, 30, pre_step=pre)
    a, b = fused.rankallocator, eager.rankallocator
    assert torch.equal(a._flat(), b._flat()) and torch.equal(a.mask, b.mask)
    for la, lb in zip(fused.adapter_layers().values(), eager.adapter_layers().values()):
        assert torch.equal(la.lora_E, lb.lora_E)


def test_scores_are_recomputed_after_the_state_changes():
    """The C pass leaves s = Ibar * Ubar behind for the mask; a load or reset of the state
    after it must not be scored with that stale s."""
    m = _model()
    m.use_cpu_kernel()
    _run(m, 3)
    alloc = m.rankallocator
    before = alloc.triplet_scores().clone()
    state = {k: v * 2 for k, v in alloc.state_dict().items() if k.startswith(("ipt", "unc"))}
    alloc.load_state_dict(state, strict=False)  # copies into the flat state: a new version
    assert torch.equal(alloc.triplet_scores(), 4 * before)  # powers of two: exact
    alloc.reset_importance()
    assert torch.equal(alloc.triplet_scores(), torch.zeros_like(before))


def test_refusals():
    with pytest.raises(ValueError, match="triplet score"):
        _model(score="sensitivity").use_cpu_kernel()
    with pytest.raises(ValueError, match="float32 adapters on the CPU"):
        _model().double().use_cpu_kernel()
    m = _model()
    m.use_cpu_kernel()
    m.double()  # cast after switching it on: refused at the next update, before any write
    with pytest.raises(ValueError, match="use_cpu_kernel\\(False\\)"):
        _run(m, 1)
    m = _model()
    m.use_cpu_kernel()
    for layer in m.adapter_layers().values():
        for p in (layer.lora_A, layer.lora_B, layer.lora_E):
            p.grad = torch.zeros(p.shape[::-1]).t()  # right shape, not contiguous
    with pytest.raises(RuntimeError, match="contiguous float32"):
        m.update_and_allocate(0)
    m = _model()
    m.use_cpu_kernel()
    with pytest.raises(RuntimeError, match="has no gradient"):
        m.update_and_allocate(0)
    m.use_cpu_kernel(False)  # back to the eager update: its own message
    with pytest.raises(RuntimeError, match="has no gradient"):
        m.update_and_allocate(0)


def test_missing_compiler_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_kernel, "_lib", None)
    monkeypatch.setenv("ADALORA_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "no-such-cc")
    with pytest.raises(RuntimeError, match="needs a C compiler; 'no-such-cc' was not found"):
        _model().use_cpu_kernel()
    assert not list(tmp_path.iterdir())  # nothing half-written in the cache


def test_compiled_once_then_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ADALORA_CACHE", str(tmp_path))
    first = cpu_kernel._compile()
    assert first.parent == tmp_path and first.suffix == ".so"

    def no_compiler(*a, **k):
        raise AssertionError("compiled again")

    monkeypatch.setattr(cpu_kernel.subprocess, "run", no_compiler)
    assert cpu_kernel._compile() == first
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary left
