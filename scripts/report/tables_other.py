"""Summarisation (Table 3), the ablations (the paper's Tables 4 and 5 beside ours), the budget
schedule shape, and the hyperparameter sweeps (scripts/ablate.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from adalora.config import SCHEDULES
from experiments.methods import ADAPTER_METHODS
from scripts import paper_numbers as P
from scripts.report.fmt import (
    fmt_cell,
    fmt_sweep,
    level_text,
    lr_text,
    md_table,
    method_name,
    task_name,
)
from scripts.report.records import (
    Run,
    level_key,
    lr_key,
    method_key,
    sort_tasks,
    task_rank,
    value_key,
)
from scripts.report.stats import Stats, best_lr_stats, group, lr_stats, stats_of

ABLATION_METHODS = ADAPTER_METHODS  # adalora, lora, svd_lora, prune_lora
ABLATION_COLUMNS = (  # (method, variant, column title)
    ("adalora", "", "AdaLoRA"),
    ("prune_lora", "", "Prune LoRA"),
    ("svd_lora", "", "SVD-LoRA"),
    ("adalora", "score=sensitivity", "sensitivity only (s = I)"),
    ("adalora", "score=magnitude", "S_i = |lambda_i|"),
    ("adalora", "gamma=0", "AdaLoRA gamma=0"),
    ("lora", "", "LoRA"),
)


def _row_key(model, task, level) -> tuple:
    """Rows by model, the paper's task order, then the highest budget first."""
    return (str(model), task_rank(task), str(task), level_key(level))


# ---------------------------------------------------------------- Table 3


def _adapter_pct(runs: Sequence[Run]) -> str:
    """Mean final adapter parameters as a percentage of all parameters."""
    vals = [
        100.0 * float(r.final_adapter) / float(r.total_params)
        for r in runs
        if r.final_adapter is not None and r.total_params
    ]
    return f"{math.fsum(vals) / len(vals):.2f}% params" if vals else "-"


def rouge_cell(runs: Sequence[Run], key: str) -> Stats:
    """ROUGE ``key`` at the LR that maximises the mean main score."""
    if not runs:
        return Stats()
    chosen = best_lr_stats(runs)
    if not chosen.lr_known:
        return stats_of(runs, key)
    if chosen.lr is not None:
        st = lr_stats(runs, chosen.lr, key)
    else:
        st = stats_of([r for r in runs if r.lr is None], key)
    st.lr, st.lr_known, st.other_lrs = chosen.lr, True, chosen.other_lrs
    return st


def table3(runs: Sequence[Run]) -> list:
    """Table 3: ROUGE-1/2/L per budget level and method, the paper's rows first."""
    runs = [r for r in runs if r.kind == "summarization" and r.variant == "" and r.is_main()]
    tasks = sort_tasks(P.SUMMARIZATION_TASKS + tuple(r.task for r in runs), P.SUMMARIZATION_TASKS)
    idx = group(runs, "model", "task", "method", "level")
    header = ["budget", "method", "source"] + [
        f"{task_name(t)} {k}" for t in tasks for k in ("R-1", "R-2", "R-L")
    ]
    rows = [
        [p["budget"], p["label"], f"paper ({P.SUMMARIZATION_MODEL})"]
        + [x for t in tasks for x in p["scores"].get(t, ("-", "-", "-"))]
        for p in P.TABLE3
    ]
    models = sorted({r.model for r in runs})
    if not models:
        for method in ("lora", "adalora"):
            rows.append(["-", method_name(method), "ours (no runs yet)"] + ["-"] * (3 * len(tasks)))
    for model in models:
        cells = group([r for r in runs if r.model == model], "level", "method")
        for level, method in sorted(cells, key=lambda c: (level_key(c[0]), method_key(c[1]))):
            scores = [
                fmt_cell(rouge_cell(idx.get((model, t, method, level), []), key))
                for t in tasks
                for key in P.ROUGE_KEYS
            ]
            rows.append(
                [
                    f"{level_text(level)} ({_adapter_pct(cells[(level, method)])})",
                    method_name(method),
                    f"ours: {model}, best LR",
                ]
                + scores
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
    return lines + md_table(header, rows)


# ---------------------------------------------------------------- Tables 4 / 5 (ablations)


def paper_ablation_tables() -> list:
    """The paper's Tables 4 and 5 as published."""
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


def _ablation_cell(runs: Sequence[Run], lr: float | None) -> Stats:
    return lr_stats(runs, lr) if lr is not None else best_lr_stats(runs)


def ablation_table(runs: Sequence[Run]) -> list:
    """Ours: one row per (model, task, budget level) with an ablation run; one column per
    (method, variant)."""
    runs = [
        r
        for r in runs
        if r.kind == "glue"
        and r.is_main()
        and "schedule" not in r.tags
        and r.method in ABLATION_METHODS
    ]
    fixed = {(m, v) for m, v, _ in ABLATION_COLUMNS}
    extra = sorted(
        {(r.method, r.variant) for r in runs} - fixed, key=lambda c: (method_key(c[0]), c[1])
    )
    cols = list(ABLATION_COLUMNS) + [(m, v, f"{method_name(m)} {v}") for m, v in extra]
    idx = group(runs, "model", "task", "level", "method", "variant")
    reference = {("adalora", ""), ("lora", "")}
    keys = sorted({k[:3] for k in idx if k[3:] not in reference}, key=lambda k: _row_key(*k))
    rows = []
    for model, task, level in keys:
        # Compare at the ablations' LR when they share one (a reference column at its best LR
        # would mix an LR effect into the ablation); otherwise every cell at its best LR.
        abl = [
            r
            for k, rr in idx.items()
            if k[:3] == (model, task, level) and k[3:] not in reference
            for r in rr
        ]
        one_lr = abl[0].lr if len({lr_key(r.lr) for r in abl}) == 1 else None
        rows.append(
            [model, task_name(task), level_text(level)]
            + [
                fmt_cell(_ablation_cell(idx.get((model, task, level, m, v), []), one_lr))
                for m, v, _ in cols
            ]
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
    return lines + md_table(["model", "task", "budget"] + [c[2] for c in cols], rows)


def schedule_table(runs: Sequence[Run]) -> list:
    """AdaLoRA with variant "schedule=linear" / "schedule=constant" beside the cubic default."""
    runs = [
        r
        for r in runs
        if r.kind == "glue"
        and r.method == "adalora"
        and r.is_main()
        and set(r.tags) <= {"schedule"}
    ]
    idx = group(runs, "model", "task", "level", "schedule")
    scheds = list(SCHEDULES) + sorted({k[3] for k in idx} - set(SCHEDULES))
    keys = sorted({k[:3] for k in idx if k[3] != "cubic"}, key=lambda k: _row_key(*k))
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


# ---------------------------------------------------------------- sweeps

# The cell a sweep point belongs to: (model, task, method, variant, budget level).
_CELL = (
    lambda r: str(r.model),
    lambda r: str(r.task),
    lambda r: str(r.method),
    "variant",
    "level",
)


def _cell(r: Run) -> tuple:
    return tuple(getattr(r, k) if isinstance(k, str) else k(r) for k in _CELL)


def _cell_key(cell: tuple) -> tuple:
    model, task, method, variant, level = cell
    return (model, task_rank(task), task, method_key(method), variant, level_key(level))


def _cell_cols(cell: tuple) -> list:
    model, task, method, variant, level = cell
    return [model, task_name(task), method, variant or "-", level_text(level)]


def _pooled(runs: Sequence[Run], k: str) -> str:
    """The values of the other swept hyperparameters that a marginal cell pools over."""
    others = {}
    for r in runs:
        for key, v in r.sweep.items():
            if key != k:
                others.setdefault(key, set()).add(v)
    return (
        "; ".join(
            f"{key} in {{{', '.join(str(x) for x in sorted(vs, key=value_key))}}}"
            for key, vs in sorted(others.items())
        )
        or "-"
    )


def _marginal_rows(sweep_runs: Sequence[Run], runs: Sequence[Run], k: str) -> list:
    """Rows of the marginal table of swept key ``k``: per (cell, LR, value of k), pooled over
    the other swept keys, beside the plain (unswept) runs of the same cell and LR at their own
    value of k (a value the sweep also ran keeps only the swept runs)."""
    lr_of = (lambda r: None) if k == "lr" else "lr"
    groups = group([r for r in sweep_runs if k in r.sweep], *_CELL, lr_of, lambda r: r.sweep[k])
    plain_keys = set()
    if k != "lr":
        cells = {g[:-1] for g in groups}
        plain = group(
            [
                r
                for r in runs
                if not r.sweep and r.hp.get(k) is not None and (*_cell(r), r.lr) in cells
            ],
            *_CELL,
            "lr",
            lambda r: r.hp[k],
        )
        plain_keys = set(plain) - set(groups)
        groups.update({g: plain[g] for g in plain_keys})
    rows = []
    for g in sorted(groups, key=lambda g: (_cell_key(g[:5]), lr_key(g[5]), value_key(g[6]))):
        lr, v = g[5], g[6]
        pooled = "not swept (the plain runs)" if g in plain_keys else _pooled(groups[g], k)
        rows.append(
            _cell_cols(g[:5])
            + [lr_text(lr) if k != "lr" else "(swept)", str(v), fmt_cell(stats_of(groups[g]))]
            + [pooled]
        )
    return rows


def sweep_tables(runs: Sequence[Run]) -> list:
    """One marginal table per swept hyperparameter, then every sweep point."""
    sweep_runs = [r for r in runs if r.sweep]
    lines = ["## Hyperparameter sweeps (`scripts/ablate.py`)", ""]
    if not sweep_runs:
        return lines + ["No sweep runs yet (runs whose `hyperparameters.sweep` is set)."]
    lines.append(
        "Marginal tables: runs grouped by one swept hyperparameter (and model, task, "
        "method, variant, budget level, LR), pooled over the other swept values that "
        "are listed, beside the plain (unswept) runs of the same cell at their own "
        'value. Mean ± std (n) over "ok" runs.'
    )
    for k in sorted({k for r in sweep_runs for k in r.sweep}):
        lines += ["", f"### Sweep: `{k}`", ""]
        lines += md_table(
            ["model", "task", "method", "variant", "budget", "lr", k, "score", "pooled over"],
            _marginal_rows(sweep_runs, runs, k),
        )
    points = group(sweep_runs, *_CELL, "lr", lambda r: fmt_sweep(r.sweep))
    rows = [
        _cell_cols(g[:5]) + [lr_text(g[5]), g[6], fmt_cell(stats_of(points[g]))]
        for g in sorted(points, key=lambda g: (_cell_key(g[:5]), lr_key(g[5]), g[6]))
    ]
    lines += ["", "### All sweep points", ""]
    return lines + md_table(
        ["model", "task", "method", "variant", "budget", "lr", "sweep point", "score"], rows
    )
