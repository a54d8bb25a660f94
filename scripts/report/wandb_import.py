"""Runs pulled from a W&B project (``make_tables.py --wandb ENTITY/PROJECT``), converted to
``adalora.result/1`` records, checked like the result files (evidence.check_record, without the
provenance keys W&B does not hold) and then made ``Run``s."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from experiments.methods import ADAPTER_METHODS
from experiments.results import SCHEMA
from experiments.validation.base import BadInput
from scripts import paper_numbers as P
from scripts.report.evidence import check_record
from scripts.report.records import Run

WANDB_FIX = (
    "fix the run's config or summary in W&B, or pass --skip-invalid to leave it out with a warning"
)

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


def _budget(method, hp: dict) -> dict | None:
    b, n_mod = hp.get("budget"), hp.get("n_modules")
    if isinstance(b, dict):
        return b
    if method in ADAPTER_METHODS and b is not None and n_mod:
        return {
            "n_modules": n_mod,
            "final_total_rank": b,
            "avg_final_rank": round(float(b) / float(n_mod), 4),
            "curve": None,
        }
    return None


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
        "budget": _budget(method, hp),
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


def fetch_wandb(path: str, skip: Callable[[BadInput], None] | None = None) -> list[Run]:
    """Every run of W&B project ``path`` (ENTITY/PROJECT). Raises BadInput (flag --wandb) when
    W&B is offline or unreachable, and for a run whose record is invalid (naming the run and
    the field), unless ``skip`` takes it: then it is passed to ``skip`` and left out."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        raise BadInput(
            "--wandb",
            path,
            f"W&B is offline (WANDB_MODE={mode}); pulling runs needs network access",
            "unset WANDB_MODE or drop --wandb",
        )
    try:
        import wandb

        api = wandb.Api(timeout=30)
        pulled = []
        for run in api.runs(path):
            params = []
            if getattr(run, "sweep", None) is not None:
                params = sorted((run.sweep.config or {}).get("parameters", {}))
            summary = (
                dict(run.summary._json_dict)
                if hasattr(run.summary, "_json_dict")
                else dict(run.summary)
            )
            rec = wandb_to_record(run.name, dict(run.config), summary, run.state, params)
            pulled.append((run.name, rec))
    except Exception as e:  # network, auth, unknown project
        raise BadInput(
            "--wandb",
            path,
            f"could not pull runs from W&B ({type(e).__name__}: {e})",
            "this needs network access and a W&B API key (wandb login)",
        ) from None
    out = []
    for name, rec in pulled:
        try:
            check_record(rec, f"--wandb {path} run {name}", WANDB_FIX, file=False)
        except BadInput as e:
            if skip is None:
                raise
            skip(e)
            continue
        out.append(Run.from_record(rec))
    return out
