#!/usr/bin/env python
"""Training throughput of a real GLUE run on CPU: fp32 vs bf16 autocast, random vs
length-grouped batches, and the cost of one evaluation pass (a benchmark).

Everything runs in one process. The model, tokenizer, data, budget plan and adapters come from
the GLUE runner (experiments.config resolve with the quick preset, experiments.glue_task make_task,
experiments.methods plan_budget and wrap_model). Each configuration trains its own copy of the
same weights with the same adapter initialisation. The training batches are built the way the
Trainer builds them: DataCollatorWithPadding over

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
import math
import os
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import torch

from experiments import provenance
from experiments.results import write_json_atomic
from scripts.bench.train_data import epoch_batches, file_order_eval, setup, spread, token_totals
from scripts.bench.train_timing import (
    EVAL_REFERENCE,
    PRECISIONS,
    REFERENCE,
    SAMPLERS,
    Config,
    adapted_copy,
    pair_ratios,
    time_evals,
    train_results,
)
from scripts.checks import BadInput, ScriptParser, at_least, folder, new_file, parse, positive, stop

ROOT = Path(__file__).resolve().parents[1]
SHARED_GLUE = ROOT.parent / "shared" / "data" / "glue"
METHODS = ("adalora", "lora")


def check_args(a) -> None:
    """Every flag, before anything loads or is written (scripts/checks.py)."""
    for key, low in (
        ("rounds", 1),
        ("steps_per_round", 1),
        ("warmup_steps", 0),
        ("threads", 1),
        ("batch_size", 1),
        ("init_r", 1),
        ("lora_r", 1),
        ("max_train_samples", 1),
        ("max_eval_samples", 1),
        ("eval_repeats", 0),
    ):
        at_least(a, key, low)
    at_least(a, "max_length", 8, "pass --max-length 8 or more")
    positive(a, "target_r", "an average rank", "pass e.g. --target-r 2")
    if a.method == "adalora" and a.target_r > a.init_r:
        raise BadInput(
            "--target-r",
            f"{a.target_r:g}",
            f"above --init-r {a.init_r}: AdaLoRA only prunes",
            f"pass --init-r {math.ceil(a.target_r)} or more",
        )
    if not 0 <= a.seed < 2**32:
        raise BadInput("--seed", a.seed, "must be in [0, 2^32)", "pass --seed 0 or more")
    sizes = [x.strip() for x in a.eval_batch_sizes.split(",")]
    if not all(x.isdigit() and int(x) >= 1 for x in sizes):
        raise BadInput(
            "--eval-batch-sizes",
            a.eval_batch_sizes,
            "not a comma-separated list of batch sizes >= 1",
            "pass e.g. --eval-batch-sizes 32,128",
        )
    if a.model != "minilm" and not Path(a.model).is_dir():
        raise BadInput("--model", a.model, "no such folder", "pass minilm or a model folder")
    if a.data_dir is None:
        a.data_dir = os.environ.get("GLUE_DIR") or (
            str(SHARED_GLUE) if SHARED_GLUE.is_dir() else None
        )
        if a.data_dir is None:
            raise BadInput(
                "--data-dir",
                None,
                f"not given, $GLUE_DIR is unset and {SHARED_GLUE} is not there",
                "pass the GLUE folder (the one holding STS-B/, RTE/, ...)",
            )
    folder(a, "data_dir", "pass the GLUE folder (the one holding STS-B/, RTE/, ...)")
    if a.out is None:
        a.out = str(ROOT / "results" / "bench" / f"train_cpu_{a.task}_{a.method}.json")
        new_file(a.out, "--out", f"{os.path.relpath(a.out)} (the default)")
    else:
        new_file(a.out, "--out")


def parse_args(argv=None):
    from experiments.config import GLUE_TASK_CHOICES

    p = ScriptParser(
        prog="bench_train.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", default="stsb", choices=GLUE_TASK_CHOICES)
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
        "--out",
        default=None,
        help="a new JSON file, never overwritten (default: "
        "results/bench/train_cpu_<task>_<method>.json)",
    )
    a = parse(p, argv, check_args)
    a.eval_batch_sizes = [int(x) for x in a.eval_batch_sizes.split(",")]
    return a


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

    from experiments.provenance import cpu_has_native_bf16

    hf_logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    t_start = time.perf_counter()
    try:
        task, tok, base, cfg, data = setup(args)  # the GLUE runner's checks, as glue.py's
    except BadInput as e:
        stop("bench_train.py", e)
    hp = cfg.hyperparameters()
    collator = DataCollatorWithPadding(tok)
    bs, K, R = hp["batch_size"], args.steps_per_round, args.rounds
    n_needed = args.warmup_steps + R * K

    epoch, timed = {}, {}
    for i, s in enumerate(SAMPLERS):
        batches, per_epoch, collate_ms = epoch_batches(
            data.train, collator, s, bs, n_needed, args.seed + i
        )
        real, padded = token_totals(batches[:per_epoch])
        epoch[s] = {
            "batches": per_epoch,
            "real_tokens": real,
            "padded_tokens": padded,
            "padding_fraction": 1 - real / padded,
            "collate_ms_per_batch": collate_ms,
        }
        timed[s] = spread(batches, n_needed)

    cfgs = {
        f"{p}+{s}": Config(f"{p}+{s}", p, s, base, cfg, args.seed + 1)
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
        net, _ = adapted_copy(base, cfg, args.seed + 1)
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
                "sorted": "sorted by length, as experiments/glue_task.py load_data returns them",
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
            **provenance.hardware(),  # cpu_native_bf16 included
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
    write_json_atomic(args.out, out, sort_keys=False)
    print(f"wrote {args.out} ({out['wall_s']:.0f} s)")
    return out


if __name__ == "__main__":
    main()
