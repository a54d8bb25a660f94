"""Figures: which ones the runs call for (``figure_specs``), drawing them (``render_figures``,
PNGs without a timestamp or version so that they are reproducible), and their markdown section.

    rank     final rank per layer and matrix (the paper's Figure 1), per task and budget
    budget   b(t) over training, per task (one curve per budget level and schedule)
    score    dev score vs budget, LoRA vs AdaLoRA, best LR per point
    lr       dev score vs learning rate, LoRA vs AdaLoRA (Table 1's runs)
    loss     training loss per (method, variant, budget, LR, sweep point), mean over seeds
"""

from __future__ import annotations

import math
import os
import re
import statistics
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.plots import pyplot, rank_grid, rank_heatmap_figure
from scripts.report.fmt import fmt_sweep, level_text, lr_text, method_name, task_name
from scripts.report.records import NO_BUDGET, Run, level_key
from scripts.report.stats import best_lr_stats, group, stats_of
from scripts.report.tables_glue import table1_runs


@dataclass
class Figure:
    kind: str  # "rank" | "budget" | "score" | "lr" | "loss" | "conv_..." (figures_converged)
    path: Path
    caption: str
    data: Any  # the runs it draws, in the shape its kind needs
    # (pyplot, data) -> (figure, axes for the caption, or None for a figure-wide title); for
    # kinds not in _DRAW (the converged figures)
    draw: Callable | None = None


def model_slug(model: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", str(model)).strip("-").lower() or "model"


def _model(r: Run) -> str:
    return str(r.model)


def _task(r: Run) -> str:
    return str(r.task)


def curve_label(r: Run) -> str:
    """One legend entry per (method, variant, budget level, LR, sweep point)."""
    parts = [method_name(r.method)]
    parts += [r.variant] if r.variant else []
    parts += [level_text(r.level)] if r.level != NO_BUDGET else []
    parts += [f"lr={lr_text(r.lr)}"]
    parts += [fmt_sweep(r.other_sweep)] if r.other_sweep else []
    return ", ".join(parts)


def mean_curve(runs: Sequence[Run]) -> tuple:
    """(steps, mean loss over the runs that logged each step), finite losses only."""
    points = [
        (row["step"], row["loss"])
        for r in runs
        for row in r.train_log or []
        if isinstance(row.get("loss"), (int, float)) and math.isfinite(row["loss"])
    ]
    if not points:
        return [], []
    loss = pd.DataFrame(points, columns=["step", "loss"]).groupby("step")["loss"]
    means = loss.agg(statistics.fmean)
    return means.index.tolist(), means.tolist()


def _rank_specs(runs: Sequence[Run], fig_dir: Path) -> list:
    plain = [
        r
        for r in runs
        if r.method == "adalora" and r.variant == "" and r.is_main() and r.rank_pattern and r.ok
    ]
    groups = group(plain, _model, _task, "level")
    specs = []
    for model, task, level in sorted(groups, key=lambda k: (k[0], k[1], level_key(k[2]))):
        rr = groups[(model, task, level)]
        if not rank_grid([r.rank_pattern for r in rr])[0]:
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
    return specs


def _budget_specs(runs: Sequence[Run], fig_dir: Path) -> list:
    with_curve = [
        r
        for r in runs
        if r.method == "adalora" and r.is_main() and set(r.tags) <= {"schedule"} and r.budget_curve
    ]
    curves = {}  # (model, task) -> {(level, schedule): the first run by name}
    for (model, task, level, sched), rr in group(
        with_curve, _model, _task, "level", "schedule"
    ).items():
        curves.setdefault((model, task), {})[(level, sched)] = min(rr, key=lambda r: r.name)
    return [
        Figure(
            "budget",
            fig_dir / f"budget_{task}_{model_slug(model)}.png",
            f"Budget b(t) (total rank) over training, AdaLoRA, {task_name(task)}, {model}",
            curves[(model, task)],
        )
        for model, task in sorted(curves)
    ]


def _score_specs(runs: Sequence[Run], fig_dir: Path) -> list:
    pts = group(
        [
            r
            for r in runs
            if r.method in ("lora", "adalora")
            and r.variant == ""
            and r.is_main()
            and r.level != NO_BUDGET
        ],
        _model,
        _task,
    )
    return [
        Figure(
            "score",
            fig_dir / f"score_vs_budget_{task}_{model_slug(model)}.png",
            f"Dev score vs budget (avg final rank), LoRA vs AdaLoRA, {task_name(task)}, {model} "
            "(best LR per point, error bars: std over seeds)",
            pts[(model, task)],
        )
        for model, task in sorted(pts)
        if any(r.ok and r.score is not None for r in pts[(model, task)])
    ]


def _lr_specs(runs: Sequence[Run], fig_dir: Path) -> list:
    sweep = group(  # the LoRA / AdaLoRA runs of the LR table
        [
            r
            for r in table1_runs(runs)
            if r.method in ("lora", "adalora") and r.level != NO_BUDGET and r.lr is not None
        ],
        _model,
        _task,
    )
    return [
        Figure(
            "lr",
            fig_dir / f"score_vs_lr_{task}_{model_slug(model)}.png",
            f"Dev score vs learning rate, LoRA vs AdaLoRA, {task_name(task)}, {model} "
            "(line: mean of ok runs, bars: std, dots: each seed)",
            sweep[(model, task)],
        )
        for model, task in sorted(sweep)
        if len({r.lr for r in sweep[(model, task)]}) >= 2
    ]


def _loss_specs(runs: Sequence[Run], fig_dir: Path) -> list:
    logs = group([r for r in runs if r.kind == "glue" and r.train_log], _model, _task)
    return [
        Figure(
            "loss",
            fig_dir / f"train_loss_{task}_{model_slug(model)}.png",
            f"Training loss, {task_name(task)}, {model}: mean over seeds at each logging step, "
            "runs that record train_log (AdaLoRA's and SVD-LoRA's include the orthogonal "
            "regulariser gamma R)",
            group(logs[(model, task)], curve_label),
        )
        for model, task in sorted(logs)
    ]


def figure_specs(runs: Sequence[Run], fig_dir: Path) -> list:
    """Every figure the runs call for, in the order of the figures section."""
    fig_dir = Path(fig_dir)
    return (
        _rank_specs(runs, fig_dir)
        + _budget_specs(runs, fig_dir)
        + _score_specs(runs, fig_dir)
        + _lr_specs(runs, fig_dir)
        + _loss_specs(runs, fig_dir)
    )


def _score_axes(ax, ticks: list, labels: list, xlabel: str, base: int = 10) -> None:
    """Log x axis with a tick at each value, dev score on y (the score-vs-budget / -LR plots)."""
    ax.set_xscale("log", base=base)
    ax.set_xticks(ticks, labels)
    ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel("dev score x100")
    ax.legend(fontsize=7)


def _draw_budget(ax, curves: dict) -> None:
    for level, sched in sorted(curves, key=lambda k: (level_key(k[0]), k[1])):
        c = curves[(level, sched)].budget_curve
        ax.plot([p[0] for p in c], [p[1] for p in c], label=f"{level_text(level)}, {sched}")
    ax.set_xlabel("step")
    ax.set_ylabel("b(t)")
    ax.legend(fontsize=7)


def _draw_score(ax, runs: Sequence[Run]) -> None:
    for method in ("lora", "adalora"):
        by_level = group([r for r in runs if r.method == method], "level")
        points = [(lv, best_lr_stats(by_level[lv])) for lv in sorted(by_level)]
        points = [(lv, st) for lv, st in points if st.n]
        if points:
            ax.errorbar(
                [lv for lv, _ in points],
                [st.mean for _, st in points],
                yerr=[st.std or 0.0 for _, st in points],
                marker="o",
                capsize=3,
                label=method_name(method),
            )
    levels = sorted({r.level for r in runs})
    _score_axes(ax, levels, [str(x) for x in levels], "budget (avg final rank)", base=2)


def _draw_lr(ax, runs: Sequence[Run]) -> None:
    cells = group(runs, "level", "method")
    for i, (lv, method) in enumerate(
        sorted(cells, key=lambda k: (level_key(k[0]), k[1] != "lora"))
    ):
        at = group(cells[(lv, method)], "lr")
        pts = [(lr, st) for lr, st in ((lr, stats_of(at[lr])) for lr in sorted(at)) if st.n]
        line = ax.errorbar(
            [lr for lr, _ in pts],
            [st.mean for _, st in pts],
            yerr=[st.std or 0.0 for _, st in pts],
            marker="o",
            capsize=3,
            linestyle="-" if method == "adalora" else "--",
            label=f"{method_name(method)}, {level_text(lv)}",
        )
        dots = [(lr, v) for lr, st in pts for v in st.values]  # the ok runs' scores
        ax.scatter(
            [x * (1.04 ** (i - 1.5)) for x, _ in dots],  # nudged apart so seeds show
            [y for _, y in dots],
            s=9,
            color=line[0].get_color(),
            alpha=0.6,
        )
    lrs = sorted({r.lr for r in runs})
    _score_axes(ax, lrs, [lr_text(x) for x in lrs], "learning rate")


def _draw_loss(ax, curves: dict) -> None:
    for label in sorted(curves):
        xs, ys = mean_curve(curves[label])
        ax.plot(xs, ys, label=f"{label} (n={len(curves[label])})", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=6)


_DRAW = {  # kind -> (figure size, draw)
    "budget": ((6, 3.5), _draw_budget),
    "score": ((5, 3.5), _draw_score),
    "lr": ((6, 3.8), _draw_lr),
    "loss": ((6.5, 4), _draw_loss),
}


def render_figures(specs: Sequence[Figure]) -> None:
    """Write each figure's PNG (no metadata that changes between runs)."""
    if not specs:
        return
    plt = pyplot()
    for spec in specs:
        spec.path.parent.mkdir(parents=True, exist_ok=True)
        if spec.kind == "rank":
            fig = rank_heatmap_figure([r.rank_pattern for r in spec.data])
            if fig is None:
                continue
            ax = fig.axes[0]
        elif spec.draw is not None:
            fig, ax = spec.draw(plt, spec.data)
        else:
            size, draw = _DRAW[spec.kind]
            fig, ax = plt.subplots(figsize=size)
            draw(ax, spec.data)
        if ax is None:
            fig.suptitle("\n".join(textwrap.wrap(spec.caption, 110)), fontsize=8)
        else:
            ax.set_title("\n".join(textwrap.wrap(spec.caption, 60)), fontsize=8)
        fig.tight_layout()
        fig.savefig(spec.path, dpi=100, metadata={"Software": None})
        plt.close(fig)


def figure_links(specs: Sequence[Figure], out_path: Path) -> list:
    """Each figure as a markdown image, linked relative to the output file."""
    lines = []
    for s in specs:
        rel = Path(os.path.relpath(s.path.resolve(), out_path.resolve().parent)).as_posix()
        lines += [f"![{s.caption}]({rel})", ""]
    return lines[:-1]


def figures_section(specs: Sequence[Figure], out_path: Path) -> list:
    """The markdown section: each figure, linked relative to the output file."""
    lines = ["## Figures", ""]
    if not specs:
        return lines + ["No figures yet (they need AdaLoRA / LoRA runs)."]
    return lines + figure_links(specs, out_path)
