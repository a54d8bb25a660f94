"""The core on the test device (the ``device`` fixture: CUDA when present, else the CPU; set
ADALORA_TEST_DEVICE to choose): identity at init, parity with PEFT, training under bf16
autocast, merge, resize, save / load, and no device-to-host sync on the hot path.

scripts/device_check.py runs this file (with test_allocator.py and test_layers.py) on the GPU.
On the CPU every test runs too, in a few seconds: tiny models only.
"""

from __future__ import annotations

import copy

import pytest
import torch
from adalora_helpers import TINY_ADALORA, batches, randomize_adapters, tiny_bert, trainable

from adalora import AdaLoraConfig, AdaLoraModel, LoraConfig
from scripts.bench.timing import sync_sites

PRECISIONS = ["fp32", "bf16"]
CFG = dict(TINY_ADALORA, orth_reg_weight=0.1)


def autocast(device, precision):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def on(device, batch):
    return tuple(t.to(device) for t in batch)


@pytest.fixture(scope="module")
def base():
    return tiny_bert().eval()


def logits(m, x):
    with torch.no_grad():
        return m.eval()(input_ids=x).logits


def train(m, device, n=8, precision="fp32", lr=2e-2, seed=1):
    """n steps of forward / backward / AdamW / update_and_allocate on ``device``."""
    opt = torch.optim.AdamW(trainable(m), lr=lr)
    m.train()
    losses = []
    for t, batch in enumerate(batches(n, seed=seed), start=1):
        x, y = on(device, batch)
        with autocast(device, precision):
            loss = m(input_ids=x, labels=y).loss
        loss.backward()
        opt.step()
        if m.rankallocator is not None:
            m.update_and_allocate(t)
        opt.zero_grad()
        losses.append(loss.detach())
    return torch.stack(losses).float().cpu()


# ---------------------------------------------------------------- identity at init
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("cfg", [AdaLoraConfig(init_r=4, target_r=2), LoraConfig(r=3)])
def test_identity_at_init(base, device, precision, cfg):
    x = batches(1, seed=5)[0][0].to(device)
    ref_model = copy.deepcopy(base).to(device)
    m = AdaLoraModel(copy.deepcopy(base), copy.deepcopy(cfg)).to(device).eval()
    with torch.no_grad(), autocast(device, precision):
        assert torch.equal(m(input_ids=x).logits, ref_model(input_ids=x).logits)
    assert all(p.dtype == torch.float32 for n, p in m.named_parameters() if "lora_" in n)


# ---------------------------------------------------------------- parity with PEFT
def _peft_and_ours(base, device, **kw):
    peft = pytest.importorskip("peft")
    pm = peft.get_peft_model(copy.deepcopy(base), peft.AdaLoraConfig(task_type="SEQ_CLS", **kw))
    om = AdaLoraModel(copy.deepcopy(base), AdaLoraConfig(task_type="SEQ_CLS", **kw))
    psd = {
        k.replace("base_model.model.", "").replace(".default", ""): v
        for k, v in pm.state_dict().items()
    }
    with torch.no_grad():
        for n, p in om.model.named_parameters():
            k = n.replace("classifier.", "classifier.modules_to_save.")
            p.copy_(psd[k if k in psd else n])
    return pm.to(device), om.to(device)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("precision", PRECISIONS)
def test_peft_parity(base, device, precision):
    """Same weights and batches as PEFT on the same device: identical budgets at every step;
    identical masks in fp32 (bf16 autocast: the budgets still match and the masks fit them)."""
    kw = dict(CFG, total_step=10, tfinal=2, orth_reg_weight=0.5, beta1=0.85, beta2=0.85)
    pm, om = _peft_and_ours(base, device, **kw)
    po = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-2)
    oo = torch.optim.AdamW(trainable(om), lr=1e-2)
    pm.train(), om.train()
    same_masks = 0
    for t, batch in enumerate(batches(10, seed=2), start=1):
        x, y = on(device, batch)
        with autocast(device, precision):
            lp = pm(input_ids=x, labels=y).loss
            lo = om(input_ids=x, labels=y).loss
        tol = 1e-5 if precision == "fp32" else 5e-2
        assert abs(float(lp) - float(lo)) < tol, (t, float(lp), float(lo))
        lp.backward(), lo.backward()
        po.step(), oo.step()
        pm.base_model.update_and_allocate(t)
        budget, _ = om.update_and_allocate(t)
        assert budget == pm.base_model.rankallocator.budget_schedule(t)[0], t
        kept = int(om.rankallocator.mask.sum())
        assert kept <= budget, t
        theirs = torch.cat(
            [
                pm.base_model.model.get_submodule(n).lora_E["default"].detach().view(1, -1) != 0
                for n in om.adapter_layers()
            ]
        )
        ours = torch.cat([l.lora_E.detach().view(1, -1) != 0 for l in om.adapter_layers().values()])
        same_masks += int(torch.equal(theirs, ours))
        if precision == "fp32":
            assert torch.equal(theirs, ours), t  # the lambdas PEFT zeroed are the ones we zeroed
        po.zero_grad(), oo.zero_grad()
    if precision == "fp32":
        assert same_masks == 10


# ---------------------------------------------------------------- training under autocast
@pytest.mark.parametrize("precision", PRECISIONS)
def test_training_allocates_on_device(base, device, precision):
    m = AdaLoraModel(copy.deepcopy(base), AdaLoraConfig(**CFG)).to(device)
    losses = train(m, device, precision=precision)
    assert torch.isfinite(losses).all()
    alloc = m.rankallocator
    assert alloc.mask.device.type == device.type and int(alloc.step) == 8
    assert sum(m.final_ranks().values()) <= alloc.bT
    assert all(p.dtype == torch.float32 for n, p in m.named_parameters() if "lora_" in n)
    pattern = m.config_.rank_pattern
    assert sum(map(sum, pattern.values())) == sum(m.final_ranks().values())


# ---------------------------------------------------------------- merge / resize / save-load
@pytest.mark.parametrize("precision", PRECISIONS)
def test_merge_unmerge_on_device(base, device, precision):
    """bf16: the base model in bf16 (adapters stay fp32); merging rounds dW into bf16."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    m = AdaLoraModel(copy.deepcopy(base).to(dtype), AdaLoraConfig(init_r=3, target_r=1))
    randomize_adapters(m)
    m.to(device)
    x = batches(1, seed=5)[0][0].to(device)
    ref = logits(m, x).float()
    w0 = {n: l.base_layer.weight.clone() for n, l in m.adapter_layers().items()}
    m.merge_adapter()
    tol = dict(rtol=1e-5, atol=1e-5) if precision == "fp32" else dict(rtol=0.05, atol=0.05)
    torch.testing.assert_close(logits(m, x).float(), ref, **tol)
    m.unmerge_adapter()
    for n, l in m.adapter_layers().items():
        err = (l.base_layer.weight.float() - w0[n].float()).abs().max()
        assert err <= (1e-6 if precision == "fp32" else 2e-2), n
    plain = m.merge_and_unload()
    torch.testing.assert_close(logits(plain, x).float(), ref, **tol)


def test_resize_on_device(base, device):
    m = AdaLoraModel(copy.deepcopy(base), AdaLoraConfig(init_r=3, target_r=1))
    randomize_adapters(m)
    m.to(device)
    names = list(m.adapter_layers())
    pattern = {f"{n}.lora_E": [i % 2 == 0, i % 3 == 0, False] for i, n in enumerate(names)}
    with torch.no_grad():
        for n, l in m.adapter_layers().items():
            l.lora_E.mul_(torch.tensor(pattern[f"{n}.lora_E"], device=device).view(-1, 1))
    x = batches(1, seed=5)[0][0].to(device)
    ref = logits(m, x)
    m.resize_modules_by_rank_pattern(pattern)
    assert all(l.lora_A.device.type == device.type for l in m.adapter_layers().values())
    # smaller matrices, other kernels: equal up to rounding (exactness on CPU: test_model_io)
    torch.testing.assert_close(logits(m, x), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("resize", [True, False])
def test_save_load_on_device(base, device, tmp_path, resize):
    m = AdaLoraModel(copy.deepcopy(base), AdaLoraConfig(**CFG)).to(device)
    train(m, device)
    x = batches(1, seed=5)[0][0].to(device)
    ref = logits(m, x)
    m.save_pretrained(tmp_path, resize=resize)
    loaded = AdaLoraModel.from_pretrained(
        copy.deepcopy(base).to(device), tmp_path, is_trainable=not resize
    )
    assert all(p.device.type == device.type for p in loaded.parameters())
    torch.testing.assert_close(logits(loaded, x), ref, rtol=1e-5, atol=1e-5)
    assert loaded.final_ranks() == m.final_ranks()
    if not resize:  # the allocator state comes back (to the device) and training continues
        assert torch.equal(loaded.rankallocator.mask, m.rankallocator.mask)
        assert loaded.rankallocator.last_step() == 8
        with pytest.raises(ValueError, match="after step 8"):
            loaded.update_and_allocate(8)


# ---------------------------------------------------------------- no host sync (CUDA)
def test_no_host_sync_on_cuda(base, device):
    """update_and_allocate (masking steps included) never syncs; our training step adds no sync
    to what the wrapped model and the optimizer do themselves (CPU: test_allocator.py's meta
    device test covers the same)."""
    if device.type != "cuda":
        pytest.skip("needs CUDA (on the CPU: test_allocator.py::test_no_host_reads_on_meta)")
    x, y = on(device, batches(1, seed=3)[0])

    def step(model, opt):
        def run():
            model(input_ids=x, labels=y).loss.backward()
            opt.step()

        return run

    plain = copy.deepcopy(base).to(device).train()
    m = AdaLoraModel(copy.deepcopy(base), AdaLoraConfig(**CFG)).to(device).train()
    plain_opt = torch.optim.AdamW(plain.parameters(), lr=1e-3)
    opt = torch.optim.AdamW(trainable(m), lr=1e-3)
    for _ in range(2):  # warm-up: lazy state (optimizer, cuBLAS) is created outside the check
        step(plain, plain_opt)()
        step(m, opt)()
    m.update_and_allocate(1)
    opt.zero_grad(set_to_none=False)
    base_syncs = sync_sites(step(plain, plain_opt))
    ours_syncs = sync_sites(step(m, opt))
    assert len(ours_syncs) <= len(base_syncs), (ours_syncs, base_syncs)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for t in (2, 3):  # budgeting phase, deltaT = 1: both are masking steps
            _, pattern = m.update_and_allocate(t)
            assert pattern is not None
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert sum(map(sum, pattern.values())) <= m.rankallocator.last_budget  # read afterwards
