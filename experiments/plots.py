"""The rank heat map (the paper's Figure 1: final rank per layer and matrix type).

Both the runner (experiments/train.py logs it to W&B) and the tables (scripts/report/figures.py
renders it per task and budget) draw it from here. Nothing here imports scripts/.
"""

from __future__ import annotations

import math
import re
import sys
import textwrap
from collections import defaultdict
from collections.abc import Iterable, Mapping

MATRIX_ORDER = ("Wq", "Wk", "Wv", "Wo", "Wf1", "Wf2")
_NAME_RULES = (
    ("Wq", ("query", "query_proj", "q_proj", "q", "q_lin")),
    ("Wk", ("key", "key_proj", "k_proj", "k", "k_lin")),
    ("Wv", ("value", "value_proj", "v_proj", "v", "v_lin")),
    ("Wo", ("out_proj", "o", "o_proj", "out_lin")),
    ("Wf1", ("fc1", "wi", "wi_0", "wi_1", "lin1", "up_proj", "gate_proj")),
    ("Wf2", ("fc2", "wo", "lin2", "down_proj")),
)
_LAYER_PATTERNS = (
    r"(?:^|\.)block\.(\d+)(?:\.|$)",
    r"(?:^|\.)layers\.(\d+)(?:\.|$)",
    r"(?:^|\.)layer\.(\d+)(?:\.|$)",
)
_CROSS = ("encoder_attn", "encdecattention", "crossattention", "cross_attn")
_SELF = ("self_attn", "selfattention", "attention.self")


def _part(word: str) -> str:
    return rf"(?:^|\.){word}(?:\.|$)"


def is_seq2seq_name(name: str) -> bool:
    """True when a module name has a ``decoder`` component."""
    return re.search(_part("decoder"), name) is not None


def _matrix_label(name: str) -> str:
    last = name.split(".")[-1]
    for label, tails in _NAME_RULES:
        if last in tails:
            return label
    if last == "dense":
        if "attention.output" in name:
            return "Wo"
        if "intermediate" in name:
            return "Wf1"
        if name.endswith("output.dense"):
            return "Wf2"
    return last


def parse_module(name: str, seq2seq: bool | None = None) -> tuple:
    """(layer index or None, matrix label) for an adapted module name.

    layer = the integer after ``block.`` (T5), else ``layers.``, else ``layer.``; label = Wq, Wk,
    Wv, Wo, Wf1, Wf2 from the tail of the name (the last component when unknown). For seq2seq
    names (``seq2seq`` None: the name mentions a decoder) the label keeps the encoder/decoder
    and self/cross-attention parts, e.g. "enc.self.Wq", "dec.cross.Wk", "dec.Wf1"."""
    layer = None
    for pat in _LAYER_PATTERNS:
        m = re.search(pat, name)
        if m:
            layer = int(m.group(1))
            break
    label = _matrix_label(name)
    if seq2seq is None:
        seq2seq = is_seq2seq_name(name)
    if seq2seq:
        side = (
            "enc"
            if re.search(_part("encoder"), name)
            else "dec"
            if re.search(_part("decoder"), name)
            else ""
        )
        low = name.lower()
        kind = (
            "cross"
            if any(s in low for s in _CROSS)
            else "self"
            if any(s in low for s in _SELF)
            else ""
        )
        attn = kind if label in ("Wq", "Wk", "Wv", "Wo") else ""
        label = ".".join(x for x in (side, attn, label) if x)
    return layer, label


def _label_key(label: str) -> tuple:
    """Encoder before decoder, self- before cross-attention, then Wq ... Wf2, unknown last."""
    parts = label.split(".")
    w = parts[-1]
    side = {"enc": 0, "dec": 1}.get(parts[0], 2) if len(parts) > 1 else -1
    kind = (
        {"self": 0, "cross": 1}.get(parts[1], 2)
        if len(parts) > 2
        else (2 if len(parts) == 2 else 0)
    )
    order = MATRIX_ORDER.index(w) if w in MATRIX_ORDER else len(MATRIX_ORDER)
    return (side, kind, order, w)


def _rank_value(v) -> float | None:
    if isinstance(v, (list, tuple)):  # a rank mask
        return float(sum(bool(x) for x in v))
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def rank_grid(patterns: Iterable[Mapping]) -> tuple:
    """(labels, layers, {(label, layer): mean rank over the patterns}) for rank patterns
    ({module name: rank} dicts); modules without a layer index are left out."""
    acc = defaultdict(list)
    for rp in patterns:
        rp = rp or {}
        seq2seq = any(is_seq2seq_name(n) for n in rp)
        for name in sorted(rp):
            layer, label = parse_module(name, seq2seq)
            v = _rank_value(rp[name])
            if layer is None or v is None:
                continue
            acc[(label, layer)].append(v)
    grid = {k: math.fsum(v) / len(v) for k, v in acc.items()}
    labels = sorted({k[0] for k in grid}, key=_label_key)
    layers = sorted({k[1] for k in grid})
    return labels, layers, grid


def pyplot():
    """matplotlib.pyplot, on the Agg backend unless pyplot was already set up."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def rank_heatmap_figure(rank_patterns, title: str | None = None):
    """Matplotlib figure of the final rank per matrix type (rows) and layer (columns), like the
    paper's Figure 1. ``rank_patterns``: one {module name: rank} dict, or several whose ranks
    are averaged. None when no module name has a layer index."""
    pats = [rank_patterns] if isinstance(rank_patterns, Mapping) else list(rank_patterns)
    labels, layers, grid = rank_grid(pats)
    if not labels:
        return None
    plt = pyplot()
    mat = [[grid.get((lab, ly), float("nan")) for ly in layers] for lab in labels]
    fig, ax = plt.subplots(
        figsize=(max(4.0, 0.5 * len(layers) + 2), max(2.5, 0.4 * len(labels) + 1.5))
    )
    im = ax.imshow(mat, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(layers)), [str(x) for x in layers])
    ax.set_yticks(range(len(labels)), labels)
    for i, row in enumerate(mat):
        for j, v in enumerate(row):
            if not math.isnan(v):
                text = f"{v:.1f}".rstrip("0").rstrip(".")
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="w")
    ax.set_xlabel("layer")
    fig.colorbar(im, ax=ax, label="final rank")
    if title:
        ax.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=8)
    return fig
