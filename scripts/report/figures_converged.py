"""Figures of the converged runs (file names start with ``conv_``):

conv_curves        dev score per epoch, one line per method (mean over the seeds of the
                   main table's cell, band: min-max over seeds), per task
conv_calibration   the calibration runs' dev score per epoch (one seed per method), per task
conv_rank          final rank per layer and matrix of the converged AdaLoRA runs (the main
                   table's cell, averaged over seeds), per task
conv_ablation      dev score vs each schedule knob (one panel per knob, error bars: std over
                   seeds), per task
conv_budget        dev score vs final adapter parameters (log scale), one line per arm family
                   across the budgets r = 1, 2, 8 (mean and 95% t interval over the report
                   seeds), full fine-tuning as a horizontal line, per task (the paper's Fig. 2)
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from scipy import stats as sps

from experiments.plots import rank_grid
from scripts.protocol import BUDGET_ROLES
from scripts.report.converged import arm_key, arm_name, arm_of, seed_cells, selections
from scripts.report.figures import Figure, figure_links, model_slug
from scripts.report.fmt import task_name
from scripts.report.records import Run, task_rank
from scripts.report.tables_converged import KNOBS, knob_stats


def _x(step, epoch) -> float:
    return round(epoch, 3) if epoch is not None else float(step or 0)


def epoch_band(runs: Sequence[Run]) -> tuple:
    """(x, mean, min, max) over the "ok" runs at each evaluation (x: epoch, rounded to 3
    decimals; the step when no epoch is recorded)."""
    at: dict = {}
    for r in runs:
        if r.ok:
            for step, epoch, v in r.evals():
                at.setdefault(_x(step, epoch), []).append(v)
    xs = sorted(at)
    return (
        xs,
        [statistics.fmean(at[x]) for x in xs],
        [min(at[x]) for x in xs],
        [max(at[x]) for x in xs],
    )


def _draw_curves(plt, curves: dict):
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for arm in sorted(curves, key=arm_key):
        xs, mean, lo, hi = epoch_band(curves[arm])
        n = sum(1 for r in curves[arm] if r.ok)
        (line,) = ax.plot(xs, mean, marker="o", markersize=3, label=f"{arm_name(arm)} (n={n})")
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev score x100")
    ax.legend(fontsize=7)
    return fig, ax


def _draw_calibration(plt, runs: list):
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for r in runs:
        ev = r.evals()
        ax.plot(
            [_x(s, e) for s, e, _ in ev],
            [v for _, _, v in ev],
            marker="o",
            markersize=3,
            label=f"{arm_name(arm_of(r))}, seed {r.seed}, lr={r.lr:g}"
            if r.lr is not None
            else f"{arm_name(arm_of(r))}, seed {r.seed}",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("dev score x100")
    ax.legend(fontsize=7)
    return fig, ax


def _draw_knobs(plt, by_knob: dict):
    order = [k for k, _ in KNOBS] + sorted(set(by_knob) - {k for k, _ in KNOBS})
    knobs = [k for k in order if k in by_knob]
    fig, axes = plt.subplots(1, len(knobs), figsize=(3.2 * len(knobs), 3.4), squeeze=False)
    for ax, knob in zip(axes[0], knobs):
        pts = [(v, st) for v, st in by_knob[knob] if st.n]
        xs = list(range(len(pts)))
        ax.errorbar(
            xs,
            [st.mean for _, st in pts],
            yerr=[st.std or 0.0 for _, st in pts],
            marker="o",
            capsize=3,
        )
        ax.set_xticks(xs, [f"{v}\n(n={st.n})" for v, st in pts], fontsize=7)
        ax.set_xlim(-0.5, max(len(pts) - 0.5, 0.5))
        ax.set_xlabel(knob)
        ax.set_ylabel("dev score x100")
    return fig, None


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple:
    """(mean, half-width of its t interval); half-width 0 for a single value."""
    n = len(values)
    m = statistics.fmean(values)
    if n < 2:
        return m, 0.0
    return m, float(sps.t.ppf(0.5 + level / 2, n - 1)) * statistics.stdev(values) / n**0.5


def budget_points(cells: dict, mt: tuple) -> dict:
    """{legend: [(adapter params, mean, half-width, n, r)]} of ``mt``'s report-seed cells, and
    "Full FT": [(None, mean, half-width, n, None)]."""
    out: dict = {}
    for legend, by_budget in BUDGET_ROLES:
        for r, arm in sorted(by_budget.items()):
            cell = cells.get((*mt, arm))
            vals = cell.stats.values if cell is not None else []
            params = sorted(x.final_adapter for x in cell.runs if x.final_adapter) if vals else []
            if vals and params:
                m, h = mean_ci(vals)
                out.setdefault(legend, []).append((params[len(params) // 2], m, h, len(vals), r))
    full = cells.get((*mt, "full"))
    if full is not None and full.stats.values:
        m, h = mean_ci(full.stats.values)
        out["Full FT"] = [(None, m, h, len(full.stats.values), None)]
    return out


def _draw_budget(plt, pts: dict):
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for legend, rows in pts.items():
        if legend == "Full FT":
            _, m, h, n, _ = rows[0]
            line = ax.axhline(m, color="black", linestyle="--", linewidth=1,
                              label=f"Full FT (n={n})")  # fmt: skip
            ax.axhspan(m - h, m + h, color=line.get_color(), alpha=0.08, linewidth=0)
            continue
        xs, ms, hs = [p[0] for p in rows], [p[1] for p in rows], [p[2] for p in rows]
        ns = ",".join(str(p[3]) for p in rows)
        ax.errorbar(xs, ms, yerr=hs, marker="o", capsize=3, label=f"{legend} (n={ns})")
        for x, m, _, _, r in rows:
            ax.annotate(f"r={r}", (x, m), textcoords="offset points", xytext=(4, -10),
                        fontsize=6)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("final adapter parameters (log scale)")
    ax.set_ylabel("dev score x100")
    ax.legend(fontsize=7)
    return fig, ax


def _mt(r: Run) -> tuple:
    return (str(r.model), str(r.task))


def _sorted(keys) -> list:
    return sorted(keys, key=lambda mt: (mt[0], task_rank(mt[1]), mt[1]))


def converged_figure_specs(runs: Sequence[Run], fig_dir: Path) -> list:
    """Every converged figure the runs call for, in the order of the section."""
    conv = [r for r in runs if r.converged]
    fig_dir = Path(fig_dir)
    cells = seed_cells(conv, selections(conv))
    specs = []

    def path(kind: str, mt: tuple) -> Path:
        return fig_dir / f"conv_{kind}_{mt[1]}_{model_slug(mt[0])}.png"

    curves: dict = {}
    for (model, task, arm), cell in cells.items():
        if any(r.ok and r.evals() for r in cell.runs):
            curves.setdefault((model, task), {})[arm] = cell.runs
    for mt in _sorted(curves):
        specs.append(
            Figure(
                "conv_curves",
                path("curves", mt),
                f"Converged: dev score per epoch, {task_name(mt[1])}, {mt[0]} (line: mean over "
                "seeds at the selected setting, band: min-max over seeds)",
                curves[mt],
                _draw_curves,
            )
        )
    cal: dict = {}
    for r in conv:
        if r.stage == "calibration" and r.ok and r.evals():
            cal.setdefault(_mt(r), []).append(r)
    for mt in _sorted(cal):
        rr = sorted(cal[mt], key=lambda r: (arm_key(arm_of(r)), r.name))
        specs.append(
            Figure(
                "conv_calibration",
                path("calibration", mt),
                f"Calibration: dev score per epoch (one seed), {task_name(mt[1])}, {mt[0]}",
                rr,
                _draw_calibration,
            )
        )
    for (model, task, arm), cell in sorted(
        cells.items(), key=lambda kv: (kv[0][0], task_rank(kv[0][1]), kv[0][1], arm_key(kv[0][2]))
    ):
        rr = [r for r in cell.runs if r.ok and r.rank_pattern]
        if arm != "adalora" or not rr or not rank_grid([r.rank_pattern for r in rr])[0]:
            continue
        specs.append(
            Figure(
                "rank",
                path("rank", (model, task)),
                f"Converged: final rank per layer and matrix, AdaLoRA 3→2, {task_name(task)}, "
                f"{model} (mean over {len(rr)} seed(s))",
                rr,
            )
        )
    specs.sort(key=lambda s: ["conv_curves", "conv_calibration", "rank"].index(s.kind))
    budget = []
    for mt in _sorted({k[:2] for k in cells}):
        pts = budget_points(cells, mt)
        arms_with_two_budgets = [k for k, v in pts.items() if k != "Full FT" and len(v) >= 2]
        if not arms_with_two_budgets:
            continue  # one budget only: the main table says it all
        budget.append(
            Figure(
                "conv_budget",
                path("budget", mt),
                f"Score against budget, {task_name(mt[1])}, {mt[0]}: dev score x100 against "
                "final adapter parameters (log scale), mean and 95% t interval over the report "
                "seeds per arm and budget r; dashed: full fine-tuning",
                pts,
                _draw_budget,
            )
        )
    specs = budget + specs
    knobs = knob_stats(conv, seed_cells(conv, selections(conv), reading="v1"))  # v1's ablations
    for mt in _sorted(knobs):
        if any(st.n for pts in knobs[mt].values() for _, st in pts):
            specs.append(
                Figure(
                    "conv_ablation",
                    path("ablation", mt),
                    f"Converged: AdaLoRA dev score vs each schedule knob, {task_name(mt[1])}, "
                    f"{mt[0]} (mean over seeds, error bars: std)",
                    knobs[mt],
                    _draw_knobs,
                )
            )
    return specs


def converged_figures_section(specs: Sequence[Figure], out_path: Path) -> list:
    lines = ["## Converged: figures", ""]
    if not specs:
        return lines + [
            "Not run yet: no converged runs (dev score per epoch per method, calibration "
            "curves, AdaLoRA's final ranks and the schedule-ablation figure come with them)."
        ]
    return lines + figure_links(specs, Path(out_path))
