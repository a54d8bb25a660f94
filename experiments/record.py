"""The result record of a run (schema in experiments/results.py), built from what the run did."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

from experiments import provenance
from experiments.methods import ADAPTER_METHODS, init_total_rank, variant_tag
from experiments.results import SCHEMA


@dataclass
class RunOutcome:
    """What training produced, beside the hyperparameters."""

    evals: list[dict]  # EvalRecorder.rows
    diverged: bool  # the training loss became nan / inf
    train_log: list[dict]
    ranks: dict | None  # final rank per adapted matrix (None: no adapters)
    budget_curve: list | None  # [[step, b(t)], ...] (None: no allocation)
    params: dict  # {"trainable", "final_adapter", "total"}
    wall_time_s: float


def eval_metrics(evals: list[dict], main: str, splits: list[str]) -> dict:
    """The ``metrics`` entry: every evaluation, each split's last one, and the best and final
    main metric on the primary (first) split. Tables use the best."""
    primary = splits[0]
    main_rows = [e for e in evals if e["split"] == primary and main in e]
    # the best among finite scores: an undefined one (Pearson of constant predictions is nan)
    # must not win max() by comparing false with everything
    scored = [e for e in main_rows if isinstance(e[main], int | float) and math.isfinite(e[main])]
    best = max(scored, key=lambda e: e[main]) if scored else {}
    final = main_rows[-1] if main_rows else {}

    def strip(e):
        return {k: v for k, v in e.items() if k not in ("step", "epoch", "split")}

    last = {e["split"]: e for e in evals}
    return {
        "main": main,
        "table_uses": "best",
        "primary_split": primary,
        "evals": evals,
        "final": {s: strip(last[s]) for s in splits if s in last},
        "best": strip(best),
        "best_step": best.get("step"),
        "main_final": final.get(main),
        "main_best": best.get(main),
    }


def budget_summary(cfg, ranks: dict | None, curve: list | None) -> dict | None:
    """The ``budget`` entry (None for the methods without adapters)."""
    if cfg.method not in ADAPTER_METHODS:
        return None
    return {
        "n_modules": cfg.n_modules,
        "init_total_rank": init_total_rank(cfg),
        "final_total_rank": sum(ranks.values()) if ranks else None,
        "target_total_rank": cfg.budget,
        "avg_final_rank": round(cfg.budget / cfg.n_modules, 4),
        "curve": curve,
    }


def status(outcome: RunOutcome, metrics: dict) -> str:
    """'diverged' when the training loss became nan / inf; 'constant' when the loss stayed
    finite but the final main metric is undefined (nan): Pearson / Spearman of a model that
    predicts one value for every example, the collapse a too-large step can cause on STS-B."""
    if outcome.diverged:
        return "diverged"
    final = metrics["main_final"]
    return "ok" if final is None or math.isfinite(final) else "constant"


def build_record(
    task, cfg, data, run_name: str, model_type, sweep, outcome: RunOutcome, argv
) -> dict:
    """The result record of one run: ``task`` a train.Task, ``cfg`` its resolved config
    (experiments/config.py), ``data`` the train.Data it trained and evaluated on (the first
    evaluation split is the primary one), ``argv`` the command line as run."""
    metrics = eval_metrics(outcome.evals, task.main_metric, list(data.evals))
    return {
        "schema": SCHEMA,
        "run_name": run_name,
        "kind": task.kind,
        "task": task.name,
        "method": cfg.method,
        "variant": variant_tag(cfg),
        "model": cfg.model,
        "model_type": model_type,
        "seed": cfg.seed,
        "preset": cfg.preset,
        "n_train": data.n_train,
        "n_eval": data.n_eval,
        "hyperparameters": {
            **{k: v for k, v in cfg.hyperparameters().items() if k != "model"},
            **({"sweep": sweep} if sweep else {}),
        },
        "budget": budget_summary(cfg, outcome.ranks, outcome.budget_curve),
        "params": outcome.params,
        "rank_pattern": outcome.ranks,
        "metrics": metrics,
        "train_log": outcome.train_log,
        "status": status(outcome, metrics),
        "wall_time_s": round(outcome.wall_time_s, 2),
        "versions": provenance.versions(),
        "hardware": provenance.hardware(),
        "command": provenance.command(argv),
        "git_commit": provenance.git_commit(),  # None outside a git checkout
        "git_dirty": provenance.git_dirty(),  # tracked files changed since that commit
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
