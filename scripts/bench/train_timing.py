"""bench_train's timing (scripts/bench_train.py): one training configuration and its timed
step, the training results and ratios, and the timed evaluation passes."""

from __future__ import annotations

import copy
import math
import time

import torch

from scripts.bench.timing import med, summary
from scripts.bench.train_data import token_counts, token_totals

PRECISIONS = ("fp32", "bf16")
SAMPLERS = ("random", "grouped")
REFERENCE = "fp32+random"
EVAL_REFERENCE = "file+b32+fp32"


def adapted_copy(base, cfg, seed: int):
    """(model, allocates): a copy of ``base`` wrapped as the GLUE runner wraps it, adapters
    initialised from ``seed`` (the same for every configuration); allocates when it is AdaLoRA
    with a rank allocator."""
    from experiments.methods import wrap_model

    torch.manual_seed(seed)
    plain, ada = wrap_model(copy.deepcopy(base), cfg)
    net = ada if ada is not None else plain
    return net, ada is not None and ada.rankallocator is not None


def decay_groups(model, weight_decay: float) -> list[dict]:
    """The Trainer's AdamW parameter groups: no weight decay on biases and norms."""
    from torch import nn
    from transformers.trainer_pt_utils import get_parameter_names

    forbidden = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
    decay = set(get_parameter_names(model, [nn.LayerNorm], forbidden))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if n in decay], "weight_decay": weight_decay},
        {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
    ]


class Config:
    """One training configuration: its own model copy, optimizer and step counter."""

    def __init__(self, name, precision, sampler, base, cfg, seed):
        self.name, self.precision, self.sampler = name, precision, sampler
        self.net, self.allocate = adapted_copy(base, cfg, seed)
        self.net.train()
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(
            decay_groups(self.net, cfg.weight_decay), lr=cfg.lr, fused=True
        )
        self.t = 0
        self.step_s, self.alloc_s, self.real, self.padded, self.losses = [], [], [], [], []
        self.rounds: list[dict] = []  # per round: seconds, real and padded tokens

    def step(self, batch, timed: bool) -> None:
        bf16 = self.precision == "bf16"
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = self.net(**batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        t1 = time.perf_counter()
        if self.allocate:
            self.net.update_and_allocate(self.t)
        t2 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        self.t += 1
        self.losses.append(float(out.loss.detach()))
        if timed:
            real, padded = token_counts(batch)
            self.step_s.append(t3 - t0)
            self.alloc_s.append(t2 - t1)
            self.real.append(real)
            self.padded.append(padded)


def train_results(cfgs: dict) -> tuple[dict, dict]:
    res, ratios = {}, {}
    ref = cfgs[REFERENCE]
    for name, c in cfgs.items():
        total_s = sum(c.step_s)
        res[name] = {
            "precision": c.precision,
            "sampler": c.sampler,
            "steps": len(c.step_s),
            "real_tokens": sum(c.real),
            "padded_tokens": sum(c.padded),
            "seconds": total_s,
            "real_tokens_per_s": sum(c.real) / total_s,
            "padded_tokens_per_s": sum(c.padded) / total_s,
            "s_per_step_median": med(c.step_s),
            "s_per_step_mean": total_s / len(c.step_s),
            "allocate_ms_median": med(c.alloc_s) * 1e3,
            "padding_fraction": 1 - sum(c.real) / sum(c.padded),
            "loss_first": c.losses[0],
            "loss_last": c.losses[-1],
            "all_losses_finite": all(math.isfinite(x) for x in c.losses),
            "per_round_real_tokens_per_s": [r["real"] / r["s"] for r in c.rounds],
        }
        per_round = [
            (r["real"] / r["s"]) / (q["real"] / q["s"]) for r, q in zip(c.rounds, ref.rounds)
        ]
        ratios[name] = {
            "real_tokens_per_s_ratio_per_round": summary(per_round),
            "real_tokens_per_s_ratio_of_totals": res[name]["real_tokens_per_s"]
            / res[REFERENCE]["real_tokens_per_s"],
            "padded_tokens_per_s_ratio_of_totals": res[name]["padded_tokens_per_s"]
            / res[REFERENCE]["padded_tokens_per_s"],
        }
    return res, ratios


def pair_ratios(train: dict) -> dict:
    """Each factor on its own, per round: bf16 / fp32 within a sampler, grouped / random within
    a precision (ratios of real tokens/s; median, p25, p75 over rounds)."""
    pairs = {f"bf16/fp32 ({s})": (f"bf16+{s}", f"fp32+{s}") for s in SAMPLERS}
    pairs.update({f"grouped/random ({p})": (f"{p}+grouped", f"{p}+random") for p in PRECISIONS})
    out = {}
    for key, (a, b) in pairs.items():
        ra, rb = train[a]["per_round_real_tokens_per_s"], train[b]["per_round_real_tokens_per_s"]
        out[key] = {
            **summary([x / y for x, y in zip(ra, rb)]),
            "ratio_of_totals": train[a]["real_tokens_per_s"] / train[b]["real_tokens_per_s"],
        }
    return out


# ------------------------------------------------------------------------------ evaluation
def eval_pass(net, batches, bf16: bool) -> float:
    net.eval()
    t0 = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for b in batches:
            net(**b)
    return time.perf_counter() - t0


def time_evals(args, net, evals_sorted, evals_file, collator) -> tuple[dict, dict]:
    """One pass over every dev split per config, --eval-repeats times in rotating order."""
    from torch.utils.data import DataLoader

    def batches(sets, bs):
        out = []
        for exs in sets.values():
            out.extend(DataLoader(exs, batch_size=bs, shuffle=False, collate_fn=collator))
        return out

    configs = {}
    for order, sets in (("file", evals_file), ("sorted", evals_sorted)):
        for bs in args.eval_batch_sizes:
            bl = batches(sets, bs)
            for prec in PRECISIONS:
                configs[f"{order}+b{bs}+{prec}"] = (bl, prec == "bf16")
    names = list(configs)
    times = {n: [] for n in names}
    eval_pass(net, configs[names[0]][0][:1], False)  # warm-up
    for r in range(args.eval_repeats):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            bl, bf16 = configs[n]
            times[n].append(eval_pass(net, bl, bf16))
        print(
            f"  eval repeat {r + 1}/{args.eval_repeats}: "
            + "  ".join(f"{n} {times[n][-1]:.1f}s" for n in names),
            flush=True,
        )
    n_ex = sum(len(v) for v in evals_sorted.values())
    res, ratios = {}, {}
    ref = EVAL_REFERENCE if EVAL_REFERENCE in names else names[0]
    for n in names:
        bl, _ = configs[n]
        real, padded = token_totals(bl)
        s = med(times[n])
        res[n] = {
            "seconds_median": s,
            "seconds": times[n],
            "examples": n_ex,
            "batches": len(bl),
            "examples_per_s": n_ex / s,
            "real_tokens_per_s": real / s,
            "padded_tokens": padded,
            "padding_fraction": 1 - real / padded,
        }
        ratios[n] = {"speedup_per_repeat": summary([a / b for a, b in zip(times[ref], times[n])])}
    return res, ratios
