#!/usr/bin/env python
"""Training throughput of a real GLUE run on CPU: fp32 vs bf16 autocast, random vs
length-grouped batches, and the cost of one evaluation pass (a benchmark).

Everything runs in one process. The model, tokenizer, data, budget plan and adapters come from
the GLUE runner (experiments.glue make_task and quick_preset, experiments.methods plan_budget,
schedule_steps and wrap_model). Each configuration trains its own copy of the same weights
with the same adapter initialisation. The training batches are built the way the Trainer
builds them: DataCollatorWithPadding over

    random    RandomSampler                                    (--group-by-length no)
    grouped   transformers.trainer_pt_utils.LengthGroupedSampler (--group-by-length yes)

One timed step does what the Trainer does: forward (under torch.autocast("cpu", bfloat16)
for bf16; adapters, weights and AdamW state stay fp32), backward, clip_grad_norm_(1.0),
fused AdamW step (the Trainer's default optimizer, with its weight-decay groups), AdaLoRA's
update_and_allocate(t) (the callback's call), and zero_grad. The batches are collated before
timing; the collation cost is measured separately. The timed batches are spread evenly over the
sampler's epoch, so that grouped batches of every length are timed. The two configurations of
one sampler see the same batches in the same rounds.

Configurations {fp32, bf16} x {random, grouped} take turns: R rounds of K steps each,
round-robin, and the configuration that goes first rotates every round. Per configuration the
script reports real (non-pad) tokens/s, padded tokens/s, s/step and the padding fraction, and
per round the ratio of each configuration's real tokens/s to fp32+random's in the same round
(median, p25, p75 over rounds). The rounds of one configuration are adjacent in time to those of
the others, so these ratios hold up on a loaded, shared machine; absolute timings do not.

Then one evaluation pass over the dev set (the Trainer's: SequentialSampler, the same collator,
no gradients) for {file order, sorted by length} x {batch 32, 128} x {fp32, bf16}, repeated
--eval-repeats times in rotating order.

    python scripts/bench_train.py --task stsb --method adalora --rounds 30 --steps-per-round 2
    # -> results/bench/train_cpu_stsb_adalora.json
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import sys
import time
import warnings
from argparse import Namespace
from datetime import datetime, timezone
from pathlib import Path

import torch

from experiments import provenance
from experiments.results import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
SHARED_GLUE = ROOT.parent / "shared" / "data" / "glue"
PRECISIONS = ("fp32", "bf16")
SAMPLERS = ("random", "grouped")
REFERENCE = "fp32+random"
EVAL_REFERENCE = "file+b32+fp32"
METHODS = ("adalora", "lora")


def parse_args(argv=None):
    from experiments.glue import TASK_CHOICES

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--task", default="stsb", choices=TASK_CHOICES)
    p.add_argument("--method", default="adalora", choices=METHODS)
    p.add_argument("--model", default="minilm", help="'minilm' or a local model folder")
    p.add_argument(
        "--data-dir",
        default=None,
        help="GLUE folder (default: $GLUE_DIR, else ../shared/data/glue when present)",
    )
    p.add_argument("--rounds", type=int, default=30, help="R: rounds of the round-robin")
    p.add_argument("--steps-per-round", type=int, default=2, help="K: steps per config a round")
    p.add_argument("--warmup-steps", type=int, default=1, help="untimed steps per config first")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--batch-size", type=int, default=None, help="default: the quick preset's")
    p.add_argument("--max-length", type=int, default=None, help="default: the quick preset's")
    p.add_argument("--init-r", type=int, default=3, help="AdaLoRA initial rank")
    p.add_argument("--target-r", type=float, default=2, help="AdaLoRA final average rank")
    p.add_argument("--lora-r", type=int, default=2, help="LoRA rank")
    p.add_argument("--max-train-samples", type=int, default=None)
    p.add_argument("--max-eval-samples", type=int, default=None)
    p.add_argument("--eval-batch-sizes", default="32,128")
    p.add_argument("--eval-repeats", type=int, default=2, help="0: no evaluation timing")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--out", default=None, help="JSON path (default: results/bench/train_cpu_<task>_<method>)"
    )
    a = p.parse_args(argv)
    if a.rounds < 1 or a.steps_per_round < 1 or a.warmup_steps < 0:
        p.error("--rounds and --steps-per-round must be >= 1, --warmup-steps >= 0")
    a.eval_batch_sizes = [int(x) for x in a.eval_batch_sizes.split(",") if x.strip()]
    if a.data_dir is None:
        a.data_dir = os.environ.get("GLUE_DIR") or (
            str(SHARED_GLUE) if SHARED_GLUE.is_dir() else None
        )
    if a.out is None:
        a.out = str(ROOT / "results" / "bench" / f"train_cpu_{a.task}_{a.method}.json")
    return a


# ------------------------------------------------------------------------------ statistics
def med(xs):
    return statistics.median(xs) if xs else None


def pct(xs, q):
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def summary(xs) -> dict:
    return {"median": med(xs), "p25": pct(xs, 0.25), "p75": pct(xs, 0.75), "n": len(xs)}


# ------------------------------------------------------------------------------ setup
def setup(args):
    """(task, tokenizer, base model, hp, Data) from the GLUE runner's own pieces."""
    from experiments.glue import make_task, quick_preset
    from experiments.methods import plan_budget, schedule_steps

    hp = quick_preset(args.task, args.method)
    hp.update(model=args.model, init_r=args.init_r, target_r=args.target_r)
    if args.method == "lora":
        hp["lora_r"] = args.lora_r
    for k in ("batch_size", "max_length", "max_train_samples", "max_eval_samples"):
        if getattr(args, k) is not None:
            hp[k] = getattr(args, k)
    task = make_task(Namespace(task=args.task))
    tok = task.load_tokenizer(hp["model"])
    model = task.load_model(hp["model"], hp)
    hp = plan_budget(model, args.method, hp)
    data = task.load_data(tok, hp, args.data_dir)
    hp = schedule_steps({**hp, **data.hp}, data.n_train)
    # the run must not reach the end of AdaLoRA's schedule before the benchmark does
    n_steps = args.warmup_steps + args.rounds * args.steps_per_round
    hp["total_step"] = max(hp["total_step"], n_steps + 1)
    hp["tfinal"] = min(hp["tfinal"], max(0, hp["total_step"] - hp["tinit"] - 1))
    return task, tok, model, hp, data


def file_order_eval(args, tok, hp, data) -> dict:
    """The dev sets in file order (what the Trainer evaluated before load_data sorted them),
    encoded as make_task's encode does; checked against the runner's sorted sets."""
    from experiments.glue_data import TASKS, load_glue

    meta, out = TASKS[args.task], {}
    for split, sorted_set in data.evals.items():
        rows = load_glue(args.task, split, args.data_dir, limit=hp.get("max_eval_samples"))
        a = [r["sentence1"] for r in rows]
        b = [r["sentence2"] for r in rows] if rows[0]["sentence2"] is not None else None
        enc = tok(a, b, truncation=True, max_length=hp["max_length"])
        cast = float if meta.is_regression else int
        exs = [
            {**{k: enc[k][i] for k in enc}, "labels": cast(r["label"])} for i, r in enumerate(rows)
        ]
        if sorted(exs, key=lambda e: len(e["input_ids"])) != sorted_set:
            raise RuntimeError(f"{split}: file-order encoding differs from the runner's data")
        out[split] = exs
    return out


def epoch_batches(train, collator, sampler: str, batch_size: int, n_needed: int, seed: int):
    """Whole epochs of the Trainer's training batches (collated), enough to hold n_needed, and
    the collation time per batch."""
    from torch.utils.data import DataLoader, RandomSampler
    from transformers.trainer_pt_utils import LengthGroupedSampler

    g = torch.Generator().manual_seed(seed)
    if sampler == "random":
        smp = RandomSampler(train, generator=g)
    else:
        smp = LengthGroupedSampler(
            batch_size, dataset=train, model_input_name="input_ids", generator=g
        )
    dl = DataLoader(train, batch_size=batch_size, sampler=smp, collate_fn=collator, num_workers=0)
    per_epoch = len(dl)
    epochs = max(1, math.ceil(n_needed / per_epoch))
    batches, t0 = [], time.perf_counter()
    for _ in range(epochs):
        batches.extend(dl)
    collate_ms = (time.perf_counter() - t0) * 1e3 / len(batches)
    return batches, per_epoch, collate_ms


def token_counts(batch) -> tuple[int, int]:
    """(real tokens, padded tokens) of a collated batch."""
    return int(batch["attention_mask"].sum()), int(batch["input_ids"].numel())


def spread(batches: list, n: int) -> list:
    """n batches spread evenly over ``batches`` (in order)."""
    if n >= len(batches):
        return [batches[i % len(batches)] for i in range(n)]
    return [batches[int(i * len(batches) / n)] for i in range(n)]


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

    def __init__(self, name, precision, sampler, base, method, hp, seed):
        from experiments.methods import wrap_model

        self.name, self.precision, self.sampler = name, precision, sampler
        torch.manual_seed(seed)  # the same adapter initialisation for every configuration
        plain, ada = wrap_model(copy.deepcopy(base), method, hp)
        self.net = ada if ada is not None else plain
        self.net.train()
        self.allocate = ada is not None and ada.rankallocator is not None
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(
            decay_groups(self.net, hp["weight_decay"]), lr=hp["lr"], fused=True
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
        real = sum(token_counts(b)[0] for b in bl)
        padded = sum(token_counts(b)[1] for b in bl)
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


# ------------------------------------------------------------------------------ output
def print_table(out: dict) -> None:
    tr, rt = out["train"], out["train_ratios"]
    print(
        f"\ntraining: {out['settings']['task']} {out['settings']['method']}, batch "
        f"{out['settings']['batch_size']}, max_length {out['settings']['max_length']}, "
        f"{out['settings']['threads']} thread(s), {out['settings']['rounds']} rounds x "
        f"{out['settings']['steps_per_round']} steps"
    )
    print(
        f"  {'config':14s} {'real tok/s':>10s} {'pad tok/s':>10s} {'s/step':>7s} {'pad %':>6s} "
        f"{'ratio/round [p25, p75]':>24s} {'ratio totals':>12s}"
    )
    for n, r in tr.items():
        q = rt[n]["real_tokens_per_s_ratio_per_round"]
        print(
            f"  {n:14s} {r['real_tokens_per_s']:10.0f} {r['padded_tokens_per_s']:10.0f} "
            f"{r['s_per_step_median']:7.3f} {100 * r['padding_fraction']:6.1f} "
            f"{q['median']:8.3f} [{q['p25']:.3f}, {q['p75']:.3f}] "
            f"{rt[n]['real_tokens_per_s_ratio_of_totals']:12.3f}"
        )
    for n, q in out["train_pair_ratios"].items():
        print(
            f"  {n:22s} per round {q['median']:.3f} [{q['p25']:.3f}, {q['p75']:.3f}], "
            f"ratio of totals {q['ratio_of_totals']:.3f}"
        )
    for s, e in out["epoch"].items():
        print(
            f"  epoch, {s:8s}: {e['batches']} batches, padding {100 * e['padding_fraction']:.1f}%,"
            f" collate {e['collate_ms_per_batch']:.1f} ms/batch"
        )
    if out.get("eval"):
        print(f"\nevaluation pass ({out['eval_settings']['examples']} dev examples)")
        print(f"  {'config':18s} {'s':>7s} {'ex/s':>7s} {'pad %':>6s} {'speedup [min, max]':>22s}")
        for n, r in out["eval"].items():
            q = out["eval_ratios"][n]["speedup_per_repeat"]
            print(
                f"  {n:18s} {r['seconds_median']:7.2f} {r['examples_per_s']:7.0f} "
                f"{100 * r['padding_fraction']:6.1f} {q['median']:8.3f} "
                f"[{q['p25']:.3f}, {q['p75']:.3f}]"
            )


def main(argv=None):
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    from transformers import DataCollatorWithPadding
    from transformers.utils import logging as hf_logging

    from experiments.trainer import cpu_has_native_bf16

    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    t_start = time.perf_counter()
    task, tok, base, hp, data = setup(args)
    collator = DataCollatorWithPadding(tok)
    bs, K, R = hp["batch_size"], args.steps_per_round, args.rounds
    n_needed = args.warmup_steps + R * K

    epoch, timed = {}, {}
    for i, s in enumerate(SAMPLERS):
        batches, per_epoch, collate_ms = epoch_batches(
            data.train, collator, s, bs, n_needed, args.seed + i
        )
        real = sum(token_counts(b)[0] for b in batches[:per_epoch])
        padded = sum(token_counts(b)[1] for b in batches[:per_epoch])
        epoch[s] = {
            "batches": per_epoch,
            "real_tokens": real,
            "padded_tokens": padded,
            "padding_fraction": 1 - real / padded,
            "collate_ms_per_batch": collate_ms,
        }
        timed[s] = spread(batches, n_needed)

    cfgs = {
        f"{p}+{s}": Config(f"{p}+{s}", p, s, base, args.method, hp, args.seed + 1)
        for s in SAMPLERS
        for p in PRECISIONS
    }
    order = list(cfgs.values())
    n_trainable = sum(p.numel() for p in order[0].params)
    print(
        f"{args.task} {args.method} ({hp['model']}): {data.n_train} train examples, batch {bs}, "
        f"max_length {hp['max_length']}, trainable {n_trainable:,d}, T={hp['total_step']}, "
        f"threads {torch.get_num_threads()}, native bf16 {cpu_has_native_bf16()}",
        flush=True,
    )
    for c in order:  # warm-up: first kernels, first allocations
        for i in range(args.warmup_steps):
            c.step(timed[c.sampler][i], timed=False)
    for r in range(R):
        k = r % len(order)
        lo = args.warmup_steps + r * K
        for c in order[k:] + order[:k]:
            n0 = len(c.step_s)
            for b in timed[c.sampler][lo : lo + K]:
                c.step(b, timed=True)
            c.rounds.append(
                {"s": sum(c.step_s[n0:]), "real": sum(c.real[n0:]), "padded": sum(c.padded[n0:])}
            )
        if (r + 1) % max(1, R // 10) == 0 or r + 1 == R:
            tps = {c.name: c.rounds[-1]["real"] / c.rounds[-1]["s"] for c in order}
            print(
                f"  round {r + 1}/{R}: "
                + "  ".join(
                    f"{n} {v:.0f} tok/s ({v / tps[REFERENCE]:.2f}x)" for n, v in tps.items()
                ),
                flush=True,
            )
    train_wall = time.perf_counter() - t_start
    train_res, train_ratios = train_results(cfgs)

    eval_res = eval_ratios = eval_settings = None
    if args.eval_repeats > 0:
        evals_file = file_order_eval(args, tok, hp, data)
        torch.manual_seed(args.seed + 1)
        from experiments.methods import wrap_model

        plain, ada = wrap_model(copy.deepcopy(base), args.method, hp)
        net = ada if ada is not None else plain
        eval_res, eval_ratios = time_evals(args, net, data.evals, evals_file, collator)
        eval_settings = {
            "splits": list(data.evals),
            "examples": sum(len(v) for v in data.evals.values()),
            "batch_sizes": args.eval_batch_sizes,
            "repeats": args.eval_repeats,
            "reference": EVAL_REFERENCE,
            "orders": {
                "file": "the dev file's order (the Trainer's SequentialSampler, before load_data "
                "sorted the sets)",
                "sorted": "sorted by length, as experiments/glue.py load_data now returns them",
            },
        }

    ref_tps = train_res[REFERENCE]["real_tokens_per_s"]
    out = {
        "benchmark": "bench_train",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": provenance.command(
            [os.path.relpath(sys.argv[0], ROOT) if argv is None else "scripts/bench_train.py"]
            + (sys.argv[1:] if argv is None else list(argv))
        ),
        "git_commit": provenance.git_commit(),
        "versions": provenance.versions(("adalora",)),
        "hardware": {
            **provenance.hardware(),
            "cpu_native_bf16": cpu_has_native_bf16(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "loadavg_start": list(load_start),
            "loadavg_end": list(os.getloadavg()),
        },
        "settings": {
            "task": args.task,
            "method": args.method,
            "model": hp["model"],
            "n_train": data.n_train,
            "batch_size": bs,
            "max_length": hp["max_length"],
            "rounds": R,
            "steps_per_round": K,
            "warmup_steps": args.warmup_steps,
            "threads": torch.get_num_threads(),
            "seed": args.seed,
            "trainable_params": n_trainable,
            "reference": REFERENCE,
            "step": "forward (autocast for bf16) + backward + clip_grad_norm_(1.0) + fused "
            "AdamW step + update_and_allocate(t) (AdaLoRA) + zero_grad; batches pre-collated",
            "hp": {
                k: hp.get(k)
                for k in (
                    "init_r",
                    "target_r",
                    "lora_r",
                    "budget",
                    "n_modules",
                    "lora_alpha",
                    "lr",
                    "weight_decay",
                    "orth_reg_weight",
                    "delta_t",
                    "tinit",
                    "tfinal",
                    "total_step",
                    "cls_dropout",
                    "evals",
                    "eval_batch_size",
                )
            },
        },
        "epoch": epoch,
        "train": train_res,
        "train_ratios": train_ratios,
        "train_pair_ratios": pair_ratios(train_res),
        "eval_settings": eval_settings,
        "eval": eval_res,
        "eval_ratios": eval_ratios,
        "derived": {
            # what one epoch of training costs, at each config's measured padded throughput
            "train_epoch_s_est": {
                n: epoch[r["sampler"]]["padded_tokens"] / r["padded_tokens_per_s"]
                for n, r in train_res.items()
            },
            "reference_real_tokens_per_s": ref_tps,
        },
        "wall_s": time.perf_counter() - t_start,
        "train_wall_s": train_wall,
    }
    if eval_res:
        out["derived"]["eval_pass_over_train_epoch"] = {
            n: eval_res[f"{order}+b{hp['eval_batch_size']}+{r['precision']}"]["seconds_median"]
            / out["derived"]["train_epoch_s_est"][n]
            for n, r in train_res.items()
            for order in ["sorted"]
            if f"{order}+b{hp['eval_batch_size']}+{r['precision']}" in eval_res
        }
    print_table(out)
    write_json_atomic(args.out, out, overwrite=True, sort_keys=False)
    print(f"wrote {args.out} ({out['wall_s']:.0f} s)")
    return out


if __name__ == "__main__":
    main()
