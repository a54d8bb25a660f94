"""Shared pieces of the core test suite: tiny models built from config, batches, a train loop."""

from __future__ import annotations

import torch
from torch import nn

BERT_TARGETS = [
    "query",
    "key",
    "value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
]
# A tiny AdaLoRA schedule that masks at every step of an 8-step run (parity and device tests).
TINY_ADALORA = dict(
    init_r=4,
    target_r=2,
    tinit=1,
    tfinal=2,
    deltaT=1,
    total_step=8,
    lora_alpha=8,
    target_modules=BERT_TARGETS,
)


def tiny_bert_config(**kw):
    from transformers import BertConfig

    cfg = dict(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    cfg.update(kw)
    return BertConfig(**cfg)


def tiny_bert(seed: int = 0, **kw):
    """BertForSequenceClassification: 2 layers -> 12 adapted matrices with the default targets."""
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(tiny_bert_config(**kw))


def batches(n: int, seed: int = 1, bs: int = 4, seq: int = 7, vocab: int = 100):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randint(0, vocab, (bs, seq), generator=g), torch.randint(0, 2, (bs,), generator=g))
        for _ in range(n)
    ]


def train(model, opt, data, start: int = 1, allocate: bool = True):
    """Plain loop: forward, backward, step, update_and_allocate(t), zero_grad. Returns losses."""
    model.train()
    losses = []
    for t, (x, y) in enumerate(data, start=start):
        loss = model(input_ids=x, labels=y).loss
        loss.backward()
        opt.step()
        if allocate:
            model.update_and_allocate(t)
        opt.zero_grad()
        losses.append(float(loss.detach()))
    return losses


def trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def randomize_adapters(model, seed: int = 0, std: float = 0.3) -> None:
    """Give every adapter (and lambda) a non-zero value so that dW != 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * std)


class TwoLinear(nn.Module):
    """Two tiny Linear layers (weights out x in = 2 x 2 and 3 x 2) for hand-computed scores."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 2)
        self.b = nn.Linear(2, 3)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))
