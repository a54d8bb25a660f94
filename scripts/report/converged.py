"""The converged protocol (results/evidence/converged/): which arm a run belongs to, the setting
each arm is run at (the selection rule), the 5-seed cells at that setting, the "still rising"
flag, and AdaLoRA's differences with Welch 95% intervals.

Stages (the folder below converged/): ``calibration`` (one seed per method, evaluated every
epoch, to choose the epochs per task), ``sweep`` (seed 1 at every setting of each arm's grid),
``seeds`` (seeds 1-5 at the selected setting), ``ablations`` (AdaLoRA's schedule knobs, 3 seeds).
Every score is the main dev metric x100 at the run's FINAL evaluation (``Run.final_eval``).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from scipy import stats as sps

from scripts.protocol import (
    ARM,
    ARMS,
    FAMILY_ALPHA,
    HEADLINE,
    LEVEL,
    REPORT_SEEDS,
    TASKS,
    V1_SEEDS,
    sweep_lrs,
    sweep_size,
)
from scripts.report.fmt import method_name
from scripts.report.records import Run, value_key
from scripts.report.stats import Stats

ARM_NAMES = {a.id: a.label for a in ARMS}
# Arms without a sweep of their own: the setting of the arm they derive from.
DERIVED = {a.id: a.derived_from for a in ARMS if a.derived_from is not None}
HEADLINE_COMPARISONS = HEADLINE
RISING_RULE = (
    '"still rising": the mean over seeds of the last evaluation minus the mean of the '
    "second-to-last evaluation (same runs) exceeds the seed std of the last evaluation."
)


def _float(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _rank_text(v) -> str | None:
    f = _float(v)
    return None if f is None else f"{f:g}"


def arm_of(r: Run) -> str:
    """The arm a run belongs to (scripts/protocol.py ARMS): AdaLoRA by its ranks ("adalora" for
    3->2, else "adalora_<init>to<target>"); LoRA with ``hyperparameters.rank_pattern_from``
    ("lora_rp" at target rank 2, else "lora_rp<target>"); plain LoRA "lora_r<r>"; SVD-LoRA
    "svd_lora" at rank 2, else "svd_lora_r<r>"; otherwise the method. A run with a ``variant``
    (an ablation tag) is an arm of its own, "<arm>:<variant>", never mixed in."""
    base = str(r.method)
    target = _rank_text(r.hp.get("target_r"))
    if r.method == "lora" and r.hp.get("rank_pattern_from"):  # its variant tag says the same
        return "lora_rp" if target in (None, "2") else f"lora_rp{target}"
    if r.method == "lora":
        rank = _rank_text(r.hp.get("lora_r"))
        base = f"lora_r{rank}" if rank is not None else "lora"
    elif r.method == "adalora":
        init = _rank_text(r.hp.get("init_r"))
        if (init, target) not in (("3", "2"), (None, None)):
            base = f"adalora_{init}to{target}"
    elif r.method == "svd_lora" and target not in (None, "2"):
        base = f"svd_lora_r{target}"
    return f"{base}:{r.variant}" if r.variant else base


def arm_name(arm: str) -> str:
    base, _, variant = arm.partition(":")
    if base in ARM_NAMES:
        name = ARM_NAMES[base]
    elif base.startswith("lora_r"):
        name = "LoRA r=" + base.removeprefix("lora_r")
    else:
        name = method_name(base)
    return f"{name} {variant}" if variant else name


def arm_key(arm: str) -> tuple:
    base, _, variant = arm.partition(":")
    order = [a.id for a in ARMS]
    return (order.index(base) if base in order else len(order), base, variant)


def lora_scale(r: Run) -> float | None:
    """alpha / r of a LoRA run (None when either is unknown)."""
    alpha, rank = _float(r.hp.get("lora_alpha")), _float(r.hp.get("lora_r"))
    return alpha / rank if alpha is not None and rank else None


# ---------------------------------------------------------------- settings and selection


@dataclass(frozen=True)
class Setting:
    """Where an arm runs: learning rate, lora_alpha (LoRA arms only) and any other swept key."""

    lr: float | None
    alpha: float | None = None
    extra: tuple = ()  # ((key, value), ...) of other swept hyperparameters

    def sort_key(self) -> tuple:
        return (
            self.lr is None,
            self.lr or 0.0,
            self.alpha is None,
            self.alpha or 0.0,
            [(k, value_key(v)) for k, v in self.extra],
        )

    def text(self) -> str:
        parts = [f"lr={'?' if self.lr is None else f'{self.lr:g}'}"]
        parts += [f"alpha={self.alpha:g}"] if self.alpha is not None else []
        parts += [f"{k}={v}" for k, v in self.extra]
        return ", ".join(parts)


def setting_of(r: Run) -> Setting:
    """(lr, lora_alpha, other swept keys); alpha only for LoRA or where the sweep varies it."""
    alpha = None
    if r.method == "lora" or "lora_alpha" in r.sweep:
        alpha = _float(r.hp.get("lora_alpha"))
    extra = tuple(sorted((k, v) for k, v in r.sweep.items() if k not in ("lr", "lora_alpha")))
    return Setting(r.lr, alpha, extra)


def cell_stats(runs: Sequence[Run]) -> Stats:
    """Final-evaluation scores of the "ok" runs; other statuses (and "no score") counted."""
    st = Stats()
    for r in runs:
        v = r.final_eval if r.ok else None
        if v is not None:
            st.values.append(v)
        else:
            st.other[r.status if not r.ok else "no score"] += 1
    return st


@dataclass
class SweepPoint:
    setting: Setting
    runs: list
    stats: Stats
    selected: bool = False

    @property
    def score(self) -> float | None:
        return self.stats.mean


def select(points: Sequence[SweepPoint]) -> SweepPoint | None:
    """The selection rule: the highest score (mean final evaluation of the point's "ok" runs;
    one run, seed 1, in the protocol); ties: smaller LR, then smaller alpha."""
    scored = [p for p in points if p.score is not None]
    if not scored:
        return None
    return min(scored, key=lambda p: (-p.score, p.setting.sort_key()))


@dataclass
class Selection:
    setting: Setting
    source: str  # "sweep" or the arm it is derived from
    scale: float | None = None  # LoRA alpha / r (LoRA arms)
    point: SweepPoint | None = None
    landed: tuple | None = None  # (settings landed, settings planned) when the sweep is partial

    def matches(self, r: Run, arm: str) -> bool:
        """Whether run ``r`` of ``arm`` ran at this setting (derived arms: same LR, and the
        same alpha / r for plain LoRA)."""
        if not _close(r.lr, self.setting.lr) or self.setting.lr is None:
            return False
        if self.source == "sweep":
            mine = setting_of(r)
            return _close(mine.alpha, self.setting.alpha) and mine.extra == self.setting.extra
        if (arm in ARM and ARM[arm].pattern_from) or self.scale is None:
            return True
        return _close(lora_scale(r), self.scale)

    @property
    def partial(self) -> str | None:
        """While the grid this selection comes from is partial, e.g. "sweep 1 of 3 settings in";
        else None."""
        return f"sweep {self.landed[0]} of {self.landed[1]} settings in" if self.landed else None

    def text(self) -> str:
        note = f"; {self.partial}, provisional" if self.partial else ""
        if self.source == "sweep":
            return self.setting.text() + f" (sweep{note})"
        scale = f", alpha/r={self.scale:g}" if self.scale is not None else ""
        lr = "?" if self.setting.lr is None else f"{self.setting.lr:g}"
        return f"lr={lr}{scale} (from {arm_name(self.source)}{note})"


def partial_sweep(arm: str, points: Sequence) -> tuple | None:
    """(settings landed, settings planned) while ``arm``'s sweep grid has only partly landed,
    else None (complete, or an arm without a planned grid)."""
    planned = sweep_size(arm)
    return (len(points), planned) if planned and len(points) < planned else None


def _key(r: Run) -> tuple:
    return (str(r.model), str(r.task))


def grid_edge(point: SweepPoint, points: Sequence[SweepPoint], arm: str = "") -> str | None:
    """ "highest LR" / "lowest LR" when ``point``'s LR is an end of its arm's sweep grid (the
    optimum may lie beyond the grid), else None. The grid is the LRs ``arm``'s sweep plans
    (scripts/protocol.py) together with the landed ones, so that a sweep still landing does not
    call its highest LR so far the grid's."""
    lrs = {p.setting.lr for p in points if p.setting.lr is not None} | set(sweep_lrs(arm))
    if len(lrs) < 2 or point.setting.lr is None:
        return None
    if point.setting.lr == max(lrs):
        return "highest LR"
    return "lowest LR" if point.setting.lr == min(lrs) else None


def sweep_points(runs: Sequence[Run]) -> dict:
    """{(model, task, arm): [SweepPoint] by setting} of the sweep stage; the selected point of
    each list has ``selected`` set."""
    acc: dict = {}
    for r in runs:
        if r.converged and r.stage == "sweep":
            acc.setdefault((*_key(r), arm_of(r)), {}).setdefault(setting_of(r), []).append(r)
    out = {}
    for k, by_setting in acc.items():
        pts = [
            SweepPoint(s, rr, cell_stats(rr))
            for s, rr in sorted(by_setting.items(), key=lambda kv: kv[0].sort_key())
        ]
        best = select(pts)
        if best is not None:
            best.selected = True
        out[k] = pts
    return out


def selections(runs: Sequence[Run], points: dict | None = None) -> dict:
    """{(model, task, arm): Selection}: the swept arms' selected points, and the derived arms
    (DERIVED) at LoRA r=2's LR and alpha / r, for every (model, task) with converged runs."""
    points = sweep_points(runs) if points is None else points
    out = {}
    for k, pts in points.items():
        best = next((p for p in pts if p.selected), None)
        if best is not None:
            scale = next((lora_scale(r) for r in best.runs if lora_scale(r) is not None), None)
            out[k] = Selection(best.setting, "sweep", scale, best, partial_sweep(k[2], pts))
    for mt in {_key(r) for r in runs if r.converged}:
        for arm, base in DERIVED.items():  # the rule wins over a sweep of their own
            src = out.get((*mt, base))
            if src is not None:
                out[(*mt, arm)] = Selection(
                    Setting(src.setting.lr), base, src.scale, landed=src.landed
                )
    return out


# ---------------------------------------------------------------- seed cells


@dataclass
class Cell:
    """One (model, task, arm) cell at convergence."""

    runs: list = field(default_factory=list)  # the runs averaged (every status)
    stats: Stats = field(default_factory=Stats)
    selection: Selection | None = None
    other_settings: int = 0  # seeds/ runs of the arm at a setting other than the selection
    seed1_from_sweep: bool = False  # seed 1 is the sweep run at the selected setting
    rise: float | None = None  # mean(last eval) - mean(second-to-last eval), same runs
    last_std: float | None = None  # seed std of the last evaluation of those runs

    @property
    def rising(self) -> bool:
        """The still-rising flag: rise > the seed std of the last evaluation (needs n >= 2)."""
        return self.rise is not None and self.last_std is not None and self.rise > self.last_std


def rise_of(runs: Sequence[Run]) -> tuple:
    """(mean of the last evaluation - mean of the second-to-last, seed std of the last) over the
    "ok" runs with at least two evaluations; None for what they cannot give (std: n < 2)."""
    two = [r.evals() for r in runs if r.ok and len(r.evals()) >= 2]
    if not two:
        return None, None
    last = [e[-1][2] for e in two]
    rise = statistics.fmean(last) - statistics.fmean(e[-2][2] for e in two)
    return rise, (statistics.stdev(last) if len(last) >= 2 else None)


READINGS = ("v2", "v1")  # version 2: REPORT_SEEDS only; version 1: seeds 1-5, sweep run reused


def seed_cell(
    runs: Sequence[Run], model: str, task: str, arm: str, sel: Selection | None, reading="v2"
) -> Cell:
    """The seeds/ runs of (model, task, arm) at the selected setting. ``reading`` "v2" (the
    protocol's): seeds REPORT_SEEDS only, so the run that chose the setting is never averaged;
    "v1" (version 1's, kept as a labelled row): seeds V1_SEEDS, with the sweep's run at that
    setting as seed 1 when seeds/ has no seed-1 run of its own. Without a selection, every
    seeds/ run of the arm at those seeds."""
    wanted = set(REPORT_SEEDS if reading == "v2" else V1_SEEDS)
    mine = [r for r in runs if r.converged and _key(r) == (model, task) and arm_of(r) == arm]
    seeds = [r for r in mine if r.stage == "seeds" and r.seed in wanted]
    cell = Cell(selection=sel)
    if sel is None:
        chosen = seeds
    else:
        chosen = [r for r in seeds if sel.matches(r, arm)]
        cell.other_settings = len(seeds) - len(chosen)
        have = {r.seed for r in chosen}
        if sel.point is not None and reading == "v1":
            extra = [r for r in sel.point.runs if r.seed not in have and r.seed in wanted]
            cell.seed1_from_sweep = any(r.seed == 1 for r in extra)
            chosen += extra
    cell.runs = sorted(chosen, key=lambda r: (value_key(r.seed), r.name))
    cell.stats = cell_stats(cell.runs)
    cell.rise, cell.last_std = rise_of(cell.runs)
    return cell


def seed_cells(runs: Sequence[Run], sels: dict | None = None, reading: str = "v2") -> dict:
    """{(model, task, arm): Cell} for every arm with seeds/ runs or a selection."""
    sels = selections(runs) if sels is None else sels
    keys = {(*_key(r), arm_of(r)) for r in runs if r.converged and r.stage == "seeds"}
    keys |= set(sels)
    return {k: seed_cell(runs, *k, sels.get(k), reading) for k in keys}


# ---------------------------------------------------------------- Welch intervals


@dataclass
class Welch:
    n1: int
    n2: int
    diff: float | None = None
    lo: float | None = None
    hi: float | None = None
    df: float | None = None
    p: float | None = None  # two-sided Welch t test of "no difference"

    @property
    def verdict(self) -> str:
        """ "better" (interval above 0), "worse" (below 0), "level" (contains 0), "-" (n < 2)."""
        if self.lo is None:
            return "-"
        if self.lo > 0:
            return "better"
        if self.hi < 0:
            return "worse"
        return "level"


def welch(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Welch:
    """mean(a) - mean(b) with its Welch t interval (Welch-Satterthwaite df); no interval when
    n < 2 on either side. Both stds 0: the interval is the difference itself."""
    n1, n2 = len(a), len(b)
    w = Welch(n1, n2)
    if n1 < 2 or n2 < 2:
        return w
    w.diff = statistics.fmean(a) - statistics.fmean(b)
    v1, v2 = statistics.variance(a) / n1, statistics.variance(b) / n2
    se = math.sqrt(v1 + v2)
    if se == 0:
        w.lo = w.hi = w.diff
        w.p = 1.0 if w.diff == 0 else 0.0
        return w
    w.df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))
    half = float(sps.t.ppf(0.5 + level / 2, w.df)) * se
    w.lo, w.hi = w.diff - half, w.diff + half
    w.p = float(2 * sps.t.sf(abs(w.diff) / se, w.df))
    return w


def family_size() -> int:
    """k of the family-wise rule: every pre-stated headline comparison on every task its arms
    are planned for (fixed in advance; one not run yet counts as p = 1)."""
    return sum(1 for a, b in HEADLINE for t in TASKS if t in ARM[a].tasks and t in ARM[b].tasks)


def holm(pvalues: dict, k: int | None = None, alpha: float = FAMILY_ALPHA) -> dict:
    """Holm's step-down rule over a family of ``k`` comparisons (default: len(pvalues); the
    missing ones count as p = 1): {key: True when a difference at family-wise level alpha}."""
    k = len(pvalues) if k is None else k
    if k < len(pvalues):
        raise ValueError(f"family of {k} comparisons, {len(pvalues)} p-values")
    out = {key: False for key in pvalues}
    for i, key in enumerate(sorted(pvalues, key=lambda key: pvalues[key])):
        if pvalues[key] > alpha / (k - i):
            break
        out[key] = True
    return out


def rank_check(a: Sequence[float], b: Sequence[float]) -> str:
    """How often a seed of ``a`` beats a seed of ``b`` (ties count half) and the exact two-sided
    Mann-Whitney p: a check that does not assume normal seeds (one failed seed dominates a std).
    Not the verdict rule; "-" with fewer than 2 seeds on a side."""
    if len(a) < 2 or len(b) < 2:
        return "-"
    wins = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    p = float(sps.mannwhitneyu(a, b, alternative="two-sided", method="auto").pvalue)
    return f"{wins:g}/{len(a) * len(b)} pairs higher, p={p:.3f} (n={len(a)} vs {len(b)})"


def interval_text(w: Welch) -> str:
    """ "+d [+lo, +hi]" to 2 decimals; an end within 0.005 of 0 gets one significant digit
    more, so that it never reads +0.00 beside "better" or "worse"."""

    def end(x: float) -> str:
        return f"{x:+.2f}" if abs(x) >= 0.005 or x == 0 else f"{x:+.1g}"

    return f"{w.diff:+.2f} [{end(w.lo)}, {end(w.hi)}]"


def verdict_text(w: Welch) -> str:
    if w.lo is None:
        return f"- (n < 2: n={w.n1} vs {w.n2})"
    df = f", df={w.df:.1f}" if w.df is not None else ""
    return f"{interval_text(w)}{df}: {w.verdict} (n={w.n1} vs {w.n2})"


def counts(runs: Sequence[Run]) -> Counter:
    """Converged runs per stage ("" for a file outside the stage folders)."""
    return Counter(r.stage for r in runs if r.converged)
