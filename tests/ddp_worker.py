"""One rank of the DDP test (tests/test_ddp.py): launched by torchrun, gloo on CPU.

Trains an AdaLoraModel wrapped in DistributedDataParallel on data that differs per rank and
calls update_and_allocate after every optimizer step, then writes what it ended with to
<out_dir>/rank<r>.json. Buffers are not broadcast (broadcast_buffers=False): the masks must
agree because the all-reduced gradients give every rank the same scores."""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist
from adalora_helpers import batches, tiny_bert, trainable  # tests/ is the script's folder
from torch.nn.parallel import DistributedDataParallel as DDP

from adalora import AdaLoraConfig, AdaLoraModel


def main(out_dir: str, steps: int = 10) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    base = tiny_bert(seed=0)  # same base weights on every rank
    torch.manual_seed(1234 + rank)  # different adapter init per rank: DDP must sync it
    model = AdaLoraModel(
        base,
        AdaLoraConfig(
            init_r=4, target_r=2, tinit=2, tfinal=3, deltaT=1, total_step=steps, orth_reg_weight=0.1
        ),
    )
    ddp = DDP(model, broadcast_buffers=False)
    opt = torch.optim.AdamW(trainable(model), lr=2e-2)
    losses, patterns, scores, masks = [], [], [], []
    for t, (x, y) in enumerate(batches(steps, seed=100 + rank), start=1):  # per-rank data
        loss = ddp(input_ids=x, labels=y).loss
        loss.backward()
        opt.step()
        _, pattern = model.update_and_allocate(t)
        opt.zero_grad()
        losses.append(float(loss.detach()))
        scores.append(model.rankallocator.triplet_scores().view(-1).tolist())
        masks.append(model.rankallocator.mask.int().tolist())
        patterns.append(None if pattern is None else {k: list(v) for k, v in pattern.items()})
    alloc = model.rankallocator
    out = {
        "rank": rank,
        "world": dist.get_world_size(),
        "losses": losses,
        "mask": alloc.mask.int().tolist(),
        "patterns": patterns,
        "final_ranks": model.final_ranks(),
        "lambda": {
            n: l.lora_E.detach().view(-1).tolist() for n, l in model.adapter_layers().items()
        },
        "scores": scores,  # triplet scores after every step (reset to 0 at T - tfinal)
        "masks": masks,
    }
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(out, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
