"""GLUE: Table 1 (the paper's rows beside ours at the best and at a shared LR, and AdaLoRA − LoRA),
every learning rate behind it, and the final adapter parameters at matched budgets."""

from __future__ import annotations

from collections.abc import Sequence

from experiments.methods import METHODS
from scripts import paper_numbers as P
from scripts.report.fmt import (
    avg_cell,
    avg_diff_cell,
    diff_cell,
    fmt_cell,
    level_text,
    lr_text,
    md_table,
    method_name,
    task_name,
)
from scripts.report.records import (
    METHOD_ORDER,
    NO_BUDGET,
    Run,
    level_key,
    lr_key,
    method_key,
    sort_tasks,
    task_rank,
    value_key,
)
from scripts.report.stats import best_lr_stats, group, lr_stats, shared_lr, stats_of

# The methods of the paper's Table 1 that this suite runs (experiments/methods.py METHODS), in
# its order: full, bitfit, lora, adalora
TABLE1_METHODS = tuple(
    m for m in METHOD_ORDER if m in METHODS and any(p["method"] == m for p in P.TABLE1)
)
DEFAULT_LEVELS = (8, 4, 2)  # the paper's GLUE budgets (avg final rank)


def table1_runs(runs: Sequence[Run]) -> list:
    """The runs Table 1 (and the tables behind it) draw on: plain GLUE runs of its methods."""
    return [
        r
        for r in runs
        if r.kind == "glue" and r.variant == "" and r.method in TABLE1_METHODS and r.is_main()
    ]


def _source(model) -> str:
    return f"ours: {model}" if model is not None else "ours (no runs yet)"


def _lr_shared(idx: dict, model, task, level) -> float | None:
    """The LR LoRA and AdaLoRA share best in one Table 1 cell (stats.shared_lr)."""
    lora = idx.get((model, task, "lora", level), [])
    return shared_lr(lora, idx.get((model, task, "adalora", level), []))


def _level_rows(idx: dict, tasks: list, models: list, level, shared: float | None) -> list:
    """Table 1 rows of one budget level: the paper's, ours at the best LR and (LoRA, AdaLoRA)
    at the shared LR, then AdaLoRA − LoRA both ways."""
    paper_rows = [p for p in P.TABLE1 if p["level"] == level]
    ours = ["full", "bitfit"] if level == NO_BUDGET else ["lora", "adalora"]
    ours += sorted({k[2] for k in idx if k[3] == level} - set(ours), key=method_key)
    methods = sorted({p["method"] for p in paper_rows} | set(ours), key=method_key)

    def row(method_label, source, cells):
        return (
            [level_text(level), method_label, source]
            + [fmt_cell(c) for c in cells]
            + [avg_cell([c.mean for c in cells], len(tasks))]
        )

    rows, best, at_shared = [], {}, {}
    for method in methods:
        for p in paper_rows:
            if p["method"] == method:
                rows.append(
                    [level_text(level), p["label"], f"paper ({P.GLUE_MODEL}, {p['params']} params)"]
                    + [p["scores"].get(t, "-") for t in tasks]
                    + [p["avg"]]
                )
        if method not in ours:
            continue
        for model in models:
            cells = [best_lr_stats(idx.get((model, t, method, level), [])) for t in tasks]
            best.update({(model, method, t): c for t, c in zip(tasks, cells)})
            rows.append(row(method_name(method), _source(model) + ", best LR", cells))
            if method not in ("lora", "adalora"):
                continue
            lrs = [
                shared if shared is not None else _lr_shared(idx, model, t, level) for t in tasks
            ]
            cells = [
                lr_stats(idx.get((model, t, method, level), []), lr) for t, lr in zip(tasks, lrs)
            ]
            at_shared.update({(model, method, t): c for t, c in zip(tasks, cells)})
            rows.append(row(method_name(method), _source(model) + ", shared LR", cells))
    if level == NO_BUDGET:
        return rows
    for model in models:
        for label, table in (("best LR each", best), ("shared LR", at_shared)):
            diffs = [
                diff_cell(table[(model, "adalora", t)], table[(model, "lora", t)]) for t in tasks
            ]
            rows.append(
                [level_text(level), "AdaLoRA − LoRA", f"{_source(model)}, {label}"]
                + [text for text, _ in diffs]
                + [avg_diff_cell([d for _, d in diffs])]
            )
    return rows


def _table1_intro(runs: list, tasks: list, shared: float | None) -> list:
    metric_names = {t: sorted({r.main_metric for r in rr}) for t, rr in group(runs, "task").items()}
    uses = sorted({r.table_uses for r in runs})
    ours_metrics = "; ".join(
        f"{task_name(t)}: {', '.join(metric_names[t])}" for t in tasks if metric_names.get(t)
    )
    if shared is not None:
        shared_text = f"fixed at lr={lr_text(shared)} (--shared-lr)."
    else:
        shared_text = (
            "per task and budget, the LR at which LoRA and AdaLoRA both have ok runs that "
            "maximises the average of their two means, among the LRs where both have the "
            "most runs (shown in each cell)."
        )
    return [
        "## Table 1: GLUE dev (paper: DeBERTaV3-base, mean of 5 seeds)",
        "",
        "Paper metrics: "
        + ", ".join(f"{task_name(t)} {P.GLUE_PAPER_METRIC[t]}" for t in P.GLUE_TASKS)
        + ". Paper budget levels: "
        + ", ".join(f"r={k} ≈ {v} params" for k, v in P.GLUE_LEVEL_PARAMS.items())
        + " (avg final rank over 72 matrices).",
        "",
        "Ours: `metrics.main` x100 (" + (ours_metrics or "no runs yet") + "), "
        "taking `main_best` or `main_final` per `metrics.table_uses` ("
        + (", ".join(uses) or "-")
        + "). Cells: mean ± sample std (n = seeds) "
        'over runs with status "ok"; runs with another status are counted in the '
        "cell, not averaged. Budget level = `budget.avg_final_rank` rounded (LoRA runs: "
        'their matched level); full FT / BitFit have no budget ("-").',
        "",
        '"best LR": per task, the LR with the highest mean for that method and budget, '
        "among its LRs with the most runs (a sweep point with fewer seeds cannot win on "
        'them; table "Every learning rate" shows all). "shared LR": '
        + shared_text
        + " AdaLoRA − LoRA: difference of means ± combined std sqrt(s1²/n1 + s2²/n2); "
        '"*" marks |diff| > 2 × combined std. avg: mean over the tasks with runs.',
        "",
    ]


def table1(runs: Sequence[Run], shared: float | None) -> list:
    """Table 1: GLUE dev per budget level; ``shared`` fixes the shared LR (--shared-lr)."""
    runs = table1_runs(runs)
    tasks = sort_tasks(P.GLUE_TASKS + tuple(r.task for r in runs), P.GLUE_TASKS)
    idx = group(runs, "model", "task", "method", "level")
    models = sorted({r.model for r in runs}) or [None]
    levels = sorted({NO_BUDGET, *DEFAULT_LEVELS} | {r.level for r in runs}, key=level_key)
    header = ["budget (avg final rank)", "method", "source"] + [task_name(t) for t in tasks]
    rows = [row for lv in levels for row in _level_rows(idx, tasks, models, lv, shared)]
    return _table1_intro(runs, tasks, shared) + md_table(header + ["avg"], rows)


def lr_table(runs: Sequence[Run]) -> list:
    """Every LR of the sweep for each LoRA / AdaLoRA cell of Table 1 (and full FT / BitFit at
    theirs): mean ± std (n) of the plain runs, and the per-seed scores, so a seed that stays at
    chance shows as one."""
    runs = table1_runs(runs)
    idx = group(runs, "model", "task", "method", "level")
    lrs = sorted({r.lr for r in runs}, key=lr_key)
    keys = sorted(
        idx,
        key=lambda k: (str(k[0]), task_rank(k[1]), str(k[1]), level_key(k[3]), method_key(k[2])),
    )
    rows = []
    for model, task, method, level in keys:
        at = group(idx[(model, task, method, level)], "lr")
        cells = []
        for lr in lrs:
            rr = at.get(lr, [])
            seeds = ", ".join(
                f"{r.score:.1f}" if r.score is not None else r.status
                for r in sorted(rr, key=lambda r: value_key(r.seed))
            )
            cells.append(f"{fmt_cell(stats_of(rr), show_lr=False)} [{seeds}]" if rr else "-")
        rows.append([str(model), task_name(task), level_text(level), method_name(method)] + cells)
    lines = [
        "### Every learning rate (ours)",
        "",
        'The cells behind Table 1\'s "best LR" and "shared LR" rows: mean ± std (n) over '
        '"ok" runs at each LR, then every run\'s score in seed order (x100).',
        "",
    ]
    if not rows:
        return lines + ["No runs yet."]
    header = ["model", "task", "budget (avg final rank)", "method"]
    return lines + md_table(header + [f"lr={lr_text(lr)}" for lr in lrs], rows)


def _span(counts: list) -> str:
    lo, hi = min(counts), max(counts)
    return f"{lo:,d}" if lo == hi else f"{lo:,d}-{hi:,d}"


def param_table(runs: Sequence[Run]) -> list:
    """Final adapter parameters per (model, task, budget level): b(T) fixes the total rank, not
    the parameter count, so AdaLoRA's count depends on where it put its ranks (a rank of a
    384 x 1536 matrix costs 1921 parameters, one of a 384 x 384 matrix 769)."""
    runs = [
        r
        for r in table1_runs(runs)
        if r.method in ("lora", "adalora") and r.final_adapter is not None
    ]
    counts = {
        k: [r.final_adapter for r in rr]
        for k, rr in group(runs, "model", "task", "level", "method").items()
    }
    keys = sorted(
        {k[:3] for k in counts}, key=lambda k: (str(k[0]), task_rank(k[1]), level_key(k[2]))
    )
    rows = []
    for model, task, level in keys:
        lo = counts.get((model, task, level, "lora"))
        ada = counts.get((model, task, level, "adalora"))
        ratio = f"{min(ada) / max(lo):.2f}-{max(ada) / min(lo):.2f}" if lo and ada else "-"
        rows.append(
            [
                str(model),
                task_name(task),
                level_text(level),
                _span(lo) if lo else "-",
                f"{_span(ada)} (n={len(ada)})" if ada else "-",
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
    header = ["model", "task", "budget (avg final rank)", "LoRA", "AdaLoRA", "AdaLoRA / LoRA"]
    return lines + md_table(header, rows)
