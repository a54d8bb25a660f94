"""Importance scores, EMAs and masks against values worked out by hand (the paper's scores,
PEFT 0.21's RankAllocator).

The test model is two tiny Linear layers: ``a`` (2 -> 2) and ``b`` (2 -> 3), with r = 2, so
Q = lora_A is 2 x 2, lambda = lora_E is 2 x 1, and P = lora_B is 2 x 2 (a) or 3 x 2 (b).
Weights and gradients are set by hand; with beta1 = beta2 = 0.5 and powers of two every
number below is exact in floating point, so the checks use exact equality.
"""

from __future__ import annotations

import pytest
import torch
from adalora_helpers import TwoLinear

from adalora import AdaLoraConfig, AdaLoraModel
from adalora.schedule import budget_at


def make(targets=("a", "b"), device="cpu", **kw):
    cfg = dict(
        init_r=2,
        target_r=1,
        beta1=0.5,
        beta2=0.5,
        tinit=0,
        tfinal=0,
        total_step=10,
        target_modules=list(targets),
    )
    cfg.update(kw)
    return AdaLoraModel(TwoLinear(), AdaLoraConfig(**cfg)).to(device)


def setp(m, module, attr, w=None, g=None):
    """Set a weight (scalar or full value) and/or its gradient by hand."""
    p = getattr(m.adapter_layers()[module], attr)
    if w is not None:
        w = torch.as_tensor(w, dtype=p.dtype, device=p.device)
        with torch.no_grad():
            p.copy_(w.expand_as(p) if w.dim() == 0 else w.view_as(p))
    if g is not None:
        p.grad = torch.as_tensor(g, dtype=p.dtype, device=p.device).view_as(p).clone()


def set_module(m, module, w=1.0, gA=0.0, gB=0.0, gE=0.0):
    layer = m.adapter_layers()[module]
    for attr, g in (("lora_A", gA), ("lora_B", gB), ("lora_E", gE)):
        p = getattr(layer, attr)
        setp(m, module, attr, w=w)
        g = torch.as_tensor(g, dtype=p.dtype, device=p.device)
        p.grad = (g.expand_as(p) if g.dim() == 0 else g.view_as(p)).clone()


def ema(m, attr):
    """(Ibar, Ubar) of the single adapted module's parameter ``attr``, shaped like it."""
    sd = m.rankallocator.state_dict()
    key = {"lora_A": "ipt_lora_A", "lora_B": "ipt_lora_B", "lora_E": "ipt_E"}[attr]
    ipt = [v for k, v in sd.items() if k.startswith(key)]
    unc = [v for k, v in sd.items() if k.startswith(key.replace("ipt", "unc"))]
    assert len(ipt) == len(unc) == 1
    shape = getattr(next(iter(m.adapter_layers().values())), attr).shape
    return ipt[0].reshape(shape), unc[0].reshape(shape)


T = torch.tensor


# ---------------------------------------------------------------- EMAs and triplet scores
def two_steps(m):
    """Step 1: Q = 1, gQ = [[4,2],[0,1]];  step 2: Q = 2, gQ = [[1,1],[0,2]].
    P = 1, gP = [[2,0],[4,1]] and lambda = [1,2], g = [1,2] at both steps (tinit = 5: no mask)."""
    for t, (wA, gA) in enumerate(
        [(1.0, [[4.0, 2.0], [0.0, 1.0]]), (2.0, [[1.0, 1.0], [0.0, 2.0]])], 1
    ):
        setp(m, "a", "lora_A", w=wA, g=gA)
        setp(m, "a", "lora_B", w=1.0, g=[[2.0, 0.0], [4.0, 1.0]])
        setp(m, "a", "lora_E", w=[[1.0], [2.0]], g=[[1.0], [2.0]])
        assert m.update_and_allocate(t) == (2, None)  # warm-up: b0 = 2, no mask


def test_ema_after_two_steps_by_hand():
    m = make(targets=["a"], tinit=5, target_r=1)
    two_steps(m)
    # Q: I1 = [[4,2],[0,1]], Ibar1 = I1/2, Ubar1 = |I1 - Ibar1|/2 = I1/4
    #    I2 = [[2,2],[0,4]] (w = 2): Ibar2 = Ibar1/2 + I2/2 = [[2,1.5],[0,2.25]]
    #    Ubar2 = Ubar1/2 + |I2 - Ibar2|/2 = [[0.5,0.25],[0,0.125]] + [[0,0.25],[0,0.875]]
    ibar, ubar = ema(m, "lora_A")
    assert torch.equal(ibar, T([[2.0, 1.5], [0.0, 2.25]]))
    assert torch.equal(ubar, T([[0.5, 0.5], [0.0, 1.0]]))
    # P, lambda: the same I at both steps -> Ibar2 = 3/4 I, Ubar2 = I/8 + |I - 3/4 I|/2 = I/4
    ibar, ubar = ema(m, "lora_B")
    assert torch.equal(ibar, T([[1.5, 0.0], [3.0, 0.75]])) and torch.equal(
        ubar, T([[0.5, 0.0], [1.0, 0.25]])
    )
    ibar, ubar = ema(m, "lora_E")
    assert torch.equal(ibar, T([[0.75], [3.0]])) and torch.equal(ubar, T([[0.25], [1.0]]))


def test_triplet_scores_by_hand():
    m = make(targets=["a"], tinit=5)
    two_steps(m)
    # s = Ibar * Ubar.  s(Q) = [[1, 0.75],[0, 2.25]] -> row means [0.875, 1.125]
    # s(P) = [[0.75, 0],[3, 0.1875]] -> column means [1.875, 0.09375];  s(lambda) = [0.1875, 3]
    # S = [0.1875 + 0.875 + 1.875, 3 + 1.125 + 0.09375]
    assert torch.equal(m.rankallocator.triplet_scores(), T([[2.9375, 4.21875]]))
    # k = 1: the lower-scored triplet 0 goes; lambda_0 zeroed, P and Q untouched
    A, B = m.adapter_layers()["a"].lora_A.clone(), m.adapter_layers()["a"].lora_B.clone()
    m.rankallocator.mask_to_budget(1)
    assert m.rankallocator.threshold == 2.9375
    assert m.rankallocator.mask.tolist() == [[False, True]]
    layer = m.adapter_layers()["a"]
    assert torch.equal(layer.lora_E.detach(), T([[0.0], [2.0]]))
    assert torch.equal(layer.lora_A, A) and torch.equal(layer.lora_B, B)


def test_sensitivity_score_uses_current_step_only():
    m = make(targets=["a"], tinit=5, score="sensitivity")
    two_steps(m)
    # s = I of step 2: Q [[2,2],[0,4]] -> row means [2, 2]; P [[2,0],[4,1]] -> column means
    # [3, 0.5]; lambda [1, 4]
    assert torch.equal(m.rankallocator.triplet_scores(), T([[1.0 + 2.0 + 3.0, 4.0 + 2.0 + 0.5]]))


def test_magnitude_score_is_abs_lambda_and_needs_no_gradient():
    m = make(score="magnitude")
    setp(m, "a", "lora_E", w=[[0.5], [-0.3]])
    setp(m, "b", "lora_E", w=[[0.3], [-0.9]])
    assert torch.equal(m.rankallocator.triplet_scores(), T([[0.5, 0.3], [0.3, 0.9]]))
    # b(1) with b0 = 4, bT = 2, T = 10: int(2 * 0.9^3 + 2) = int(3.458) = 3 -> k = 1.
    # threshold = 0.3, and both triplets tied at 0.3 are masked: 2 kept for a budget of 3.
    budget, pattern = m.update_and_allocate(1)  # no gradients anywhere: fine for magnitude
    assert budget == 3
    assert dict(pattern) == {"a.lora_E": [True, False], "b.lora_E": [False, True]}
    assert torch.equal(m.adapter_layers()["a"].lora_E.detach(), T([[0.5], [0.0]]))
    assert torch.equal(m.adapter_layers()["b"].lora_E.detach(), T([[0.0], [-0.9]]))
    # a masked lambda revived by the optimizer comes back at the next masking step
    setp(m, "a", "lora_E", w=[[0.5], [5.0]])
    budget, pattern = m.update_and_allocate(2)  # b(2) = int(2 * 0.8^3 + 2) = 3, k = 1
    assert budget == 3 and dict(pattern) == {"a.lora_E": [True, True], "b.lora_E": [False, True]}


def test_triplet_mask_with_ties_by_hand(device):
    m = make(device=device)
    # one step, beta = 0.5, w = 1: Ibar = I/2, Ubar = I/4, s = I^2 / 8 with I = |g|
    set_module(m, "a", gE=T([[2.0], [0.0]]), gA=T([[0.0, 0.0], [4.0, 4.0]]))  # S_a = [0.5, 2]
    set_module(
        m,
        "b",
        gA=T([[2.0, 2.0], [0.0, 0.0]]),  # S_b = [0.5, 4/6]
        gB=T([[0.0, 4.0], [0.0, 0.0], [0.0, 0.0]]),
    )
    budget, pattern = m.update_and_allocate(1)
    S = m.rankallocator.triplet_scores().cpu()
    torch.testing.assert_close(S, T([[0.5, 2.0], [0.5, 2 / 3]]), rtol=0, atol=1e-7)
    # budget 3 -> k = 1 -> threshold 0.5: the two triplets tied at 0.5 are both masked
    assert budget == 3 and m.rankallocator.threshold == 0.5
    assert dict(pattern) == {"a.lora_E": [False, True], "b.lora_E": [False, True]}
    assert m.config_.rank_pattern is pattern
    for name in ("a", "b"):
        layer = m.adapter_layers()[name]
        assert torch.equal(layer.lora_E.detach().cpu(), T([[0.0], [1.0]]))
        assert torch.all(layer.lora_A == 1) and torch.all(layer.lora_B == 1)  # P, Q not zeroed
    assert m.final_ranks() == {"a": 1, "b": 1}


def test_k_zero_masks_nothing():
    m = make(target_r=2)  # bT = b0: every masking step has k = 0 (kthvalue(k=0) would fail)
    set_module(m, "a", w=0.5, gE=1.0)
    set_module(m, "b", w=0.5, gE=1.0)
    budget, pattern = m.update_and_allocate(1)
    assert budget == 4 and all(all(v) for v in pattern.values())
    assert m.rankallocator.threshold is None
    assert torch.all(m.adapter_layers()["a"].lora_E == 0.5)
    m2 = make()
    setp(m2, "a", "lora_E", w=0.25)
    m2.rankallocator.mask_to_budget(4)
    assert m2.rankallocator.mask.all() and torch.all(m2.adapter_layers()["a"].lora_E == 0.25)


def test_budgets_follow_the_schedule_and_masks_fit(device):
    m = make(init_r=2, target_r=0.5, tinit=2, tfinal=3, total_step=12, deltaT=2, device=device)
    g = torch.Generator().manual_seed(0)
    prev = m.rankallocator.mask.clone()
    for t in range(1, 13):
        for name in ("a", "b"):
            layer = m.adapter_layers()[name]
            for p in (layer.lora_A, layer.lora_B, layer.lora_E):
                p.grad = torch.randn(p.shape, generator=g).to(p.device)
            with torch.no_grad():
                layer.lora_E.add_(1.0)  # revive everything: the mask must be re-applied
        budget, pattern = m.update_and_allocate(t)
        assert budget == budget_at(t, 4, 1, 2, 3, 12, 2).budget
        masking = t > 2 and (t % 2 == 0 or t >= 9)  # deltaT steps, T - tfinal, final phase
        mask = m.rankallocator.mask
        E = torch.cat([l.lora_E.detach().view(1, -1) for l in m.adapter_layers().values()])
        if masking:
            assert int(mask.sum()) <= budget
            assert torch.all(E[~mask] == 0) and torch.all(E[mask] != 0)
        else:
            assert torch.equal(mask, prev) and torch.all(E != 0)
        # "fixed": a pattern is returned on the deltaT steps and once at T - tfinal = 9
        assert (pattern is not None) == (t in (4, 6, 8, 9))
        prev = mask.clone()
    assert m.rankallocator.bT == 1 and int(m.rankallocator.mask.sum()) == 1


def test_target_total_rank():
    m = make(target_total_rank=3, total_step=4)
    assert (m.rankallocator.b0, m.rankallocator.bT) == (4, 3)
    for t in range(1, 5):
        set_module(m, "a", gE=float(t))
        set_module(m, "b", gE=2.0)
        budget, _ = m.update_and_allocate(t)
    assert budget == 3 and int(m.rankallocator.mask.sum()) <= 3


# ---------------------------------------------------------------- final phase
def _final_phase_run(variant, device="cpu"):
    """T = 6, tinit = 1, tfinal = 2, deltaT = 5 (no scheduled mask in the budgeting phase).
    Gradients only on lambda: a -> [1, 4], b -> [3, 2], so scores order a0 < b1 < b0 < a1,
    and bT = 2 keeps a1 and b0."""
    m = make(tinit=1, tfinal=2, total_step=6, deltaT=5, variant=variant, device=device)
    out = []
    for t in (1, 2, 3):
        set_module(m, "a", gE=T([[1.0], [4.0]]))
        set_module(m, "b", gE=T([[3.0], [2.0]]))
        out.append(m.update_and_allocate(t))
    assert [p for _, p in out] == [None, None, None]
    return m


def _revive_and_drop_grads(m):
    for name in ("a", "b"):
        layer = m.adapter_layers()[name]
        with torch.no_grad():
            layer.lora_E.fill_(7.0)  # the optimizer revived every masked lambda
        for p in (layer.lora_A, layer.lora_B, layer.lora_E):
            p.grad = None  # scores are frozen: no gradient needed any more


EXPECTED = {"a.lora_E": [False, True], "b.lora_E": [True, False]}


def test_final_phase_fixed(device):
    m = _final_phase_run("peft", device)
    _revive_and_drop_grads(m)
    # t = T - tfinal = 4 (4 % deltaT != 0): the mask to bT is forced anyway, scores reset
    budget, pattern = m.update_and_allocate(4)
    assert budget == 2 and dict(pattern) == EXPECTED
    assert torch.all(m.rankallocator.triplet_scores() == 0)  # reset_ipt, as PEFT
    for t in (5, 6):
        _revive_and_drop_grads(m)
        budget, pattern = m.update_and_allocate(t)
        assert (budget, pattern) == (2, None)  # the stored pattern is re-applied
        assert torch.equal(m.adapter_layers()["a"].lora_E.detach().cpu(), T([[0.0], [7.0]]))
        assert torch.equal(m.adapter_layers()["b"].lora_E.detach().cpu(), T([[7.0], [0.0]]))
    assert dict(m.config_.rank_pattern) == EXPECTED


def test_final_phase_frozen_scores():
    m = _final_phase_run("authors")
    frozen = m.rankallocator.triplet_scores().clone()
    _revive_and_drop_grads(m)
    # t = 4 is still a budgeting step and 4 % deltaT != 0: no mask yet, no score update
    assert m.update_and_allocate(4) == (2, None)
    assert torch.all(m.adapter_layers()["a"].lora_E == 7)
    for t in (5, 6):  # final phase: re-masked every step from the frozen scores
        _revive_and_drop_grads(m)
        budget, pattern = m.update_and_allocate(t)
        assert budget == 2 and dict(pattern) == EXPECTED
        assert torch.equal(m.rankallocator.triplet_scores(), frozen)  # neither updated nor reset
        assert torch.equal(m.adapter_layers()["a"].lora_E.detach(), T([[0.0], [7.0]]))


# ---------------------------------------------------------------- pre-step (paper) weights
@pytest.mark.parametrize("variant,expected", [("paper", [[1.0], [2.0]]), ("peft", [[3.0], [6.0]])])
def test_score_weights_pre_and_post_step(variant, expected):
    m = make(targets=["a"], variant=variant, tinit=5)
    set_module(m, "a", w=1.0, gE=T([[2.0], [4.0]]))
    setp(m, "a", "lora_E", w=[[1.0], [1.0]])
    if variant == "paper":
        m.update_importance()  # before optimizer.step(): w = 1
    setp(m, "a", "lora_E", w=[[3.0], [3.0]])  # "optimizer.step()"
    m.update_and_allocate(1)
    ibar, _ = ema(m, "lora_E")  # Ibar = |w * g| / 2
    assert torch.equal(ibar, T(expected))


def test_pre_step_scores_freeze_in_final_phase():
    m = make(targets=["a"], variant="paper", tinit=1, tfinal=2, total_step=5)
    for t in (1, 2):
        set_module(m, "a", gE=T([[1.0], [2.0]]))
        m.update_importance()
        m.update_and_allocate(t)
    assert torch.all(m.rankallocator.state_dict()["ipt_E"] > 0)
    for t in (3, 4, 5):  # t >= T - tfinal = 3: update_importance is a no-op, no gradient needed
        m.adapter_layers()["a"].lora_E.grad = None
        m.update_importance()
        m.update_and_allocate(t)
        assert torch.all(m.rankallocator.state_dict()["ipt_E"] == 0)  # reset at t = 3, then frozen
    assert m.rankallocator.mask.tolist() == [[False, True]]


# ---------------------------------------------------------------- no host reads on the hot path
# Host reads: .item() / int() / float() / bool() of a tensor (aten._local_scalar_dense), data-
# dependent shapes (nonzero, masked_select, boolean indexing), torch.equal. On CUDA each is a
# device-to-host sync that stalls the launch queue (tests/test_device_core.py checks that with
# torch.cuda.set_sync_debug_mode); on the CPU these two tests check the same by construction.
SYNC_OPS = {"_local_scalar_dense", "item", "nonzero", "masked_select", "is_nonzero", "equal"}


def _count_ops(fn, keep) -> dict:
    """{aten op name: calls} of the ops ``fn`` dispatches whose name passes ``keep``."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: dict[str, int] = {}

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if keep(name):
                seen[name] = seen.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return seen


def _count_sync_ops(fn) -> dict:
    return _count_ops(fn, lambda name: name in SYNC_OPS)


@pytest.mark.parametrize("kw", [dict(), dict(score="sensitivity"), dict(variant="authors")])
def test_update_and_allocate_reads_nothing_back(kw):
    m = make(tinit=1, tfinal=2, total_step=8, **kw)
    g = torch.Generator().manual_seed(0)
    for t in range(1, 9):  # warm-up, budgeting (a mask every step), final phase
        for name in ("a", "b"):
            layer = m.adapter_layers()[name]
            for p in (layer.lora_A, layer.lora_B, layer.lora_E):
                p.grad = torch.randn(p.shape, generator=g)
        assert _count_sync_ops(lambda t=t: m.update_and_allocate(t)) == {}, t
    assert m.rankallocator.last_step() == 8


def test_no_host_reads_on_meta():
    """On the meta device every host read raises: a full training step (forward with the
    orthogonal regulariser, backward, AdamW) and update_and_allocate through every phase run
    there, so none of them reads a tensor back."""
    from adalora_helpers import tiny_bert

    m = AdaLoraModel(
        tiny_bert(),
        AdaLoraConfig(init_r=2, target_r=1, tinit=1, tfinal=2, total_step=6, orth_reg_weight=0.1),
    )
    m.to("meta").train()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], foreach=True)
    x = torch.randint(0, 100, (2, 5)).to("meta")
    y = torch.randint(0, 2, (2,)).to("meta")
    masked = 0
    for t in range(1, 7):
        out = m(input_ids=x, labels=y)
        out.loss.backward()
        opt.step()
        _, pattern = m.update_and_allocate(t)
        masked += pattern is not None
        opt.zero_grad()
    assert masked == 3  # t = 2, 3 (budgeting), 4 (= T - tfinal); none after: the mask is fixed
    with pytest.raises((RuntimeError, NotImplementedError)):
        _ = m.rankallocator.threshold  # a real read: it fails on meta


def test_step_mirror_follows_load_and_to():
    """The Python mirror of ``step`` is re-read after load_state_dict (copy or assign) and
    survives .to(); an inference-mode allocator (no version counter) reads every time."""
    m = make()
    alloc = m.rankallocator
    sd = alloc.state_dict()
    sd["step"] = torch.tensor(5)
    alloc.load_state_dict(sd)
    with pytest.raises(ValueError, match=r"update_and_allocate\(5\) after step 5"):
        m.update_and_allocate(5)
    sd["step"] = torch.tensor(7)
    alloc.load_state_dict(sd, assign=True)
    m.to(torch.float64)
    assert alloc.last_step() == 7 and alloc._step_seen == alloc._step_key()
    with torch.inference_mode():
        m2 = make()
    assert m2.rankallocator.last_step() == -1


# ---------------------------------------------------------------- flat state
def _bert_model(layers=2, **kw):
    from adalora_helpers import BERT_TARGETS, tiny_bert

    cfg = dict(init_r=4, target_r=2, tinit=1, tfinal=3, total_step=40, target_modules=BERT_TARGETS)
    cfg.update(kw)
    return AdaLoraModel(tiny_bert(num_hidden_layers=layers), AdaLoraConfig(**cfg))


def _random_step(m, g, t):
    """Random gradients, a small weight change (as an optimizer would), then allocation."""
    for layer in m.adapter_layers().values():
        for p in (layer.lora_A, layer.lora_B, layer.lora_E):
            p.grad = torch.randn(p.shape, generator=g)
            with torch.no_grad():
                p.add_(torch.randn(p.shape, generator=g), alpha=0.01)
    return m.update_and_allocate(t)


def test_state_keys_are_unchanged_and_share_one_buffer(tmp_path):
    """Ibar and Ubar of every adapter live in one (2, N) tensor; the registered buffers are its
    views under the names and shapes checkpoints have always had, and state_dict() gives
    separate copies (safetensors refuses tensors that share memory)."""
    from safetensors.torch import load_file, save_file

    m = _bert_model()
    g = torch.Generator().manual_seed(0)
    for t in range(1, 4):
        _random_step(m, g, t)
    alloc = m.rankallocator
    sd = alloc.state_dict()
    # tiny BERT (hidden 32, ffn 64, 2 layers): lora_A is 4 x 32 (query, key, value, attention
    # output, intermediate) or 4 x 64 (output); lora_B 32 x 4 or 64 x 4 (intermediate)
    shapes = {
        "lora_A0": (10, 4, 32),
        "lora_A1": (2, 4, 64),
        "lora_B0": (10, 32, 4),
        "lora_B1": (2, 64, 4),
        "E": (12, 4, 1),
    }
    expected = [f"{k}_{n}" for n in shapes for k in ("ipt", "unc")] + ["mask", "step"]
    assert list(sd) == expected
    assert all(tuple(sd[f"ipt_{n}"].shape) == s for n, s in shapes.items())
    storage = {getattr(alloc, k).untyped_storage().data_ptr() for k in expected[:-2]}
    assert len(storage) == 1
    assert len({v.untyped_storage().data_ptr() for v in sd.values()}) == len(sd)
    save_file(sd, tmp_path / "state.safetensors")
    back = load_file(tmp_path / "state.safetensors")
    assert all(torch.equal(back[k], sd[k]) for k in sd) and sd["ipt_E"].abs().sum() > 0
    alloc.ipt_E.add_(1.0)  # a write through a buffer reaches the state the scores read
    assert torch.equal(alloc._flat()[0, -alloc.ipt_E.numel() :], alloc.ipt_E.view(-1))


@pytest.mark.parametrize("how", ["deepcopy", "assign", "to"])
def test_state_rebuilt_after_buffers_are_replaced(how):
    """.to(), load_state_dict(assign=True) and deepcopy replace the buffers by separate
    tensors: the allocator joins them into one state again (at once after .to(), at the next
    use otherwise) and continues exactly as the original does."""
    import copy

    m = _bert_model()
    g = torch.Generator().manual_seed(1)
    for t in range(1, 6):
        _random_step(m, g, t)
    m2 = copy.deepcopy(m)
    if how == "assign":
        fresh = {k: v.clone() for k, v in m2.rankallocator.state_dict().items()}
        m2.rankallocator.load_state_dict(fresh, assign=True)
    elif how == "to":
        m2.to(torch.float64).to(torch.float32)
    a, b = m.rankallocator, m2.rankallocator
    joined = all(getattr(b, k)._base is b._state for k in b._state_names)
    assert joined == (how == "to")  # .to() joins them at once, the others at the next use
    g1, g2 = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    for t in range(6, 16):  # budgeting: a mask at every step
        assert _random_step(m, g1, t)[0] == _random_step(m2, g2, t)[0]
        assert torch.equal(a.mask, b.mask), t
    assert all(getattr(b, k)._base is b._state for k in b._state_names)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_allocation_cost_does_not_grow_with_the_number_of_adapters():
    """The same aten calls per update_and_allocate for 12 and 36 adapted matrices (one stack
    per shape group, then whole-state kernels; on CUDA each foreach call is one kernel)."""
    views = {"view", "unsqueeze", "slice", "select", "unbind", "alias", "detach", "as_strided"}
    counts = []
    for layers in (2, 6):
        m = _bert_model(layers)
        g = torch.Generator().manual_seed(0)
        for t in (1, 2):
            _random_step(m, g, t)  # t = 2 masks; work tensors exist from here on
        seen = _count_ops(lambda m=m, g=g: _random_step(m, g, 3), lambda name: name not in views)
        assert m.config_.rank_pattern is not None and m.rankallocator.last_step() == 3
        counts.append(seen)
    # the random gradients and weight changes of _random_step: 3 ops per parameter
    for layers, seen in zip((2, 6), counts):
        n = 6 * layers * 3
        assert seen.pop("randn") == 2 * n and seen.pop("add_") >= n
    assert counts[0] == counts[1]


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_long_run_matches_peft_rank_allocator():
    """300 steps of random gradients and weight changes through PEFT 0.21's RankAllocator and
    ours (a mask at every budgeting step, then the final phase): the same budgets and rank
    patterns at every step, the same zeroed lambdas, and bit-identical EMAs."""
    peft = pytest.importorskip("peft")
    import copy

    from adalora_helpers import BERT_TARGETS, tiny_bert

    kw = dict(
        init_r=4,
        target_r=2,
        tinit=10,
        tfinal=60,
        deltaT=1,
        total_step=300,
        beta1=0.85,
        beta2=0.85,
        target_modules=BERT_TARGETS,
    )
    base = tiny_bert()
    pm = peft.get_peft_model(copy.deepcopy(base), peft.AdaLoraConfig(task_type="SEQ_CLS", **kw))
    om = AdaLoraModel(copy.deepcopy(base), AdaLoraConfig(task_type="SEQ_CLS", **kw))
    pairs = []  # (our parameter, PEFT's)
    for name, layer in om.adapter_layers().items():
        theirs = pm.base_model.model.get_submodule(name)
        for attr in ("lora_A", "lora_B", "lora_E"):
            p, q = getattr(layer, attr), getattr(theirs, attr)["default"]
            with torch.no_grad():
                p.copy_(q)
            pairs.append((p, q))
    g = torch.Generator().manual_seed(0)
    for t in range(0, 301):
        for p, q in pairs:
            grad = torch.randn(p.shape, generator=g) * (1 + 3 * torch.rand(1, generator=g))
            step = torch.randn(p.shape, generator=g) * 0.01
            p.grad, q.grad = grad.clone(), grad.clone()
            with torch.no_grad():
                p.add_(step), q.add_(step)
        pm.base_model.update_and_allocate(t)
        budget, _ = om.update_and_allocate(t)
        assert budget == pm.base_model.rankallocator.budget_schedule(t)[0], t
        theirs = pm.peft_config["default"].rank_pattern
        ours = om.config_.rank_pattern
        assert (theirs is None) == (ours is None), t
        if ours is not None:
            assert {k.replace(".default", ""): list(v) for k, v in theirs.items()} == {
                k: list(v) for k, v in ours.items()
            }, t
        for p, q in pairs[2::3]:  # lambda
            assert torch.equal(p == 0, q == 0), t
        if t == 239:  # the last budgeting step: the EMAs, before the final phase resets them
            alloc, ra = om.rankallocator, pm.base_model.rankallocator
            names = list(om.adapter_layers())
            for grp in alloc._groups:
                ipt, unc = getattr(alloc, f"ipt_{grp.name}"), getattr(alloc, f"unc_{grp.name}")
                for j, i in enumerate(grp.index):
                    key = f"{names[i]}.{grp.attr}.default"
                    assert torch.equal(ipt[j], ra.exp_avg_ipt[key]), key
                    assert torch.equal(unc[j], ra.exp_avg_unc[key]), key
