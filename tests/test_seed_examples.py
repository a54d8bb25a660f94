"""The seed API (PEFT's AdaLoraModel page) run as written, on small models built from configs:
(a) the T5 example: a PEFT-style AdaLoraConfig and ``AdaLoraModel(model, config, "default")``,
also with ``low_cpu_mem_usage=True`` (meta weights, materialised by load_state_dict(assign=True));
(b) the Trainer with ``AdaLoRACallback``; (c) the manual loop from step 0 calling
``model.base_model.update_and_allocate(i_step)``."""

from __future__ import annotations

import pytest
import torch
from adalora_helpers import tiny_bert
from transformers import T5Config, T5ForConditionalGeneration, Trainer, TrainingArguments

from adalora import AdaLoRACallback, AdaLoraCallback, AdaLoraConfig, AdaLoraModel

T5_TINY = dict(
    vocab_size=100,
    d_model=16,
    d_kv=8,
    d_ff=32,
    num_layers=2,
    num_heads=2,
    decoder_start_token_id=0,
    pad_token_id=0,
)


def t5(seed: int = 0):
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(T5Config(**T5_TINY, dropout_rate=0.0))


def seed_config(total_step: int = 8, **kw):
    """The seed page's config, word for word, plus total_step (PEFT requires it) and a small
    schedule so that allocation happens within a few steps."""
    return AdaLoraConfig(
        peft_type="ADALORA",
        task_type="SEQ_2_SEQ_LM",
        init_r=12,
        lora_alpha=32,
        target_modules=["q", "v"],
        lora_dropout=0.01,
        total_step=total_step,
        **kw,
    )


def seq2seq_batch(seed: int = 0, bs: int = 4):
    g = torch.Generator().manual_seed(seed)
    return {
        "input_ids": torch.randint(2, 100, (bs, 9), generator=g),
        "labels": torch.randint(2, 100, (bs, 5), generator=g),
    }


# ------------------------------------------------------------------ (a) the T5 example
def test_a_t5_example():
    config = seed_config()
    assert config.peft_type == "ADALORA" and config.task_type == "SEQ_2_SEQ_LM"
    model = t5()
    adalora_model = AdaLoraModel(model, config, "default")
    names = list(adalora_model.adapter_layers())
    # q and v of every attention: encoder self, decoder self and decoder cross (2 layers each)
    assert len(names) == 2 * (2 + 2 * 2)
    assert {n.rsplit(".", 1)[1] for n in names} == {"q", "v"}
    assert adalora_model.rankallocator.b0 == 12 * 12
    assert adalora_model.base_model is adalora_model and adalora_model.base_model.model is model
    batch = seq2seq_batch()
    out = adalora_model.train()(**batch)
    assert torch.isfinite(out.loss) and adalora_model.last_orth_reg is not None
    out.loss.backward()
    assert all(layer.lora_A.grad is not None for layer in adalora_model.adapter_layers().values())


def test_a_same_modules_as_peft():
    peft = pytest.importorskip("peft")
    cfg = peft.AdaLoraConfig(
        peft_type="ADALORA",
        task_type="SEQ_2_SEQ_LM",
        init_r=12,
        lora_alpha=32,
        target_modules=["q", "v"],
        lora_dropout=0.01,
        total_step=8,
    )
    theirs = peft.tuners.adalora.AdaLoraModel(t5(), cfg, "default").targeted_module_names
    ours = AdaLoraModel(t5(), seed_config(), "default").adapter_layers()
    assert set(ours) == set(theirs)


def test_a_low_cpu_mem_usage():
    """PEFT's meaning: adapter weights on the meta device, filled in by
    load_state_dict(..., assign=True); the rank allocator follows onto the real device."""
    trained = AdaLoraModel(t5(), seed_config(), "default")
    with torch.no_grad():
        for n, p in trained.named_parameters():
            if "lora_" in n:
                p.normal_(0, 0.1)
    empty = AdaLoraModel(t5(), seed_config(), "default", low_cpu_mem_usage=True)
    lora = [p for n, p in empty.named_parameters() if "lora_" in n]
    assert lora and all(p.is_meta for p in lora)
    assert not any(p.is_meta for n, p in empty.named_parameters() if "lora_" not in n)
    # PEFT's usage: only the adapter weights, strict=False
    sd = {k: v for k, v in trained.state_dict().items() if "lora_" in k}
    result = empty.load_state_dict(sd, strict=False, assign=True)
    assert not [k for k in result.missing_keys if "lora_" in k] and not result.unexpected_keys
    assert not any(p.is_meta for p in empty.parameters())
    assert not any(b.is_meta for b in empty.buffers())
    assert all(p.requires_grad for n, p in empty.named_parameters() if "lora_" in n)
    batch = seq2seq_batch(1)
    with torch.no_grad():
        torch.testing.assert_close(
            empty.eval()(**batch).logits, trained.eval()(**batch).logits, rtol=0, atol=0
        )
    # and it trains and allocates like a model built the ordinary way
    empty.train()(**batch).loss.backward()
    assert empty.update_and_allocate(0)[0] == 144


def test_a_low_cpu_mem_usage_full_state_dict():
    """A whole state_dict (base, adapters and allocator state) assigned in one go."""
    ref = AdaLoraModel(tiny_bert(), AdaLoraConfig(init_r=4, target_r=2, total_step=8))
    with torch.no_grad():
        ref.rankallocator.ipt_E.add_(1.0)
        ref.rankallocator.mask[0, 1] = False
    m = AdaLoraModel(
        tiny_bert(seed=1), AdaLoraConfig(init_r=4, target_r=2, total_step=8), low_cpu_mem_usage=True
    )
    m.load_state_dict(ref.state_dict(), assign=True)
    assert not any(t.is_meta for t in [*m.parameters(), *m.buffers()])
    sa, sb = ref.state_dict(), m.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------ (b) the Trainer + callback
class Seq2SeqData(torch.utils.data.Dataset):
    def __init__(self, n: int = 16):
        b = seq2seq_batch(3, bs=n)
        self.rows = [{k: v[i] for k, v in b.items()} for i in range(n)]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def test_b_trainer_with_AdaLoRACallback(tmp_path):
    assert AdaLoRACallback is AdaLoraCallback
    model = AdaLoraModel(t5(), seed_config(total_step=6, target_r=4, tinit=1, tfinal=2), "default")
    callback = AdaLoRACallback()
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=6,
        learning_rate=1e-2,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
    )
    Trainer(model=model, args=args, train_dataset=Seq2SeqData(), callbacks=[callback]).train()
    assert [h["step"] for h in callback.history] == [0, 1, 2, 3, 4, 5]
    assert callback.history[0]["budget"] == 144 and callback.history[-1]["budget"] == 48
    assert sum(model.final_ranks().values()) <= 48
    assert model.peft_config["default"].rank_pattern is not None


# ------------------------------------------------------------------ (c) the manual loop
def test_c_manual_loop_from_step_zero():
    model = AdaLoraModel(t5(), seed_config(total_step=6, target_r=4, tinit=1, tfinal=2), "default")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    budgets = []
    for i_step in range(6):
        loss = model(**seq2seq_batch(i_step)).loss
        loss.backward()
        optimizer.step()
        model.base_model.update_and_allocate(i_step)
        budgets.append(model.rankallocator.last_budget)
        optimizer.zero_grad()
    assert budgets[0] == 144 and budgets[-1] == 48
    assert sum(model.final_ranks().values()) <= 48
    ranks = model.final_ranks()
    peft_pattern = model.peft_config["default"].rank_pattern
    assert {f"{n}.lora_E": r for n, r in ranks.items()} == {
        k: sum(v) for k, v in peft_pattern.items()
    }


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_c_same_budgets_as_peft_loop():
    """The same loop with PEFT (``model.base_model.update_and_allocate(i_step)`` on a
    PeftModel) and ours from the same weights: the same budgets and rank patterns."""
    peft = pytest.importorskip("peft")
    kw = dict(
        task_type="SEQ_2_SEQ_LM",
        init_r=12,
        target_r=4,
        lora_alpha=32,
        target_modules=["q", "v"],
        lora_dropout=0.0,
        total_step=6,
        tinit=1,
        tfinal=2,
    )
    pm = peft.get_peft_model(t5(), peft.AdaLoraConfig(**kw))
    om = AdaLoraModel(t5(), AdaLoraConfig(**kw), "default")
    psd = {
        k.replace("base_model.model.", "").replace(".default", ""): v
        for k, v in pm.state_dict().items()
    }
    with torch.no_grad():
        for n, p in om.model.named_parameters():
            p.copy_(psd[n])
    po = torch.optim.AdamW([p for p in pm.parameters() if p.requires_grad], lr=1e-2)
    oo = torch.optim.AdamW([p for p in om.parameters() if p.requires_grad], lr=1e-2)
    for model, opt in ((pm, po), (om, oo)):
        model.train()
        for i_step in range(6):
            model(**seq2seq_batch(i_step)).loss.backward()
            opt.step()
            model.base_model.update_and_allocate(i_step)
            opt.zero_grad()
    theirs = {
        k.replace(".default", ""): list(v)
        for k, v in pm.peft_config["default"].rank_pattern.items()
    }
    assert theirs == {k: list(v) for k, v in om.peft_config["default"].rank_pattern.items()}
    assert om.rankallocator.last_budget == pm.base_model.rankallocator.budget_schedule(5)[0] == 48
