"""One step convention: t = optimizer steps completed before this one (0-based), as in PEFT's
loops and the authors' Trainer. The same tiny training through transformers.Trainer +
AdaLoraCallback and through a manual loop ``for step in range(T): ...;
model.update_and_allocate(step)`` gives identical budgets at every step, identical rank masks
at a mid step and at the end, and identical adapter weights."""

from __future__ import annotations

import copy

import torch
from adalora_helpers import tiny_bert, trainable
from transformers import Trainer, TrainerCallback, TrainingArguments

from adalora import AdaLoraCallback, AdaLoraConfig, AdaLoraModel
from adalora.schedule import budget_at

T, BS, MID = 10, 4, 5
SCHED = dict(init_r=4, target_r=2, tinit=2, tfinal=3, deltaT=1, total_step=T, lora_alpha=8)


class DS(torch.utils.data.Dataset):
    def __init__(self, n=T * BS, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, 100, (n, 8), generator=g)
        self.y = torch.randint(0, 2, (n,), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": self.y[i]}


class Snapshot(TrainerCallback):
    """The keep-mask right after the allocation of step t = MID (runs after AdaLoraCallback;
    on_optimizer_step sees global_step before the Trainer increments it, i.e. t)."""

    def __init__(self, model):
        self.model, self.mask = model, None

    def on_optimizer_step(self, args, state, control, **kwargs):
        if state.global_step == MID:
            self.mask = self.model.rankallocator.mask.clone()


def fresh():
    """The same initial model for both runs: no dropout anywhere (tiny_bert sets 0)."""
    return AdaLoraModel(tiny_bert(seed=3), AdaLoraConfig(**SCHED))


def test_trainer_and_manual_loop_agree(tmp_path):
    start = fresh()
    ds = DS()

    # 1) transformers.Trainer + AdaLoraCallback: constant LR, no warm-up, no clipping,
    #    sequential batches, AdamW
    a = copy.deepcopy(start)
    opt_a = torch.optim.AdamW(trainable(a), lr=1e-2)
    cb, snap = AdaLoraCallback(), Snapshot(a)
    targs = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=BS,
        max_steps=T,
        learning_rate=1e-2,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=0.0,
        train_sampling_strategy="sequential",
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
    )
    Trainer(
        model=a,
        args=targs,
        train_dataset=ds,
        optimizers=(opt_a, None),
        callbacks=[cb, snap],
    ).train()

    # 2) the manual loop of PEFT's docs, from step 0
    b = copy.deepcopy(start)
    opt_b = torch.optim.AdamW(trainable(b), lr=1e-2)
    b.train()
    budgets, mid_mask = [], None
    for step in range(T):
        batch = {
            k: torch.stack([ds[i][k] for i in range(step * BS, (step + 1) * BS)])
            for k in ("input_ids", "labels")
        }
        loss = b(**batch).loss
        loss.backward()
        opt_b.step()
        budget, _ = b.update_and_allocate(step)
        opt_b.zero_grad()
        budgets.append(budget)
        if step == MID:
            mid_mask = b.rankallocator.mask.clone()

    assert [h["step"] for h in cb.history] == list(range(T))
    assert [h["budget"] for h in cb.history] == budgets
    assert budgets == [budget_at(t, 48, 24, 2, 3, T).budget for t in range(T)]
    assert budgets[0] == 48 and budgets[-1] == 24 and len(set(budgets)) > 2
    assert snap.mask is not None and torch.equal(snap.mask, mid_mask)
    assert not mid_mask.all()  # masking had started by then
    assert torch.equal(a.rankallocator.mask, b.rankallocator.mask)
    assert a.final_ranks() == b.final_ranks() and len(set(b.final_ranks().values())) > 1
    assert a.config_.rank_pattern == b.config_.rank_pattern
    assert a.rankallocator.last_step() == b.rankallocator.last_step() == T - 1
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb
        torch.testing.assert_close(pa, pb, rtol=0, atol=0, msg=na)
