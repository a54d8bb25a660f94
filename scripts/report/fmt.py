"""Text of the report: table cells (mean ± std (n, lr, statuses)), differences, averages, labels
and markdown tables."""

from __future__ import annotations

import math
from typing import Any

from experiments.methods import METHODS
from experiments.tasks import TASKS as GLUE_TASKS
from scripts import paper_numbers as P
from scripts.report.records import NO_BUDGET
from scripts.report.stats import Stats


def level_text(level: int | str) -> str:
    return NO_BUDGET if level == NO_BUDGET else f"r={level}"


def lr_text(lr: float | None) -> str:
    return "?" if lr is None else f"{lr:g}"


def task_name(task: str | None) -> str:
    """GLUE's label of a GLUE task (experiments/tasks.py TASKS), the paper's of a
    summarisation data set; else the name itself."""
    if task in GLUE_TASKS:
        return GLUE_TASKS[task].label
    return P.SUMMARIZATION_TASK_NAMES.get(task) or task


def method_name(method: str | None) -> str:
    """The method's label in the registry (experiments/methods.py METHODS); else its name."""
    return METHODS[method].label if method in METHODS else str(method)


def fmt_sweep(point: dict) -> str:
    """{"tinit": 200, "delta_t": 1} -> "delta_t=1, tinit=200"."""
    return ", ".join(f"{k}={point[k]}" for k in sorted(point)) or "-"


def _status_notes(counts: dict, suffix: str = "") -> list:
    return [f"{counts[s]} {s}{suffix}" for s in sorted(counts)]


def fmt_cell(st: Stats, show_lr: bool = True, show_n: bool = True) -> str:
    """ "mean ± std (n=.., lr=.., k diverged, ...)"; "-" without scores; no std when n = 1."""
    notes = []
    if st.n and show_n:
        notes.append(f"n={st.n}")
    if st.n and show_lr and st.lr_known:
        notes.append(f"lr={lr_text(st.lr)}")
    notes += _status_notes(st.other)
    notes += _status_notes(st.other_lrs, " at other LRs")
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
    """Mean over the tasks with a value, "(k/total tasks)" when some have none."""
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
