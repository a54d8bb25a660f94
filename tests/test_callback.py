"""AdaLoraCallback with a real transformers.Trainer (CPU, tiny BERT, in-memory dataset)."""

from __future__ import annotations

import copy
import inspect
import warnings

import pytest
import torch
from adalora_helpers import tiny_bert
from transformers import Trainer, TrainerControl, TrainerState, TrainingArguments

from adalora import AdaLoraCallback, AdaLoraConfig, AdaLoraModel, LoraConfig
from adalora.schedule import budget_at


class DS(torch.utils.data.Dataset):
    def __init__(self, n=16, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, 100, (n, 8), generator=g)
        self.y = torch.randint(0, 2, (n,), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {
            "input_ids": self.x[i],
            "attention_mask": torch.ones(8, dtype=torch.long),
            "labels": self.y[i],
        }


def args(tmp_path, **kw):
    a = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        max_steps=6,
        learning_rate=2e-2,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
    )
    a.update(kw)
    return TrainingArguments(**a)


@pytest.fixture(scope="module")
def base():
    return tiny_bert()


def counting(model, name):
    calls = []
    orig = getattr(model, name)

    def wrapped(*a, **kw):
        calls.append(a)
        return orig(*a, **kw)

    setattr(model, name, wrapped)
    return calls


def test_trainer_gradient_accumulation(base, tmp_path):
    cfg = AdaLoraConfig(init_r=4, target_r=2, tinit=1, tfinal=2, deltaT=1, total_step=None)
    m = AdaLoraModel(copy.deepcopy(base), cfg)
    calls = counting(m, "update_and_allocate")
    cb = AdaLoraCallback(log_ranks=True)
    # 16 examples, batch 2 x accumulation 2: 6 optimizer steps = 12 forward/backward passes
    tr = Trainer(model=m, args=args(tmp_path), train_dataset=DS(), callbacks=[cb])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "allocation never ran" warning
        tr.train()
    assert cfg.total_step == 6  # taken from the Trainer
    # once per optimizer step, with the steps completed before it (0-based, as PEFT's loops)
    assert [c[0] for c in calls] == [0, 1, 2, 3, 4, 5]
    assert [h["step"] for h in cb.history] == [0, 1, 2, 3, 4, 5]
    # budgeting length 6 - 2 - 1 = 3: t = 2: 24 * (2/3)^3 = 7.1 -> 31; t = 3: 24 / 27 -> 24
    expected = [budget_at(t, 48, 24, 1, 2, 6).budget for t in range(6)]
    assert [h["budget"] for h in cb.history] == expected == [48, 48, 31, 24, 24, 24]
    assert 0 < int(m.rankallocator.mask.sum()) <= 24
    assert m.config_.rank_pattern is not None
    logs = [h for h in tr.state.log_history if "loss" in h]
    assert len(logs) == 6
    # the row the Trainer logs at global_step s carries the budget of allocation t = s - 1
    assert [h["step"] for h in logs] == [1, 2, 3, 4, 5, 6]
    assert [h["adalora/budget"] for h in logs] == expected
    assert all("adalora/orth_reg" in h for h in logs)
    assert "adalora/mask_threshold" in logs[-1]
    rank_keys = [k for k in logs[-1] if k.startswith("adalora/rank/")]
    assert len(rank_keys) == 12 and sum(logs[-1][k] for k in rank_keys) == int(
        m.rankallocator.mask.sum()
    )


def test_trainer_paper_variant(base, tmp_path):
    cfg = AdaLoraConfig(init_r=4, target_r=2, tinit=1, tfinal=2, variant="paper", total_step=6)
    m = AdaLoraModel(copy.deepcopy(base), cfg)
    pre = counting(m, "update_importance")
    cb = AdaLoraCallback()
    Trainer(model=m, args=args(tmp_path), train_dataset=DS(), callbacks=[cb]).train()
    assert len(pre) == 6  # before every optimizer.step() (a no-op once the scores freeze)
    assert [h["step"] for h in cb.history] == [0, 1, 2, 3, 4, 5]
    assert int(m.rankallocator.ipt_E.abs().sum()) == 0  # "fixed": scores reset at T - tfinal
    assert 0 < int(m.rankallocator.mask.sum()) <= 24
    # the masked lambdas are zero at the end of training
    for i, layer in enumerate(m.rankallocator._layers):
        assert torch.all(layer.lora_E.detach().view(-1)[~m.rankallocator.mask[i]] == 0)


def test_trainer_lora_baseline(base, tmp_path):
    m = AdaLoraModel(copy.deepcopy(base), LoraConfig(r=2))
    cb = AdaLoraCallback()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        Trainer(
            model=m, args=args(tmp_path, max_steps=2), train_dataset=DS(), callbacks=[cb]
        ).train()
    assert cb.history == []
    assert all(l.lora_B.abs().sum() > 0 for l in m.adapter_layers().values())  # LoRA trained


def _state(max_steps):
    s = TrainerState()
    s.max_steps = max_steps
    return s


def test_callback_hooks_directly(base, tmp_path):
    a = args(tmp_path)
    m = AdaLoraModel(copy.deepcopy(base), AdaLoraConfig(init_r=2, target_r=1, tinit=5, tfinal=5))
    cb = AdaLoraCallback()
    with pytest.raises(ValueError, match="No budgeting phase"):
        cb.on_train_begin(a, _state(10), TrainerControl(), model=m)
    m2 = AdaLoraModel(copy.deepcopy(base), AdaLoraConfig(init_r=2, target_r=1, total_step=50))
    with pytest.warns(UserWarning, match="total_step=50 but the Trainer runs 20"):
        cb.on_train_begin(a, _state(20), TrainerControl(), model=m2)
    # training ended (20 optimizer steps) without a single allocation: warn
    ended = _state(20)
    ended.global_step = 20
    with pytest.warns(UserWarning, match="without a single update_and_allocate"):
        cb.on_train_end(a, ended, TrainerControl(), model=m2)
    with warnings.catch_warnings():  # no step was taken: nothing to warn about
        warnings.simplefilter("error")
        cb.on_train_end(a, _state(20), TrainerControl(), model=m2)
    with pytest.raises(TypeError, match="needs the Trainer's model to be an AdaLoraModel"):
        cb.on_train_begin(a, _state(20), TrainerControl(), model=base)


def test_forward_shows_the_wrapped_signature(base, tmp_path):
    """Trainer(remove_unused_columns=True), the default, keeps only the batch keys named by
    inspect.signature(model.forward): (*args, **kwargs) would drop them all."""
    m = AdaLoraModel(copy.deepcopy(base), AdaLoraConfig(init_r=2, target_r=1))
    params = list(inspect.signature(m.forward).parameters)
    assert params[:3] == ["input_ids", "attention_mask", "token_type_ids"] and "labels" in params
    tr = Trainer(model=m, args=args(tmp_path), train_dataset=DS())
    batch = next(iter(tr.get_train_dataloader()))
    assert {"input_ids", "attention_mask", "labels"} <= set(batch)
    # a deep copy's forward runs the copy, not the original
    c = copy.deepcopy(m)
    assert c.forward.__self__ is c
    with torch.no_grad():
        for layer in c.adapter_layers().values():
            layer.lora_E.fill_(1.0)
        x = DS().x[:2]
        assert not torch.allclose(c(input_ids=x).logits, m(input_ids=x).logits)
