#!/usr/bin/env python
"""Regenerate ``paper_tables.md`` (the paper's numbers next to ours) from result files.

    python scripts/make_tables.py [--results results/] [--out paper_tables.md]
                                  [--figures results/figures] [--shared-lr LR] [--check]
                                  [--wandb ENTITY/PROJECT]

Reads every ``adalora.result/1`` JSON under --results (``experiments.results.load_results``),
groups runs by (model, task, method, variant, budget level, learning rate) and writes mean ± std
(n) over seeds of the runs with status "ok"; runs with any other status (e.g. "diverged") are
counted and shown in the cell, never dropped silently. Output is deterministic (sorted, no
timestamps); ``--check`` exits 1 when the existing file differs from what would be generated
(figures are not rendered in --check mode).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import textwrap  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Iterable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any

from experiments.results import SCHEMA, load_results  # noqa: E402
from scripts import paper_numbers as P  # noqa: E402

REGEN_COMMAND = "python scripts/make_tables.py"
METHOD_ORDER = (
    "full",
    "bitfit",
    "hadapter",
    "padapter",
    "lora",
    "adalora",
    "svd_lora",
    "prune_lora",
)
METHOD_NAMES = {
    "full": "Full FT",
    "bitfit": "BitFit",
    "hadapter": "HAdapter",
    "padapter": "PAdapter",
    "lora": "LoRA",
    "adalora": "AdaLoRA",
    "svd_lora": "SVD-LoRA",
    "prune_lora": "Prune LoRA",
}
DEFAULT_LEVELS = (8, 4, 2)  # the paper's GLUE budgets (avg final rank)
# Sweep keys that the main tables can absorb because grouping already separates them
# (lr: grouped by LR; score/schedule: carried in ``variant``; target_r/lora_r/budget: the level).
MAIN_SWEEP_KEYS = frozenset({"lr", "score", "schedule", "target_r", "lora_r", "budget"})
ABLATION_COLUMNS = (
    ("adalora", "", "AdaLoRA"),
    ("prune_lora", "", "Prune LoRA"),
    ("svd_lora", "", "SVD-LoRA"),
    ("adalora", "score=sensitivity", "sensitivity only (s = I)"),
    ("adalora", "score=magnitude", "S_i = |lambda_i|"),
    ("adalora", "gamma=0", "AdaLoRA gamma=0"),
    ("lora", "", "LoRA"),
)
SCHEDULES = ("cubic", "linear", "constant")
MATRIX_ORDER = ("Wq", "Wk", "Wv", "Wo", "Wf1", "Wf2")


# --------------------------------------------------------------------------------------------
# record accessors
# --------------------------------------------------------------------------------------------


def level_of(rec: dict) -> Any:
    """Budget level: budget.avg_final_rank rounded to an int; "-" for runs without a budget."""
    b = rec.get("budget")
    if not isinstance(b, dict) or b.get("avg_final_rank") is None:
        return "-"
    return int(math.floor(float(b["avg_final_rank"]) + 0.5))


def level_key(level: Any):
    return (0, 0) if level == "-" else (1, -level)


def level_text(level: Any) -> str:
    return "-" if level == "-" else f"r={level}"


def lr_of(rec: dict) -> float | None:
    lr = (rec.get("hyperparameters") or {}).get("lr")
    try:
        return float(lr) if lr is not None else None
    except (TypeError, ValueError):
        return None


def lr_key(lr: float | None):
    return (lr is None, lr or 0.0)


def lr_text(lr: float | None) -> str:
    return "?" if lr is None else f"{lr:g}"


def sweep_of(rec: dict) -> dict:
    s = (rec.get("hyperparameters") or {}).get("sweep")
    return s if isinstance(s, dict) else {}


def is_main(rec: dict, extra_keys: Iterable[str] = ()) -> bool:
    """True when the run is a plain run (its sweep only varies keys that grouping separates)."""
    return set(sweep_of(rec)) <= (MAIN_SWEEP_KEYS | set(extra_keys))


def variant_tags(rec: dict) -> dict:
    v = rec.get("variant") or ""
    out = {}
    for tag in v.split("+"):
        if tag:
            k, _, val = tag.partition("=")
            out[k] = val
    return out


def status_of(rec: dict) -> str:
    return str(rec.get("status") or "unknown")


def score_of(rec: dict, key: str | None = None) -> float | None:
    """The table score x100: main_best/main_final per metrics.table_uses, or metric ``key``
    from metrics.best/final (e.g. "rougeL"). None when absent or not finite."""
    m = rec.get("metrics") or {}
    uses = m.get("table_uses") or "best"
    if key is None:
        v = m.get(f"main_{uses}")
    else:
        d = m.get(uses) or {}
        if key not in d and isinstance(d.get(m.get("primary_split")), dict):
            d = d[m["primary_split"]]  # metrics.final keyed by split
        v = d.get(key)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v * 100.0 if math.isfinite(v) else None


def model_slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", str(model)).strip("-").lower() or "model"


def fmt_sweep(d: dict) -> str:
    return ", ".join(f"{k}={d[k]}" for k in sorted(d)) or "-"


def value_key(v):
    if isinstance(v, bool):
        return (1, str(v))
    if isinstance(v, (int, float)):
        return (0, float(v), "")
    return (2, str(v))


# --------------------------------------------------------------------------------------------
# statistics and cells
# --------------------------------------------------------------------------------------------


@dataclass
class Stats:
    values: list = field(default_factory=list)
    other: dict = field(default_factory=dict)  # status (or "no score") -> count
    lr: float | None = None
    lr_known: bool = False
    other_lrs: dict = field(default_factory=dict)  # non-ok runs at LRs not chosen

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return math.fsum(self.values) / len(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) >= 2 else None


def stats_of(runs: list, key: str | None = None) -> Stats:
    st = Stats()
    for r in runs:
        s = status_of(r)
        if s != "ok":
            st.other[s] = st.other.get(s, 0) + 1
            continue
        v = score_of(r, key)
        if v is None:
            st.other["no score"] = st.other.get("no score", 0) + 1
        else:
            st.values.append(v)
    return st


def by_lr(runs: list) -> dict:
    g = defaultdict(list)
    for r in runs:
        g[lr_of(r)].append(r)
    return g


def best_lr_stats(runs: list, key: str | None = None, select_key: str | None = None) -> Stats:
    """Stats at the LR with the highest mean (ties: the smaller LR), among the LRs with the
    most runs: a sweep point with fewer seeds does not win on them. ``select_key`` picks the
    metric that chooses the LR (default: the reported one)."""
    if not runs:
        return Stats()
    groups = by_lr(runs)
    most = max(len(g) for g in groups.values())
    cands = []
    for lr in sorted(groups, key=lr_key):
        if len(groups[lr]) < most:
            continue
        sel = stats_of(groups[lr], select_key if select_key is not None else key)
        if sel.n:
            cands.append((-sel.mean, lr_key(lr), lr))
    if not cands:  # nothing usable: count every run in the cell
        st = stats_of(runs, key)
        return st
    lr = min(cands)[2]
    st = stats_of(groups[lr], key)
    st.lr, st.lr_known = lr, True
    for other_lr in groups:
        if other_lr != lr:
            for s, c in stats_of(groups[other_lr], key).other.items():
                st.other_lrs[s] = st.other_lrs.get(s, 0) + c
    return st


def lr_stats(runs: list, lr: float | None, key: str | None = None) -> Stats:
    sel = [
        r
        for r in runs
        if lr_of(r) is not None and lr is not None and math.isclose(lr_of(r), lr, rel_tol=1e-9)
    ]
    st = stats_of(sel, key)
    st.lr, st.lr_known = lr, lr is not None
    return st


def _status_note(counts: dict, suffix: str = "") -> list:
    return [f"{counts[s]} {s}{suffix}" for s in sorted(counts)]


def fmt_cell(st: Stats, show_lr: bool = True, show_n: bool = True) -> str:
    notes = []
    if st.n and show_n:
        notes.append(f"n={st.n}")
    if st.n and show_lr and st.lr_known:
        notes.append(f"lr={lr_text(st.lr)}")
    notes += _status_note(st.other)
    notes += _status_note(st.other_lrs, " at other LRs")
    note = f" ({', '.join(notes)})" if notes else ""
    if not st.n:
        return "-" + note
    if st.std is None:
        return f"{st.mean:.2f}{note}"
    return f"{st.mean:.2f} ± {st.std:.2f}{note}"


def diff_cell(a: Stats, b: Stats) -> tuple:
    """(text, diff or None) for a - b: difference of means, combined std
    sqrt(s1^2/n1 + s2^2/n2), '*' when |diff| > 2 * combined std."""
    if not a.n or not b.n:
        return "-", None
    d = a.mean - b.mean
    if a.std is None or b.std is None:
        return f"{d:+.2f} (n<2, no std)", d
    cs = math.sqrt(a.std**2 / a.n + b.std**2 / b.n)
    star = "*" if abs(d) > 2 * cs else ""
    return f"{d:+.2f} ± {cs:.2f}{star}", d


def avg_cell(values: list, total: int) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    avg = math.fsum(vals) / len(vals)
    return f"{avg:.2f}" if len(vals) == total else f"{avg:.2f} ({len(vals)}/{total} tasks)"


def avg_diff_cell(values: list) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    return f"{math.fsum(vals) / len(vals):+.2f} ({len(vals)} tasks)"


def esc(cell: Any) -> str:
    return str(cell).replace("|", "\\|")


def md_table(header: list, rows: list) -> list:
    out = [
        "| " + " | ".join(esc(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    out += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return out


def sort_tasks(tasks: Iterable[str], order: Iterable[str]) -> list:
    order = list(order)
    return sorted(
        {str(t) for t in tasks}, key=lambda t: (order.index(t) if t in order else len(order), t)
    )


def task_rank(t: str) -> int:
    order = list(P.GLUE_TASKS) + list(P.SUMMARIZATION_TASKS)
    return order.index(t) if t in order else len(order)


def task_name(t: str) -> str:
    return P.GLUE_TASK_NAMES.get(t) or P.SUMMARIZATION_TASK_NAMES.get(t) or t


# --------------------------------------------------------------------------------------------
# Table 1 (GLUE)
# --------------------------------------------------------------------------------------------


def _index(runs: list) -> dict:
    idx = defaultdict(list)
    for r in runs:
        idx[(r.get("model"), r.get("task"), r.get("method"), level_of(r))].append(r)
    return idx


def shared_lr(idx: dict, model, task, level, forced: float | None) -> float | None:
    """The LR at which LoRA and AdaLoRA both have ok runs maximising the mean of their means,
    among the LRs where both have the most runs (fewer seeds do not win)."""
    if forced is not None:
        return forced
    lo = by_lr(idx.get((model, task, "lora", level), []))
    ad = by_lr(idx.get((model, task, "adalora", level), []))
    both = [lr for lr in set(lo) & set(ad) if lr is not None]
    most = max((min(len(lo[lr]), len(ad[lr])) for lr in both), default=0)
    cands = []
    for lr in both:
        a, b = stats_of(lo[lr]), stats_of(ad[lr])
        if a.n and b.n and min(len(lo[lr]), len(ad[lr])) == most:
            cands.append((-(a.mean + b.mean) / 2, lr))
    return min(cands)[1] if cands else None


def table1_runs(recs: list) -> list:
    """The runs Table 1 (and the tables behind it) draw on: plain GLUE runs of its methods."""
    return [
        r
        for r in recs
        if r.get("kind") == "glue"
        and (r.get("variant") or "") == ""
        and r.get("method") in ("full", "bitfit", "lora", "adalora")
        and is_main(r)
    ]


def table1(recs: list, shared: float | None) -> list:
    runs = table1_runs(recs)
    tasks = sort_tasks(list(P.GLUE_TASKS) + [r.get("task") for r in runs], P.GLUE_TASKS)
    idx = _index(runs)
    models = sorted({r.get("model") for r in runs}) or [None]
    levels = sorted({"-", *DEFAULT_LEVELS} | {level_of(r) for r in runs}, key=level_key)
    metric_names = defaultdict(set)
    uses = set()
    for r in runs:
        metric_names[r.get("task")].add(str((r.get("metrics") or {}).get("main")))
        uses.add(str((r.get("metrics") or {}).get("table_uses")))

    header = (
        ["budget (avg final rank)", "method", "source"] + [task_name(t) for t in tasks] + ["avg"]
    )
    rows = []
    n_tasks = len(tasks)
    for level in levels:
        paper_rows = [p for p in P.TABLE1 if p["level"] == level]
        ours_methods = ["full", "bitfit"] if level == "-" else ["lora", "adalora"]
        ours_methods += sorted(
            {k[2] for k in idx if k[3] == level} - set(ours_methods), key=METHOD_ORDER.index
        )
        methods = sorted(
            {p["method"] for p in paper_rows} | set(ours_methods), key=METHOD_ORDER.index
        )
        best = {}
        at_shared = {}
        for method in methods:
            for p in paper_rows:
                if p["method"] == method:
                    rows.append(
                        [
                            level_text(level),
                            p["label"],
                            f"paper ({P.GLUE_MODEL}, {p['params']} params)",
                        ]
                        + [p["scores"].get(t, "-") for t in tasks]
                        + [p["avg"]]
                    )
            if method not in ours_methods:
                continue
            for model in models:
                src = f"ours: {model}" if model is not None else "ours (no runs yet)"
                cells = []
                for t in tasks:
                    st = best_lr_stats(idx.get((model, t, method, level), []))
                    best[(model, method, t)] = st
                    cells.append(st)
                rows.append(
                    [level_text(level), METHOD_NAMES[method], src + ", best LR"]
                    + [fmt_cell(c) for c in cells]
                    + [avg_cell([c.mean for c in cells], n_tasks)]
                )
                if method in ("lora", "adalora"):
                    cells = []
                    for t in tasks:
                        lr = shared_lr(idx, model, t, level, shared)
                        st = lr_stats(idx.get((model, t, method, level), []), lr)
                        at_shared[(model, method, t)] = st
                        cells.append(st)
                    rows.append(
                        [level_text(level), METHOD_NAMES[method], src + ", shared LR"]
                        + [fmt_cell(c) for c in cells]
                        + [avg_cell([c.mean for c in cells], n_tasks)]
                    )
        if level != "-" and {"lora", "adalora"} <= set(ours_methods):
            for model in models:
                src = f"ours: {model}" if model is not None else "ours (no runs yet)"
                for label, table in (("best LR each", best), ("shared LR", at_shared)):
                    texts, diffs = [], []
                    for t in tasks:
                        txt, d = diff_cell(table[(model, "adalora", t)], table[(model, "lora", t)])
                        texts.append(txt)
                        diffs.append(d)
                    rows.append(
                        [level_text(level), "AdaLoRA − LoRA", f"{src}, {label}"]
                        + texts
                        + [avg_diff_cell(diffs)]
                    )

    lines = ["## Table 1: GLUE dev (paper: DeBERTaV3-base, mean of 5 seeds)", ""]
    lines.append(
        "Paper metrics: "
        + ", ".join(f"{task_name(t)} {P.GLUE_PAPER_METRIC[t]}" for t in P.GLUE_TASKS)
        + ". Paper budget "
        "levels: "
        + ", ".join(f"r={k} ≈ {v} params" for k, v in P.GLUE_LEVEL_PARAMS.items())
        + " (avg final rank over 72 matrices)."
    )
    ours_metrics = "; ".join(
        f"{task_name(t)}: {', '.join(sorted(metric_names[t]))}"
        for t in tasks
        if metric_names.get(t)
    )
    lines.append("")
    lines.append(
        "Ours: `metrics.main` x100 (" + (ours_metrics or "no runs yet") + "), "
        "taking `main_best` or `main_final` per `metrics.table_uses` ("
        + (", ".join(sorted(uses)) or "-")
        + "). Cells: mean ± sample std (n = seeds) "
        'over runs with status "ok"; runs with another status are counted in the '
        "cell, not averaged. Budget level = `budget.avg_final_rank` rounded (LoRA runs: "
        'their matched level); full FT / BitFit have no budget ("-").'
    )
    lines.append("")
    lines.append(
        '"best LR": per task, the LR with the highest mean for that method and budget, '
        "among its LRs with the most runs (a sweep point with fewer seeds cannot win on "
        'them; table "Every learning rate" shows all). "shared LR": '
        + (
            f"fixed at lr={lr_text(shared)} (--shared-lr)."
            if shared is not None
            else "per task and budget, the LR at which LoRA and AdaLoRA both have ok runs that "
            "maximises the average of their two means, among the LRs where both have the "
            "most runs (shown in each cell)."
        )
        + " AdaLoRA − LoRA: difference of means ± combined std sqrt(s1²/n1 + s2²/n2); "
        '"*" marks |diff| > 2 × combined std. avg: mean over the tasks with runs.'
    )
    lines.append("")
    lines += md_table(header, rows)
    return lines


def lr_table(recs: list) -> list:
    """Every LR of the sweep for each LoRA / AdaLoRA cell of Table 1 (and full FT / BitFit at
    theirs): mean ± std (n) of the plain runs, and the per-seed scores, so a seed that stays at
    chance shows as one."""
    runs = table1_runs(recs)
    idx = _index(runs)
    lrs = sorted({lr_of(r) for r in runs}, key=lr_key)
    keys = sorted(
        idx,
        key=lambda k: (
            str(k[0]),
            task_rank(k[1]),
            str(k[1]),
            level_key(k[3]),
            METHOD_ORDER.index(k[2]) if k[2] in METHOD_ORDER else 99,
        ),
    )
    rows = []
    for model, task, method, level in keys:
        cells = []
        at = by_lr(idx[(model, task, method, level)])
        for lr in lrs:
            rr = at.get(lr, [])
            st = stats_of(rr)
            seeds = ", ".join(
                f"{score_of(r):.1f}" if score_of(r) is not None else status_of(r)
                for r in sorted(rr, key=lambda r: value_key(r.get("seed")))
            )
            cells.append(f"{fmt_cell(st, show_lr=False)} [{seeds}]" if rr else "-")
        rows.append([str(model), task_name(task), level_text(level), METHOD_NAMES[method]] + cells)
    lines = [
        "### Every learning rate (ours)",
        "",
        'The cells behind Table 1\'s "best LR" and "shared LR" rows: mean ± std (n) over '
        '"ok" runs at each LR, then every run\'s score in seed order (x100).',
        "",
    ]
    if not rows:
        return lines + ["No runs yet."]
    return lines + md_table(
        ["model", "task", "budget (avg final rank)", "method"]
        + [f"lr={lr_text(lr)}" for lr in lrs],
        rows,
    )


def param_table(recs: list) -> list:
    """Final adapter parameters per (model, task, budget level): b(T) fixes the total rank, not
    the parameter count, so AdaLoRA's count depends on where it put its ranks (a rank of a
    384 x 1536 matrix costs 1921 parameters, one of a 384 x 384 matrix 769)."""
    runs = [
        r
        for r in table1_runs(recs)
        if r.get("method") in ("lora", "adalora")
        and (r.get("params") or {}).get("final_adapter") is not None
    ]
    cells = defaultdict(list)
    for r in runs:
        cells[(r.get("model"), r.get("task"), level_of(r), r.get("method"))].append(
            int(r["params"]["final_adapter"])
        )
    keys = sorted(
        {k[:3] for k in cells}, key=lambda k: (str(k[0]), task_rank(k[1]), level_key(k[2]))
    )
    rng = lambda v: f"{min(v):,d}" if min(v) == max(v) else f"{min(v):,d}-{max(v):,d}"  # noqa: E731
    rows = []
    for model, task, level in keys:
        lo, ada = (
            cells.get((model, task, level, "lora")),
            cells.get((model, task, level, "adalora")),
        )
        ratio = "-"
        if lo and ada:
            ratio = f"{min(ada) / max(lo):.2f}-{max(ada) / min(lo):.2f}"
        rows.append(
            [
                str(model),
                task_name(task),
                level_text(level),
                rng(lo) if lo else "-",
                f"{rng(ada)} (n={len(ada)})" if ada else "-",
                ratio,
            ]
        )
    lines = [
        "### Final adapter parameters at matched budgets (ours)",
        "",
        "The budget b(T) matches total rank (the paper's definition), not parameters: "
        "AdaLoRA's final count depends on where its ranks went. `params.final_adapter` "
        "over every LoRA / AdaLoRA run of Table 1 (all LRs); ratio: AdaLoRA / LoRA, "
        "lowest-highest.",
        "",
    ]
    if not rows:
        return lines + ["No runs yet."]
    return lines + md_table(
        ["model", "task", "budget (avg final rank)", "LoRA", "AdaLoRA", "AdaLoRA / LoRA"], rows
    )


# --------------------------------------------------------------------------------------------
# Table 3 (summarisation)
# --------------------------------------------------------------------------------------------


def _adapter_pct(runs: list) -> str:
    vals = []
    for r in runs:
        p = r.get("params") or {}
        try:
            vals.append(100.0 * float(p["final_adapter"]) / float(p["total"]))
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            pass
    return f"{math.fsum(vals) / len(vals):.2f}% params" if vals else "-"


def table3(recs: list) -> list:
    runs = [
        r
        for r in recs
        if r.get("kind") == "summarization" and (r.get("variant") or "") == "" and is_main(r)
    ]
    tasks = sort_tasks(
        list(P.SUMMARIZATION_TASKS) + [r.get("task") for r in runs], P.SUMMARIZATION_TASKS
    )
    idx = _index(runs)
    header = ["budget", "method", "source"] + [
        f"{task_name(t)} {k}" for t in tasks for k in ("R-1", "R-2", "R-L")
    ]
    rows = []
    for p in P.TABLE3:
        rows.append(
            [p["budget"], p["label"], f"paper ({P.SUMMARIZATION_MODEL})"]
            + [x for t in tasks for x in p["scores"].get(t, ("-", "-", "-"))]
        )
    models = sorted({r.get("model") for r in runs})
    if not models:
        for method in ("lora", "adalora"):
            rows.append(
                ["-", METHOD_NAMES[method], "ours (no runs yet)"] + ["-"] * (3 * len(tasks))
            )
    for model in models:
        groups = sorted(
            {(k[3], k[2]) for k in idx if k[0] == model},
            key=lambda x: (
                level_key(x[0]),
                METHOD_ORDER.index(x[1]) if x[1] in METHOD_ORDER else 99,
                x[1],
            ),
        )
        for level, method in groups:
            cell_runs = [
                r
                for k, v in idx.items()
                if k[0] == model and k[2] == method and k[3] == level
                for r in v
            ]
            cells = []
            for t in tasks:
                rr = idx.get((model, t, method, level), [])
                for key in P.ROUGE_KEYS:
                    cells.append(fmt_cell(_rouge_cell(rr, key)))
            rows.append(
                [
                    f"{level_text(level)} ({_adapter_pct(cell_runs)})",
                    METHOD_NAMES.get(method, method),
                    f"ours: {model}, best LR",
                ]
                + cells
            )
    lines = [
        "## Table 3: summarisation, ROUGE-1/2/L (paper: BART-large)",
        "",
        "Paper budgets are trainable-parameter percentages. Ours: level = avg final rank, "
        "with the adapter parameters after resizing as a percentage of all parameters; "
        "ROUGE from `metrics.best`/`metrics.final` per `metrics.table_uses`, x100; LR "
        "chosen per cell by the highest mean `metrics.main` score; mean ± std (n) over "
        'runs with status "ok".',
        "",
    ]
    lines += md_table(header, rows)
    return lines


def _rouge_cell(runs: list, key: str) -> Stats:
    """ROUGE ``key`` at the LR that maximises the mean main score."""
    if not runs:
        return Stats()
    lr = best_lr_stats(runs)
    if not lr.lr_known:
        return stats_of(runs, key)
    st = (
        lr_stats(runs, lr.lr, key)
        if lr.lr is not None
        else stats_of([r for r in runs if lr_of(r) is None], key)
    )
    st.lr, st.lr_known, st.other_lrs = lr.lr, True, lr.other_lrs
    return st


# --------------------------------------------------------------------------------------------
# Tables 4 / 5 (ablations), schedule shapes, sweeps
# --------------------------------------------------------------------------------------------


def paper_ablation_tables() -> list:
    lines = [
        "### Paper Table 4 (DeBERTaV3-base; SST-2 | RTE | CoLA at three budgets, low to high)",
        "",
    ]
    header = ["method"] + [f"{task_name(t)} {b}" for t in P.TABLE4_TASKS for b in P.TABLE4_BUDGETS]
    lines += md_table(
        header,
        [[p["label"]] + [x for t in P.TABLE4_TASKS for x in p["scores"][t]] for p in P.TABLE4],
    )
    lines += [
        "",
        "### Paper Table 5 (DeBERTaV3-base; SST-2 | MNLI avg of m/mm, by share of "
        'trainable parameters; "-" = not reported)',
        "",
    ]
    header = ["method"] + [f"{task_name(t)} {b}" for t in P.TABLE5_TASKS for b in P.TABLE5_BUDGETS]
    lines += md_table(
        header,
        [[p["label"]] + [x for t in P.TABLE5_TASKS for x in p["scores"][t]] for p in P.TABLE5],
    )
    return lines


def ablation_table(recs: list) -> list:
    runs = [
        r
        for r in recs
        if r.get("kind") == "glue"
        and is_main(r)
        and "schedule" not in variant_tags(r)
        and r.get("method") in ("adalora", "lora", "svd_lora", "prune_lora")
    ]
    fixed = [(m, v) for m, v, _ in ABLATION_COLUMNS]
    extra = sorted(
        {(r.get("method"), r.get("variant") or "") for r in runs} - set(fixed),
        key=lambda x: (METHOD_ORDER.index(x[0]), x[1]),
    )
    cols = list(ABLATION_COLUMNS) + [(m, v, f"{METHOD_NAMES[m]} {v}") for m, v in extra]
    idx = defaultdict(list)
    for r in runs:
        idx[
            (r.get("model"), r.get("task"), level_of(r), r.get("method"), r.get("variant") or "")
        ].append(r)
    reference = {("adalora", ""), ("lora", "")}
    keys = {(k[0], k[1], k[2]) for k in idx if (k[3], k[4]) not in reference}
    keys = sorted(keys, key=lambda k: (str(k[0]), task_rank(k[1]), str(k[1]), level_key(k[2])))
    header = ["model", "task", "budget"] + [c[2] for c in cols]
    rows = []
    for model, task, level in keys:
        # Compare at the ablations' LR when they share one (a reference column at its best LR
        # would mix an LR effect into the ablation); otherwise every cell at its best LR.
        abl = [
            r
            for (mo, t, lv, m, v), rs in idx.items()
            for r in rs
            if (mo, t, lv) == (model, task, level) and (m, v) not in reference
        ]
        one_lr = lr_of(abl[0]) if len({lr_key(lr_of(r)) for r in abl}) == 1 else None

        def cell(runs):
            return lr_stats(runs, one_lr) if one_lr is not None else best_lr_stats(runs)

        rows.append(
            [model, task_name(task), level_text(level)]
            + [fmt_cell(cell(idx.get((model, task, level, m, v), []))) for m, v, _ in cols]
        )
    if not rows:
        rows.append(["(no ablation runs yet)", "-", "-"] + ["-"] * len(cols))
    lines = [
        "### Ours: ablations (Tables 4 / 5)",
        "",
        "Rows: (model, task, budget level) with at least one ablation run; columns: method "
        'and `variant`. Each cell: mean ± std (n) over "ok" runs, at the LR all the row\'s '
        "ablation runs share (AdaLoRA and LoRA included, so that columns differ only in the "
        "ablated part), or at each cell's best LR where the ablations used several. Runs from "
        "hyperparameter sweeps are only in the sweep tables below.",
        "",
    ]
    return lines + md_table(header, rows)


def schedule_of(rec: dict) -> str:
    tags = variant_tags(rec)
    return tags.get("schedule") or (rec.get("hyperparameters") or {}).get("schedule") or "cubic"


def schedule_table(recs: list) -> list:
    runs = [
        r
        for r in recs
        if r.get("kind") == "glue"
        and r.get("method") == "adalora"
        and is_main(r)
        and set(variant_tags(r)) <= {"schedule"}
    ]
    idx = defaultdict(list)
    for r in runs:
        idx[(r.get("model"), r.get("task"), level_of(r), schedule_of(r))].append(r)
    scheds = list(SCHEDULES) + sorted({k[3] for k in idx} - set(SCHEDULES))
    keys = sorted(
        {k[:3] for k in idx if k[3] != "cubic"},
        key=lambda k: (str(k[0]), task_rank(k[1]), str(k[1]), level_key(k[2])),
    )
    header = ["model", "task", "budget"] + [
        s + (" (default)" if s == "cubic" else "") for s in scheds
    ]
    rows = [
        [m, task_name(t), level_text(lv)]
        + [fmt_cell(best_lr_stats(idx.get((m, t, lv, s), []))) for s in scheds]
        for m, t, lv in keys
    ]
    if not rows:
        rows.append(["(no schedule runs yet)", "-", "-"] + ["-"] * len(scheds))
    lines = [
        "## Budget schedule shape (AdaLoRA)",
        "",
        'variant "schedule=linear" / "schedule=constant" against the paper\'s cubic '
        'schedule; best LR per cell, mean ± std (n) over "ok" runs.',
        "",
    ]
    return lines + md_table(header, rows)


def sweep_tables(recs: list) -> list:
    runs = [r for r in recs if sweep_of(r)]
    lines = ["## Hyperparameter sweeps (`scripts/ablate.py`)", ""]
    if not runs:
        return lines + ["No sweep runs yet (runs whose `hyperparameters.sweep` is set)."]
    keys = sorted({k for r in runs for k in sweep_of(r)})

    def base(r):
        return (
            str(r.get("model")),
            str(r.get("task")),
            str(r.get("method")),
            r.get("variant") or "",
            level_of(r),
        )

    def base_sort(b):
        return (
            b[0],
            task_rank(b[1]),
            b[1],
            METHOD_ORDER.index(b[2]) if b[2] in METHOD_ORDER else 99,
            b[2],
            b[3],
            level_key(b[4]),
        )

    lines.append(
        "Marginal tables: runs grouped by one swept hyperparameter (and model, task, "
        "method, variant, budget level, LR), pooled over the other swept values that "
        "are listed, beside the plain (unswept) runs of the same cell at their own "
        'value. Mean ± std (n) over "ok" runs.'
    )
    for k in keys:
        groups = defaultdict(list)
        for r in runs:
            if k in sweep_of(r):
                lr = None if k == "lr" else lr_of(r)
                groups[(base(r), lr, sweep_of(r)[k])].append(r)
        # the unswept runs of the same cell, at their own value of k: the point of comparison
        # (a value the sweep also ran keeps only the swept runs)
        plain_groups = defaultdict(list)
        if k != "lr":
            cells = {(b, lr) for (b, lr, _) in groups}
            for r in recs:
                v = (r.get("hyperparameters") or {}).get(k)
                if not sweep_of(r) and v is not None and (base(r), lr_of(r)) in cells:
                    plain_groups[(base(r), lr_of(r), v)].append(r)
        plain = set(plain_groups) - set(groups)
        groups.update({g: plain_groups[g] for g in plain})
        rows = []
        for b, lr, v in sorted(
            groups, key=lambda g: (base_sort(g[0]), lr_key(g[1]), value_key(g[2]))
        ):
            rr = groups[(b, lr, v)]
            others = defaultdict(set)
            for r in rr:
                for ok, ov in sweep_of(r).items():
                    if ok != k:
                        others[ok].add(ov)
            other_txt = (
                "; ".join(
                    f"{ok} in {{{', '.join(str(x) for x in sorted(vs, key=value_key))}}}"
                    for ok, vs in sorted(others.items())
                )
                or "-"
            )
            if (b, lr, v) in plain:
                other_txt = "not swept (the plain runs)"
            st = stats_of(rr)
            rows.append(
                [
                    b[0],
                    task_name(b[1]),
                    b[2],
                    b[3] or "-",
                    level_text(b[4]),
                    lr_text(lr) if k != "lr" else "(swept)",
                    str(v),
                    fmt_cell(st),
                    other_txt,
                ]
            )
        lines += ["", f"### Sweep: `{k}`", ""]
        lines += md_table(
            ["model", "task", "method", "variant", "budget", "lr", k, "score", "pooled over"], rows
        )
    groups = defaultdict(list)
    for r in runs:
        groups[(base(r), lr_of(r), fmt_sweep(sweep_of(r)))].append(r)
    rows = []
    for b, lr, pt in sorted(groups, key=lambda g: (base_sort(g[0]), lr_key(g[1]), g[2])):
        rows.append(
            [
                b[0],
                task_name(b[1]),
                b[2],
                b[3] or "-",
                level_text(b[4]),
                lr_text(lr),
                pt,
                fmt_cell(stats_of(groups[(b, lr, pt)])),
            ]
        )
    lines += ["", "### All sweep points", ""]
    lines += md_table(
        ["model", "task", "method", "variant", "budget", "lr", "sweep point", "score"], rows
    )
    return lines


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------

_NAME_RULES = (
    ("Wq", ("query", "query_proj", "q_proj", "q", "q_lin")),
    ("Wk", ("key", "key_proj", "k_proj", "k", "k_lin")),
    ("Wv", ("value", "value_proj", "v_proj", "v", "v_lin")),
    ("Wo", ("out_proj", "o", "o_proj", "out_lin")),
    ("Wf1", ("fc1", "wi", "wi_0", "wi_1", "lin1", "up_proj", "gate_proj")),
    ("Wf2", ("fc2", "wo", "lin2", "down_proj")),
)


def parse_module(name: str, seq2seq: bool | None = None) -> tuple:
    """(layer index or None, matrix label) for an adapted module name.

    layer = the integer after ``block.`` (T5), else ``layers.``, else ``layer.``; label = Wq, Wk,
    Wv, Wo, Wf1, Wf2 from the tail of the name (the last component when unknown). For seq2seq
    names (``seq2seq`` None: the name mentions a decoder) the label keeps the encoder/decoder
    and self/cross-attention parts, e.g. "enc.self.Wq", "dec.cross.Wk", "dec.Wf1"."""
    layer = None
    for pat in (
        r"(?:^|\.)block\.(\d+)(?:\.|$)",
        r"(?:^|\.)layers\.(\d+)(?:\.|$)",
        r"(?:^|\.)layer\.(\d+)(?:\.|$)",
    ):
        m = re.search(pat, name)
        if m:
            layer = int(m.group(1))
            break
    parts = name.split(".")
    last = parts[-1]
    label = None
    for lab, tails in _NAME_RULES:
        if last in tails:
            label = lab
            break
    if label is None and last == "dense":
        if "attention.output" in name:
            label = "Wo"
        elif "intermediate" in name:
            label = "Wf1"
        elif name.endswith("output.dense"):
            label = "Wf2"
    if label is None:
        label = last
    if seq2seq is None:
        seq2seq = re.search(r"(?:^|\.)decoder(?:\.|$)", name) is not None
    if seq2seq:
        side = (
            "enc"
            if re.search(r"(?:^|\.)encoder(?:\.|$)", name)
            else "dec"
            if re.search(r"(?:^|\.)decoder(?:\.|$)", name)
            else ""
        )
        low = name.lower()
        kind = (
            "cross"
            if any(
                s in low
                for s in ("encoder_attn", "encdecattention", "crossattention", "cross_attn")
            )
            else "self"
            if any(s in low for s in ("self_attn", "selfattention", "attention.self"))
            else ""
        )
        label = ".".join(
            x for x in (side, kind if label in ("Wq", "Wk", "Wv", "Wo") else "", label) if x
        )
    return layer, label


def _label_key(label: str):
    parts = label.split(".")
    w = parts[-1]
    side = {"enc": 0, "dec": 1}.get(parts[0], 2) if len(parts) > 1 else -1
    kind = (
        {"self": 0, "cross": 1}.get(parts[1], 2)
        if len(parts) > 2
        else (2 if len(parts) == 2 else 0)
    )
    return (side, kind, MATRIX_ORDER.index(w) if w in MATRIX_ORDER else 99, w)


def _rank_value(v) -> float | None:
    if isinstance(v, (list, tuple)):
        return float(sum(bool(x) for x in v))
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def rank_grid(runs: list) -> tuple:
    """(labels, layers, {(label, layer): mean rank over runs}) for the rank patterns of
    ``runs`` (result records, or plain {module: rank} dicts)."""
    acc = defaultdict(list)
    for r in runs:
        rp = (r.get("rank_pattern") or {}) if "rank_pattern" in r else r
        seq2seq = any(re.search(r"(?:^|\.)decoder(?:\.|$)", n) for n in rp)
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


@dataclass
class Figure:
    kind: str
    path: Path
    caption: str
    data: Any


def figure_specs(recs: list, fig_dir: Path) -> list:
    specs = []
    ada = [
        r
        for r in recs
        if r.get("method") == "adalora" and (r.get("variant") or "") == "" and is_main(r)
    ]
    groups = defaultdict(list)
    for r in ada:
        if r.get("rank_pattern") and status_of(r) == "ok":
            groups[(str(r.get("model")), str(r.get("task")), level_of(r))].append(r)
    for model, task, level in sorted(groups, key=lambda k: (k[0], k[1], level_key(k[2]))):
        rr = groups[(model, task, level)]
        if not rank_grid(rr)[0]:
            continue
        specs.append(
            Figure(
                "rank",
                fig_dir / f"rank_{task}_r{level}_{model_slug(model)}.png",
                f"Final rank per layer and matrix, AdaLoRA, {task_name(task)}, budget "
                f"{level_text(level)}, {model} (mean over {len(rr)} run(s))",
                rr,
            )
        )

    curves = defaultdict(dict)
    for r in recs:
        if (
            r.get("method") != "adalora"
            or not is_main(r)
            or not set(variant_tags(r)) <= {"schedule"}
        ):
            continue
        c = (r.get("budget") or {}).get("curve")
        if not c:
            continue
        key = (level_of(r), schedule_of(r))
        d = curves[(str(r.get("model")), str(r.get("task")))]
        if key not in d or r.get("run_name", "") < d[key].get("run_name", ""):
            d[key] = r
    for model, task in sorted(curves):
        specs.append(
            Figure(
                "budget",
                fig_dir / f"budget_{task}_{model_slug(model)}.png",
                f"Budget b(t) (total rank) over training, AdaLoRA, {task_name(task)}, {model}",
                curves[(model, task)],
            )
        )

    pts = defaultdict(list)
    for r in recs:
        if (
            r.get("method") in ("lora", "adalora")
            and (r.get("variant") or "") == ""
            and is_main(r)
            and level_of(r) != "-"
        ):
            pts[(str(r.get("model")), str(r.get("task")))].append(r)
    for model, task in sorted(pts):
        if not any(status_of(r) == "ok" and score_of(r) is not None for r in pts[(model, task)]):
            continue
        specs.append(
            Figure(
                "score",
                fig_dir / f"score_vs_budget_{task}_{model_slug(model)}.png",
                f"Dev score vs budget (avg final rank), LoRA vs AdaLoRA, {task_name(task)}, {model} "
                "(best LR per point, error bars: std over seeds)",
                pts[(model, task)],
            )
        )

    sweep = defaultdict(list)  # (model, task) -> the LoRA / AdaLoRA runs of the LR table
    for r in table1_runs(recs):
        if r.get("method") in ("lora", "adalora") and level_of(r) != "-" and lr_of(r) is not None:
            sweep[(str(r.get("model")), str(r.get("task")))].append(r)
    for model, task in sorted(sweep):
        if len({lr_of(r) for r in sweep[(model, task)]}) < 2:
            continue
        specs.append(
            Figure(
                "lr",
                fig_dir / f"score_vs_lr_{task}_{model_slug(model)}.png",
                f"Dev score vs learning rate, LoRA vs AdaLoRA, {task_name(task)}, {model} "
                "(line: mean of ok runs, bars: std, dots: each seed)",
                sweep[(model, task)],
            )
        )

    logs = defaultdict(lambda: defaultdict(list))  # (model, task) -> curve label -> runs
    for r in recs:
        if r.get("kind") == "glue" and r.get("train_log"):
            logs[(str(r.get("model")), str(r.get("task")))][curve_label(r)].append(r)
    for model, task in sorted(logs):
        specs.append(
            Figure(
                "loss",
                fig_dir / f"train_loss_{task}_{model_slug(model)}.png",
                f"Training loss, {task_name(task)}, {model}: mean over seeds at each logging step, "
                "runs that record train_log (AdaLoRA's and SVD-LoRA's include the orthogonal "
                "regulariser gamma R)",
                dict(logs[(model, task)]),
            )
        )
    return specs


def curve_label(rec: dict) -> str:
    """One legend entry per (method, variant, budget level, LR, sweep point)."""
    parts = [METHOD_NAMES.get(rec.get("method"), str(rec.get("method")))]
    parts += [rec["variant"]] if rec.get("variant") else []
    parts += [level_text(level_of(rec))] if level_of(rec) != "-" else []
    parts += [f"lr={lr_text(lr_of(rec))}"]
    parts += (
        [fmt_sweep({k: v for k, v in sweep_of(rec).items() if k not in MAIN_SWEEP_KEYS})]
        if set(sweep_of(rec)) - MAIN_SWEEP_KEYS
        else []
    )
    return ", ".join(parts)


def mean_curve(runs: list) -> tuple:
    """(steps, mean loss over the runs that logged each step), finite losses only."""
    at = defaultdict(list)
    for r in runs:
        for row in r.get("train_log") or []:
            if isinstance(row.get("loss"), (int, float)) and math.isfinite(row["loss"]):
                at[row["step"]].append(row["loss"])
    steps = sorted(at)
    return steps, [math.fsum(at[s]) / len(at[s]) for s in steps]


def _pyplot():
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def rank_heatmap_figure(rank_patterns, title: str | None = None):
    """Matplotlib figure of the final rank per matrix type (rows) and layer (columns), like the
    paper's Figure 1. ``rank_patterns``: one {module name: rank} dict, or a list of result
    records / dicts whose ranks are averaged. None when no module name has a layer index.
    (experiments/train.py logs it to W&B.)"""
    pats = [rank_patterns] if isinstance(rank_patterns, dict) else list(rank_patterns)
    labels, layers, grid = rank_grid(pats)
    if not labels:
        return None
    plt = _pyplot()
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
                ax.text(
                    j,
                    i,
                    f"{v:.1f}".rstrip("0").rstrip("."),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="w",
                )
    ax.set_xlabel("layer")
    fig.colorbar(im, ax=ax, label="final rank")
    if title:
        ax.set_title("\n".join(textwrap.wrap(title, 60)), fontsize=8)
    return fig


def _score_axes(ax, ticks: list, labels: list, xlabel: str, base: int = 10) -> None:
    """Log x axis with a tick at each value, dev score on y (the score-vs-budget / -LR plots)."""
    ax.set_xscale("log", base=base)
    ax.set_xticks(ticks, labels)
    ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("dev score x100")
    ax.legend(fontsize=7)


def render_figures(specs: list) -> None:
    if not specs:
        return
    plt = _pyplot()

    for spec in specs:
        spec.path.parent.mkdir(parents=True, exist_ok=True)
        if spec.kind == "rank":
            fig = rank_heatmap_figure(spec.data)
            if fig is None:
                continue
            ax = fig.axes[0]
        elif spec.kind == "budget":
            fig, ax = plt.subplots(figsize=(6, 3.5))
            for key in sorted(spec.data, key=lambda k: (level_key(k[0]), k[1])):
                c = spec.data[key]["budget"]["curve"]
                ax.plot(
                    [p[0] for p in c], [p[1] for p in c], label=f"{level_text(key[0])}, {key[1]}"
                )
            ax.set_xlabel("step")
            ax.set_ylabel("b(t)")
            ax.legend(fontsize=7)
        elif spec.kind == "score":
            fig, ax = plt.subplots(figsize=(5, 3.5))
            for method in ("lora", "adalora"):
                by_level = defaultdict(list)
                for r in spec.data:
                    if r.get("method") == method:
                        by_level[level_of(r)].append(r)
                xs, ys, es = [], [], []
                for lv in sorted(by_level):
                    st = best_lr_stats(by_level[lv])
                    if st.n:
                        xs.append(lv)
                        ys.append(st.mean)
                        es.append(st.std or 0.0)
                if xs:
                    ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=METHOD_NAMES[method])
            levels = sorted({level_of(r) for r in spec.data})
            _score_axes(ax, levels, [str(x) for x in levels], "budget (avg final rank)", base=2)
        elif spec.kind == "lr":
            fig, ax = plt.subplots(figsize=(6, 3.8))
            cells = defaultdict(list)
            for r in spec.data:
                cells[(level_of(r), r.get("method"))].append(r)
            for i, (lv, method) in enumerate(
                sorted(cells, key=lambda k: (level_key(k[0]), k[1] != "lora"))
            ):
                at = by_lr(cells[(lv, method)])
                pts = [(lr, st) for lr, st in ((lr, stats_of(at[lr])) for lr in sorted(at)) if st.n]
                line = ax.errorbar(
                    [lr for lr, _ in pts],
                    [st.mean for _, st in pts],
                    yerr=[st.std or 0.0 for _, st in pts],
                    marker="o",
                    capsize=3,
                    linestyle="-" if method == "adalora" else "--",
                    label=f"{METHOD_NAMES[method]}, {level_text(lv)}",
                )
                dots = [(lr, v) for lr, st in pts for v in st.values]  # the ok runs' scores
                ax.scatter(
                    [x * (1.04 ** (i - 1.5)) for x, _ in dots],
                    [y for _, y in dots],
                    s=9,
                    color=line[0].get_color(),
                    alpha=0.6,
                )  # nudged apart so seeds show
            lrs = sorted({lr_of(r) for r in spec.data})
            _score_axes(ax, lrs, [lr_text(x) for x in lrs], "learning rate")
        elif spec.kind == "loss":
            fig, ax = plt.subplots(figsize=(6.5, 4))
            for label in sorted(spec.data):
                xs, ys = mean_curve(spec.data[label])
                ax.plot(xs, ys, label=f"{label} (n={len(spec.data[label])})", linewidth=1)
            ax.set_yscale("log")
            ax.set_xlabel("step")
            ax.set_ylabel("training loss")
            ax.legend(fontsize=6)
        else:  # pragma: no cover
            continue
        ax.set_title("\n".join(textwrap.wrap(spec.caption, 60)), fontsize=8)
        fig.tight_layout()
        fig.savefig(spec.path, dpi=100, metadata={"Software": None})
        plt.close(fig)


def figures_section(specs: list, out_path: Path) -> list:
    lines = ["## Figures", ""]
    if not specs:
        return lines + ["No figures yet (they need AdaLoRA / LoRA runs)."]
    for s in specs:
        rel = Path(os.path.relpath(s.path.resolve(), out_path.resolve().parent)).as_posix()
        lines += [f"![{s.caption}]({rel})", ""]
    return lines[:-1]


# --------------------------------------------------------------------------------------------
# W&B
# --------------------------------------------------------------------------------------------

_NOT_HP = (
    "schema",
    "run_name",
    "kind",
    "task",
    "method",
    "model",
    "model_type",
    "seed",
    "preset",
    "n_train",
    "n_eval",
    "variant_tag",
    "sweep",
    "hyperparameters",
    "status",
)
_GROUPING = ("task", "method", "model", "seed", "preset")


def wandb_to_record(
    name: str,
    config: dict,
    summary: dict,
    state: str = "finished",
    sweep_params: Iterable[str] = (),
) -> dict:
    """Convert one W&B run into an ``adalora.result/1`` record. ``config`` is what
    experiments/train.py logs (task, method, model, seed, preset, n_train, n_eval, every
    hyperparameter, ``variant_tag``, ``sweep``); ``summary`` holds eval/main_best,
    eval/main_final, status and params/*. W&B sweep parameters other than task / method / model /
    seed / preset become ``hyperparameters.sweep``. Rank patterns are not pulled (None)."""
    cfg = {str(k).replace("-", "_"): v for k, v in config.items() if not str(k).startswith("_")}
    hp = (
        dict(cfg["hyperparameters"])
        if isinstance(cfg.get("hyperparameters"), dict)
        else {k: v for k, v in cfg.items() if k not in _NOT_HP}
    )
    sweep = dict(cfg["sweep"]) if isinstance(cfg.get("sweep"), dict) else {}
    for p in sweep_params:
        k = p.replace("-", "_")
        if k not in _GROUPING:
            sweep.setdefault(k, cfg.get(k))
    if sweep:
        hp["sweep"] = sweep
    method = cfg.get("method")
    budget = None
    b, n_mod = hp.get("budget"), hp.get("n_modules")
    if isinstance(b, dict):
        budget = b
    elif method not in ("full", "bitfit") and b is not None and n_mod:
        budget = {
            "n_modules": n_mod,
            "final_total_rank": b,
            "avg_final_rank": round(float(b) / float(n_mod), 4),
            "curve": None,
        }
    main = summary.get("eval/main")
    if isinstance(main, dict):  # W&B summary of a "max" metric
        main = main.get("max")
    variant = cfg.get("variant_tag") if "variant_tag" in cfg else (cfg.get("variant") or "")
    kind = cfg.get("kind") or (
        "summarization" if cfg.get("task") in P.SUMMARIZATION_TASKS else "glue"
    )
    return {
        "schema": SCHEMA,
        "run_name": cfg.get("run_name") or name,
        "kind": kind,
        "task": cfg.get("task"),
        "method": method,
        "variant": variant or "",
        "model": cfg.get("model"),
        "model_type": cfg.get("model_type"),
        "seed": cfg.get("seed"),
        "preset": cfg.get("preset"),
        "n_train": cfg.get("n_train"),
        "n_eval": cfg.get("n_eval"),
        "hyperparameters": hp,
        "budget": budget,
        "params": {
            "trainable": summary.get("params/trainable"),
            "final_adapter": summary.get("params/final_adapter"),
            "total": None,
        },
        "rank_pattern": None,
        "metrics": {
            "main": cfg.get("main_metric", "main"),
            "table_uses": "best",
            "evals": [],
            "final": {},
            "best": {},
            "main_best": summary.get("eval/main_best", main),
            "main_final": summary.get("eval/main_final", main),
        },
        "status": summary.get("status") or ("ok" if state == "finished" else str(state)),
        "wall_time_s": summary.get("_runtime"),
        "versions": {},
        "hardware": {},
        "command": None,
        "created": None,
        "_path": f"wandb:{name}",
    }


def fetch_wandb(path: str) -> list:
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        raise SystemExit(
            f"--wandb {path}: W&B is offline (WANDB_MODE={mode}); pulling runs needs "
            "network access. Unset WANDB_MODE or drop --wandb."
        )
    try:
        import wandb

        api = wandb.Api(timeout=30)
        out = []
        for run in api.runs(path):
            params = []
            if getattr(run, "sweep", None) is not None:
                params = sorted((run.sweep.config or {}).get("parameters", {}))
            summary = (
                dict(run.summary._json_dict)
                if hasattr(run.summary, "_json_dict")
                else dict(run.summary)
            )
            out.append(wandb_to_record(run.name, dict(run.config), summary, run.state, params))
        return out
    except SystemExit:
        raise
    except Exception as e:  # network, auth, unknown project
        raise SystemExit(
            f"--wandb {path}: could not pull runs from W&B ({type(e).__name__}: {e}). "
            "This needs network access and a W&B API key (wandb login)."
        ) from None


# --------------------------------------------------------------------------------------------
# document
# --------------------------------------------------------------------------------------------


def accounting(recs: list) -> list:
    by = defaultdict(lambda: defaultdict(int))
    for r in recs:
        by[str(r.get("kind"))][status_of(r)] += 1
    n_sweep = sum(1 for r in recs if not is_main(r))
    lines = ["## Runs", ""]
    if not recs:
        return lines + ['No result files yet: every "ours" cell is "-".']
    for kind in sorted(by):
        n = sum(by[kind].values())
        lines.append(
            f"- {kind}: {n} run{'s' if n != 1 else ''} ("
            + ", ".join(f"{c} {s}" for s, c in sorted(by[kind].items()))
            + ")"
        )
    lines.append(
        f"- {n_sweep} runs come from hyperparameter sweeps (`hyperparameters.sweep` varies "
        "more than LR / score / schedule / budget) and appear only in the sweep tables."
    )
    lines.append('- Means use runs with status "ok"; other runs are counted in their cells.')
    return lines


def generate(
    recs: list, results_dir: Path, out_path: Path, fig_dir: Path, shared: float | None = None
) -> tuple:
    """(markdown text, figure specs)."""
    recs = sorted(recs, key=lambda r: (str(r.get("run_name")), str(r.get("_path"))))
    disc = Path(results_dir) / "discussion.md"
    discussion = disc.read_text().strip() if disc.exists() else ""
    specs = figure_specs(recs, Path(fig_dir))
    L = [
        "# AdaLoRA reproduction: the paper's tables next to ours",
        "",
        "<!-- Generated by scripts/make_tables.py from result files; do not edit by hand. -->",
        "",
        f"Generated file: regenerate with `{REGEN_COMMAND}` (options `--results DIR --out FILE "
        "--figures DIR --shared-lr LR --wandb ENTITY/PROJECT`; `--check` verifies it is "
        "current). Edit the discussion in `results/discussion.md`, not here.",
        "",
        f'**Backbones differ.** Rows labelled "paper" are the paper\'s numbers '
        f"({P.GLUE_MODEL} for GLUE, {P.SUMMARIZATION_MODEL} for summarisation). Our rows use "
        "the model each names, usually a smaller backbone with fewer adapted matrices, so "
        "compare trends (AdaLoRA vs LoRA at a matched budget), not absolute numbers.",
        "",
        "## Discussion",
        "",
        discussion or "-",
        "",
    ]
    L += accounting(recs) + [""]
    L += table1(recs, shared) + [""]
    L += lr_table(recs) + [""]
    L += param_table(recs) + [""]
    L += table3(recs) + [""]
    L += ["## Tables 4 and 5: ablations", ""] + paper_ablation_tables() + [""]
    L += ablation_table(recs) + [""]
    L += schedule_table(recs) + [""]
    L += sweep_tables(recs) + [""]
    L += figures_section(specs, out_path) + [""]
    L += ["## Notes from the paper", ""] + [f"- {n}" for n in P.NOTES]
    return "\n".join(L) + "\n", specs


def main(argv: list | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=str(ROOT / "results"), help="result-file root")
    ap.add_argument("--out", default=str(ROOT / "paper_tables.md"))
    ap.add_argument("--figures", default=None, help="figure dir (default: <results>/figures)")
    ap.add_argument(
        "--shared-lr",
        type=float,
        default=None,
        help="LR for the shared-LR rows (default: chosen per task, see the file)",
    )
    ap.add_argument(
        "--check", action="store_true", help="exit 1 if --out differs from what would be generated"
    )
    ap.add_argument(
        "--wandb",
        default=None,
        metavar="ENTITY/PROJECT",
        help="also pull runs from this W&B project (needs network)",
    )
    args = ap.parse_args(argv)
    results = Path(args.results)
    out = Path(args.out)
    fig_dir = Path(args.figures) if args.figures else results / "figures"
    src = results / "evidence" if (results / "evidence").is_dir() else results
    recs = load_results(src) if src.exists() else []
    if args.wandb:
        local = {r.get("run_name") for r in recs}
        recs += [r for r in fetch_wandb(args.wandb) if r.get("run_name") not in local]
    text, specs = generate(recs, results, out, fig_dir, args.shared_lr)
    if args.check:
        current = out.read_text() if out.exists() else None
        if current != text:
            why = "does not exist" if current is None else "is out of date"
            print(f"{out} {why}: regenerate with `{REGEN_COMMAND}` and commit it.", file=sys.stderr)
            return 1
        print(f"{out} is up to date ({len(recs)} runs).")
        return 0
    render_figures(specs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out} ({len(recs)} runs, {len(specs)} figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
