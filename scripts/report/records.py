"""One typed record per run, parsed once: ``Run``.

A run comes from an ``adalora.result/1`` dict (schema in experiments/results.py): a result file
(``load_runs``, which reads only valid records: scripts/report/evidence.py) or a W&B run converted
by ``wandb_import``. Parsing tolerates the older files (no ``train_log``, no ``primary_split``,
``metrics.final`` keyed by split) so that every committed file stays readable; everything else in
the report reads ``Run`` fields, never the raw dict.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from experiments.methods import METHODS
from experiments.validation.base import BadInput
from scripts import paper_numbers as P
from scripts.report.evidence import read_records

# The paper's method order (Table 1's rows, its HAdapter and PAdapter included), then the methods
# only this suite runs, in the registry's order (experiments/methods.py METHODS).
METHOD_ORDER = tuple(dict.fromkeys([p["method"] for p in P.TABLE1] + list(METHODS)))
# Sweep keys that the main tables can absorb because grouping already separates them
# (lr: grouped by LR; score/schedule: carried in ``variant``; target_r/lora_r/budget: the level).
MAIN_SWEEP_KEYS = frozenset({"lr", "score", "schedule", "target_r", "lora_r", "budget"})
NO_BUDGET = "-"  # the budget level of runs without one (full FT, BitFit)
# The converged protocol: result files under a folder named "converged" (results/evidence/
# converged/<stage>/...); every other file belongs to the short-run grid.
CONVERGED = "converged"
SHORT = "short"
STAGES = ("calibration", "sweep", "seeds", "ablations")


def _level(budget: Any) -> int | str:
    """Budget level: budget.avg_final_rank rounded to an int; "-" for runs without a budget."""
    if not isinstance(budget, dict) or budget.get("avg_final_rank") is None:
        return NO_BUDGET
    return int(math.floor(float(budget["avg_final_rank"]) + 0.5))


def _float(v: Any) -> float | None:
    try:
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def _score(metrics: dict, key: str | None) -> float | None:
    """The table score x100: main_best / main_final per metrics.table_uses, or metric ``key``
    from metrics.best / metrics.final (e.g. "rougeL"). None when absent or not finite."""
    uses = metrics.get("table_uses") or "best"
    if key is None:
        v = metrics.get(f"main_{uses}")
    else:
        d = metrics.get(uses) or {}
        split = metrics.get("primary_split")
        if key not in d and isinstance(d.get(split), dict):
            d = d[split]  # metrics.final keyed by split
        v = d.get(key)
    v = _float(v)
    return v * 100.0 if v is not None and math.isfinite(v) else None


def _tags(variant: str) -> dict:
    """ "score=magnitude+gamma=0" -> {"score": "magnitude", "gamma": "0"}."""
    out = {}
    for tag in variant.split("+"):
        if tag:
            k, _, val = tag.partition("=")
            out[k] = val
    return out


def _status(rec: dict) -> str:
    """The record's status; a 'diverged' file whose training loss stayed finite throughout is
    read as 'constant' (the runner's status for a nan final metric from constant predictions,
    which files written before that status existed call 'diverged')."""
    status = str(rec.get("status") or "unknown")
    log = rec.get("train_log") or []
    losses = [e.get("loss") for e in log if isinstance(e, dict) and e.get("loss") is not None]
    if status == "diverged" and losses and all(math.isfinite(float(x)) for x in losses):
        final = (rec.get("metrics") or {}).get("main_final")
        if final is None or not math.isfinite(float(final)):
            return "constant"
    return status


@dataclass(frozen=True, eq=False)
class Run:
    """What the tables and figures read from one run (compared and hashed by identity)."""

    name: str
    path: str
    kind: str | None
    task: str | None
    method: str | None
    variant: str  # "" for the default method, else "+"-joined ablation tags
    model: str | None
    seed: Any
    status: str  # "ok", "diverged", "constant", ... ("unknown" when absent)
    level: int | str  # avg final rank rounded, or NO_BUDGET
    lr: float | None
    score: float | None  # the table score x100 (None: absent or not finite)
    hp: dict = field(default_factory=dict, repr=False)  # every hyperparameter (sweep included)
    sweep: dict = field(default_factory=dict)  # hyperparameters.sweep
    metrics: dict = field(default_factory=dict, repr=False)
    main_metric: str = "None"  # metrics.main, as text
    table_uses: str = "None"  # metrics.table_uses, as text
    final_adapter: int | None = None  # params.final_adapter
    total_params: int | None = None  # params.total
    rank_pattern: dict | None = field(default=None, repr=False)
    budget_curve: list | None = field(default=None, repr=False)  # [[step, b(t)], ...]
    train_log: list | None = field(default=None, repr=False)  # [{"step", "loss", ...}, ...]
    protocol: str = SHORT  # CONVERGED for a file under a "converged" folder (load_runs)
    stage: str = ""  # the converged stage: the folder below "converged" ("" when none)
    wall_time_s: float | None = None  # the run's wall time (one process, one core)
    git_commit: str | None = None  # the commit that ran it (None: not recorded)

    @classmethod
    def from_record(cls, rec: dict) -> Run:
        hp = rec.get("hyperparameters") or {}
        sweep = hp.get("sweep")
        budget = rec.get("budget")
        params = rec.get("params") or {}
        metrics = rec.get("metrics") or {}
        return cls(
            name=str(rec.get("run_name") or ""),
            path=str(rec.get("_path") or ""),
            kind=rec.get("kind"),
            task=rec.get("task"),
            method=rec.get("method"),
            variant=rec.get("variant") or "",
            model=rec.get("model"),
            seed=rec.get("seed"),
            status=_status(rec),
            level=_level(budget),
            lr=_float(hp.get("lr")),
            score=_score(metrics, None),
            hp=hp,
            sweep=sweep if isinstance(sweep, dict) else {},
            metrics=metrics,
            main_metric=str(metrics.get("main")),
            table_uses=str(metrics.get("table_uses")),
            final_adapter=_int(params.get("final_adapter")),
            total_params=_int(params.get("total")),
            rank_pattern=rec.get("rank_pattern") or None,
            budget_curve=(budget.get("curve") or None) if isinstance(budget, dict) else None,
            train_log=rec.get("train_log") or None,
            wall_time_s=_float(rec.get("wall_time_s")),
            git_commit=rec.get("git_commit") or None,
        )

    def metric(self, key: str | None = None) -> float | None:
        """Metric ``key`` x100 (e.g. "rougeL"); the table score when ``key`` is None."""
        return self.score if key is None else _score(self.metrics, key)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def converged(self) -> bool:
        return self.protocol == CONVERGED

    def evals(self) -> list:
        """[(step, epoch, main metric x100)] of the primary split's evaluations (metrics.evals),
        in step order; rows without a finite main metric are left out, and so is an evaluation
        a few steps before the final one (under a tenth of the usual interval: runners before
        the eval-interval fix added the final evaluation just after the last scheduled one, as
        at steps 6312 and 6315 of a 3-epoch SST-2 run); the final model stands for both, so
        "last minus second-to-last" compares evaluations an interval apart."""
        main = self.metrics.get("main")
        rows = [e for e in self.metrics.get("evals") or [] if isinstance(e, dict)]
        split = self.metrics.get("primary_split") or next(
            (e.get("split") for e in rows if e.get("split") is not None), None
        )
        out = []
        for e in rows:
            v = _float(e.get(main))
            if e.get("split", split) != split or v is None or not math.isfinite(v):
                continue
            out.append((_int(e.get("step")), _float(e.get("epoch")), v * 100.0))
        out.sort(key=lambda t: (t[0] is None, t[0] or 0))
        steps = [t[0] for t in out]
        if len(out) >= 3 and None not in steps:
            gaps = sorted(b - a for a, b in zip(steps, steps[1:]))
            if steps[-1] - steps[-2] < gaps[len(gaps) // 2] / 10:
                del out[-2]
        return out

    @property
    def final_eval(self) -> float | None:
        """The main metric x100 at the last evaluation (metrics.main_final when no evals are
        recorded); None when absent or not finite."""
        ev = self.evals()
        if ev:
            return ev[-1][2]
        v = _float(self.metrics.get("main_final"))
        return v * 100.0 if v is not None and math.isfinite(v) else None

    @property
    def tags(self) -> dict:
        return _tags(self.variant)

    @property
    def schedule(self) -> str:
        return self.tags.get("schedule") or self.hp.get("schedule") or "cubic"

    def is_main(self, extra_keys: Iterable[str] = ()) -> bool:
        """True for a plain run: its sweep only varies keys that grouping separates."""
        return set(self.sweep) <= (MAIN_SWEEP_KEYS | set(extra_keys))

    @property
    def other_sweep(self) -> dict:
        """The swept hyperparameters the main tables do not separate."""
        return {k: v for k, v in self.sweep.items() if k not in MAIN_SWEEP_KEYS}


def protocol_of(path: str | os.PathLike, root: str | os.PathLike) -> tuple:
    """(protocol, stage) of the result file ``path`` read from ``root``: (CONVERGED, stage) when
    a folder named "converged" lies between ``root`` and the file, or ``root`` is that folder
    (``--results results/evidence/converged``) or one of its stage folders; the stage is the
    folder below "converged" ("calibration", "sweep", "seeds", "ablations"; "" for a file in
    converged/ itself). Everything else is (SHORT, "")."""
    path, root = Path(path).resolve(), Path(root).resolve()
    if root.parent.name == CONVERGED and root.name in STAGES:
        return CONVERGED, root.name
    try:
        scope = [root.name, *path.parent.relative_to(root).parts]
    except ValueError:
        scope = list(path.parent.parts)
    if CONVERGED not in scope:
        return SHORT, ""
    i = len(scope) - 1 - scope[::-1].index(CONVERGED)
    return CONVERGED, (scope[i + 1] if i + 1 < len(scope) else "")


def load_runs(root: str | os.PathLike, skip: Callable[[BadInput], None] | None = None) -> list[Run]:
    """Every result record under the folder ``root`` (evidence.record_files), as runs, each with
    its protocol and stage (``protocol_of``). An invalid record, or a converged one that trained
    in another precision than its command asked (``check_converged``), raises BadInput naming
    the file and the field, or, with ``skip``, is passed to ``skip`` and left out; a missing
    ``root`` raises NotADirectoryError."""
    out = []
    for rec in read_records(root, skip):
        run = Run.from_record(rec)
        protocol, stage = protocol_of(run.path, root)
        if protocol != SHORT:
            try:
                check_converged(run)
            except BadInput as e:
                if skip is None:
                    raise
                skip(e)
                continue
        out.append(replace(run, protocol=protocol, stage=stage) if protocol != SHORT else run)
    return out


def check_converged(run: Run) -> None:
    """A converged run is a run of the protocol's command: one that trained in another precision
    (a preset's bf16 on a CPU without native bf16 trains in fp32; files record both) would sit
    in a cell beside bf16 seeds as if it were one of them. Raises BadInput."""
    asked, used = run.hp.get("precision"), run.hp.get("precision_used")
    if asked is not None and used is not None and used != asked:
        raise BadInput(
            run.path,
            None,
            f"hyperparameters.precision_used is {used!r} where its command asked {asked!r}, "
            "so it is not a run of the converged protocol",
            "move it out of the converged folder and rerun its command where that precision "
            "is native (a CPU with avx512_bf16 / AMX, or a GPU)",
        )


# ---------------------------------------------------------------- sort keys


def level_key(level: int | str) -> tuple:
    """No budget first, then the highest budget first."""
    return (0, 0) if level == NO_BUDGET else (1, -level)


def lr_key(lr: float | None) -> tuple:
    """Ascending LR, unknown last."""
    return (lr is None, lr or 0.0)


def method_key(method: str | None) -> tuple:
    """The paper's method order; unknown methods last, by name."""
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    return (rank, str(method))


def task_rank(task: str | None) -> int:
    """GLUE tasks in the paper's column order, then summarisation, then unknown tasks."""
    order = P.GLUE_TASKS + P.SUMMARIZATION_TASKS
    return order.index(task) if task in order else len(order)


def sort_tasks(tasks: Iterable[str | None], order: Sequence[str]) -> list:
    """The distinct tasks (as text): those of ``order`` in its order, then the rest by name."""
    return sorted(
        {str(t) for t in tasks}, key=lambda t: (order.index(t) if t in order else len(order), t)
    )


def value_key(v: Any) -> tuple:
    """Numbers ascending, then booleans, then everything else as text."""
    if isinstance(v, bool):
        return (1, str(v))
    if isinstance(v, (int, float)):
        return (0, float(v), "")
    return (2, str(v))
