"""Aggregation over runs: grouping (pandas groupby), mean ± sample std over seeds (``Stats``),
the best learning rate of a cell and the learning rate LoRA and AdaLoRA share.

Means are exact (``statistics.fmean``: fsum / n) and stds are ``statistics.stdev``, so a cell
does not change with the order its runs were read in.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd

from scripts.report.records import Run

Key = str | Callable[[Run], object]  # a Run attribute name, or a function of a run


@dataclass
class Stats:
    """One table cell: the scores of its "ok" runs and a count of every other run."""

    values: list = field(default_factory=list)  # scores x100 of the "ok" runs
    other: dict = field(default_factory=Counter)  # status (or "no score") -> count
    lr: float | None = None
    lr_known: bool = False  # lr is the cell's chosen LR
    other_lrs: dict = field(default_factory=Counter)  # non-ok runs at LRs not chosen

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) >= 2 else None


def stats_of(runs: Sequence[Run], key: str | None = None) -> Stats:
    """Scores (metric ``key``, default the table score) of the "ok" runs; other statuses, and
    "ok" runs without that score ("no score"), are counted."""
    st = Stats()
    for r in runs:
        v = r.metric(key) if r.ok else None
        if v is not None:
            st.values.append(v)
        else:
            st.other[r.status if not r.ok else "no score"] += 1
    return st


def group(runs: Sequence[Run], *keys: Key) -> dict:
    """{key: [runs]} in first-seen order, runs in their order; a key is a tuple for several
    ``keys``, made of the runs' own values (None included: a key of its own)."""
    values = [tuple(getattr(r, k) if isinstance(k, str) else k(r) for k in keys) for r in runs]
    if not values:
        return {}
    frame = pd.DataFrame(values, dtype=object)
    out = {}
    for rows in frame.groupby(list(frame.columns), sort=False, dropna=False).indices.values():
        key = values[rows[0]]
        out[key if len(keys) > 1 else key[0]] = [runs[i] for i in rows]
    return out


def _fmean(scores: pd.Series) -> float:
    scores = scores.dropna()
    return statistics.fmean(scores) if len(scores) else math.nan


def per_lr(runs: Sequence[Run], key: str | None = None) -> pd.DataFrame:
    """One row per LR of ``runs`` (index ``lr``, NaN: unknown): ``runs`` (how many), ``n`` (how
    many "ok" runs have a score) and ``mean`` (of those scores)."""
    frame = pd.DataFrame(
        {"lr": [r.lr for r in runs], "score": [r.metric(key) if r.ok else None for r in runs]},
        dtype=float,
    )
    return frame.groupby("lr", sort=False, dropna=False)["score"].agg(
        runs="size", n="count", mean=_fmean
    )


def _lr_value(lr: float) -> float | None:
    return None if math.isnan(lr) else float(lr)


def best_lr_stats(
    runs: Sequence[Run], key: str | None = None, select_key: str | None = None
) -> Stats:
    """Stats at the LR with the highest mean (ties: the smaller LR, unknown last), among the
    LRs with the most runs: a sweep point with fewer seeds does not win on them. ``select_key``
    picks the metric that chooses the LR (default: the reported one). Without any scored LR,
    every run counts in the cell."""
    if not runs:
        return Stats()
    table = per_lr(runs, select_key if select_key is not None else key)
    table = table[(table["runs"] == table["runs"].max()) & (table["n"] > 0)]
    if table.empty:
        return stats_of(runs, key)
    best = table.sort_values(["mean", "lr"], ascending=[False, True], na_position="last")
    lr = _lr_value(best.index[0])
    at = group(runs, "lr")
    st = stats_of(at[lr], key)
    st.lr, st.lr_known = lr, True
    for other, rr in at.items():
        if other != lr:
            st.other_lrs.update(stats_of(rr, key).other)
    return st


def lr_stats(runs: Sequence[Run], lr: float | None, key: str | None = None) -> Stats:
    """Stats of the runs at ``lr`` (none when ``lr`` is None)."""
    at = [
        r
        for r in runs
        if r.lr is not None and lr is not None and math.isclose(r.lr, lr, rel_tol=1e-9)
    ]
    st = stats_of(at, key)
    st.lr, st.lr_known = lr, lr is not None
    return st


def shared_lr(lora: Sequence[Run], adalora: Sequence[Run]) -> float | None:
    """The LR at which LoRA and AdaLoRA both have "ok" runs that maximises the mean of their two
    means (ties: the smaller LR), among the LRs where both have the most runs (fewer seeds do
    not win). None when they share no such LR."""
    if not lora or not adalora:
        return None
    both = per_lr(lora).add_suffix("_lora").join(per_lr(adalora).add_suffix("_ada"), how="inner")
    both = both[both.index.notna()]
    runs = both[["runs_lora", "runs_ada"]].min(axis=1)
    both = both[(runs == runs.max()) & (both["n_lora"] > 0) & (both["n_ada"] > 0)]
    if both.empty:
        return None
    both = both.assign(avg=(both["mean_lora"] + both["mean_ada"]) / 2)
    return _lr_value(both.sort_values(["avg", "lr"], ascending=[False, True]).index[0])
