"""Parity with Hugging Face PEFT 0.21 (variant "peft"): same initial weights and batches ->
same budgets, identical masks and rank patterns at every step, losses within 1e-5; adapters
saved by either library load in the other to the same logits (AdaLoRA and LoRA)."""

from __future__ import annotations

import copy

import pytest
import torch

peft = pytest.importorskip("peft")

from adalora_helpers import (  # noqa: E402
    BERT_TARGETS,
    TINY_ADALORA,
    batches,
    randomize_adapters,
    tiny_bert,
    trainable,
)

from adalora import AdaLoraConfig, AdaLoraModel, LoraConfig  # noqa: E402

X = torch.randint(0, 100, (3, 7), generator=torch.Generator().manual_seed(11))

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    # PEFT warns so about its own AdaLoRA adapters too (LoRA-style rank_pattern check)
    pytest.mark.filterwarnings("ignore:The following rank_pattern keys:RuntimeWarning"),
]


@pytest.fixture(scope="module")
def base():
    return tiny_bert()


def copy_from_peft(pm, om) -> dict:
    """Copy PEFT's weights into ours; returns PEFT's live tensors keyed by our parameter names.
    PEFT names: ``base_model.model.`` prefix, ``.default`` adapter key, ``.weight`` on LoRA's
    nn.Linear adapters (AdaLoRA's are bare parameters), ``classifier.modules_to_save.``."""
    psd = {
        k.replace("base_model.model.", "").replace(".default", ""): v
        for k, v in pm.state_dict().items()
    }
    theirs = {}
    for n, _ in om.model.named_parameters():
        k = (
            n.replace("classifier.", "classifier.modules_to_save.")
            if n.startswith("classifier")
            else n
        )
        theirs[n] = psd[k if k in psd else f"{k}.weight"]
    with torch.no_grad():
        for n, p in om.model.named_parameters():
            p.copy_(theirs[n])
    return theirs


def peft_and_ours(base, **kw):
    """A PEFT AdaLoRA model and ours with PEFT's initial weights copied in."""
    pm = peft.get_peft_model(copy.deepcopy(base), peft.AdaLoraConfig(task_type="SEQ_CLS", **kw))
    om = AdaLoraModel(copy.deepcopy(base), AdaLoraConfig(task_type="SEQ_CLS", **kw))
    copy_from_peft(pm, om)
    return pm, om


def peft_pattern(pm):
    rp = pm.peft_config["default"].rank_pattern
    return None if rp is None else {k.replace(".default", ""): list(v) for k, v in rp.items()}


@pytest.mark.parametrize(
    "sched",
    [
        dict(tinit=2, tfinal=3, deltaT=1, total_step=12),
        dict(tinit=1, tfinal=2, deltaT=3, total_step=12),
    ],
)
def test_training_parity(base, sched):
    kw = dict(
        init_r=4,
        target_r=2,
        lora_alpha=8,
        target_modules=BERT_TARGETS,
        orth_reg_weight=0.5,
        beta1=0.85,
        beta2=0.85,
        **sched,
    )
    pm, om = peft_and_ours(base, **kw)
    assert om.trainable_parameters() == sum(p.numel() for p in pm.parameters() if p.requires_grad)
    pm.train(), om.train()
    with torch.no_grad():
        torch.testing.assert_close(om(input_ids=X).logits, pm(input_ids=X).logits, rtol=0, atol=0)
    po = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-2)
    oo = torch.optim.AdamW(trainable(om), lr=1e-2)
    masked_steps = 0
    for t, (x, y) in enumerate(batches(12, seed=2), start=1):
        lp = pm(input_ids=x, labels=y).loss
        lo = om(input_ids=x, labels=y).loss
        assert abs(float(lp) - float(lo)) < 1e-5, t
        lp.backward(), lo.backward()
        po.step(), oo.step()
        pm.base_model.update_and_allocate(t)
        budget, _ = om.update_and_allocate(t)
        assert budget == pm.base_model.rankallocator.budget_schedule(t)[0], t
        prp, orp = peft_pattern(pm), om.config_.rank_pattern
        assert (prp is None) == (orp is None), t
        if prp is not None:
            masked_steps += 1
            assert prp == {k: list(v) for k, v in orp.items()}, t
        # the lambdas PEFT zeroed are exactly the ones we zeroed
        for name, layer in om.adapter_layers().items():
            pe = pm.base_model.model.get_submodule(name).lora_E["default"]
            assert torch.equal(pe.detach() == 0, layer.lora_E.detach() == 0), (t, name)
        po.zero_grad(), oo.zero_grad()
    assert masked_steps >= 6
    ranks = om.final_ranks()
    assert sum(ranks.values()) <= 24 and len(set(ranks.values())) > 1
    pm.eval(), om.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            om(input_ids=X).logits, pm(input_ids=X).logits, rtol=1e-4, atol=1e-5
        )


KW = TINY_ADALORA


def _train_peft(pm, n=7):
    opt = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=2e-2)
    pm.train()
    for t, (x, y) in enumerate(batches(n, seed=4), start=1):
        pm(input_ids=x, labels=y).loss.backward()
        opt.step()
        pm.base_model.update_and_allocate(t)
        opt.zero_grad()
    return pm.eval()


def test_our_adapter_loads_in_peft(base, tmp_path):
    om = AdaLoraModel(copy.deepcopy(base), AdaLoraConfig(task_type="SEQ_CLS", **KW))
    opt = torch.optim.AdamW(trainable(om), lr=2e-2)
    om.train()
    for t, (x, y) in enumerate(batches(7, seed=4), start=1):
        om(input_ids=x, labels=y).loss.backward()
        opt.step()
        om.update_and_allocate(t)
        opt.zero_grad()
    om.eval()
    assert min(om.final_ranks().values()) < 4
    om.save_pretrained(tmp_path)
    pm = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    assert isinstance(pm, peft.PeftModelForSequenceClassification)
    for name, r in om.final_ranks().items():
        assert pm.base_model.model.get_submodule(name).lora_E["default"].shape[0] == r
    with torch.no_grad():
        torch.testing.assert_close(
            pm.eval()(input_ids=X).logits, om(input_ids=X).logits, rtol=0, atol=1e-6
        )


def test_peft_adapter_loads_in_ours(base, tmp_path):
    pm = _train_peft(
        peft.get_peft_model(copy.deepcopy(base), peft.AdaLoraConfig(task_type="SEQ_CLS", **KW))
    )
    pattern = peft_pattern(pm)
    assert pattern is not None
    pm.save_pretrained(tmp_path)
    with torch.no_grad():
        ref = pm(input_ids=X).logits
    om = AdaLoraModel.from_pretrained(copy.deepcopy(base), tmp_path)
    assert {f"{n}.lora_E": l.r for n, l in om.adapter_layers().items()} == {
        k: sum(v) for k, v in pattern.items()
    }
    with torch.no_grad():
        torch.testing.assert_close(om(input_ids=X).logits, ref, rtol=0, atol=1e-6)


def test_lora_export_import(base, tmp_path):
    # ours -> PEFT
    om = AdaLoraModel(copy.deepcopy(base), LoraConfig(r=3, lora_alpha=6, task_type="SEQ_CLS"))
    randomize_adapters(om, std=0.1)
    with torch.no_grad():
        ref = om.eval()(input_ids=X).logits
    om.save_pretrained(tmp_path / "ours")
    pm = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours")
    assert pm.peft_config["default"].peft_type == peft.PeftType.LORA
    with torch.no_grad():
        torch.testing.assert_close(pm.eval()(input_ids=X).logits, ref, rtol=0, atol=1e-6)
    # PEFT -> ours
    pl = peft.get_peft_model(
        copy.deepcopy(base),
        peft.LoraConfig(task_type="SEQ_CLS", r=2, lora_alpha=4, target_modules=["query", "value"]),
    )
    with torch.no_grad():
        for p in pl.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
        ref = pl.eval()(input_ids=X).logits
    pl.save_pretrained(tmp_path / "peft")
    ol = AdaLoraModel.from_pretrained(copy.deepcopy(base), tmp_path / "peft")
    assert isinstance(ol.config_, LoraConfig) and len(ol.adapter_layers()) == 4
    with torch.no_grad():
        torch.testing.assert_close(ol(input_ids=X).logits, ref, rtol=0, atol=1e-6)


def test_lora_training_parity_regression():
    """Our fixed-rank LoRA trains like PEFT's LoRA (same init, AdamW with weight decay, a
    regression head as on STS-B): per-step losses and the final adapters agree. The LoRA baseline
    of the reproduction grid is therefore PEFT's LoRA, not a variant of it."""
    base = tiny_bert(num_labels=1)
    kw = dict(r=2, lora_alpha=32, target_modules=BERT_TARGETS, lora_dropout=0.0)
    pm = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(task_type="SEQ_CLS", **kw))
    om = AdaLoraModel(copy.deepcopy(base), LoraConfig(task_type="SEQ_CLS", **kw))
    # same init distribution before copying PEFT's draws in: B = 0, A kaiming-uniform(a=sqrt(5))
    for n, p in om.model.named_parameters():
        if "lora_B" in n:
            assert not p.any(), n
        elif "lora_A" in n:
            assert 0 < p.abs().max() <= 1 / p.shape[1] ** 0.5 + 1e-6, n
    theirs = copy_from_peft(pm, om)
    n_peft = sum(p.numel() for p in pm.parameters() if p.requires_grad)
    assert om.trainable_parameters() == n_peft
    po = torch.optim.AdamW(
        [p for p in pm.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1
    )
    oo = torch.optim.AdamW(trainable(om), lr=1e-2, weight_decay=0.1)
    pm.train(), om.train()
    g = torch.Generator().manual_seed(3)
    for step in range(10):
        x = torch.randint(0, 100, (4, 7), generator=g)
        y = torch.rand(4, generator=g) * 5  # STS-B-like targets in [0, 5]
        lp, lo = pm(input_ids=x, labels=y).loss, om(input_ids=x, labels=y).loss
        torch.testing.assert_close(lo, lp, rtol=0, atol=1e-5, msg=f"step {step}")
        lp.backward(), lo.backward()
        po.step(), oo.step()
        po.zero_grad(), oo.zero_grad()
    moved = 0
    for n, p in om.model.named_parameters():
        if "lora_" in n:
            torch.testing.assert_close(p, theirs[n], rtol=0, atol=1e-5, msg=n)  # PEFT's live tensor
            moved += int(p.abs().sum() > 0)
    assert moved == 2 * 12  # A and B of all 12 matrices trained
