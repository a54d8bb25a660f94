"""Result files: one JSON per run, written atomically, never overwritten.

Schema ``adalora.result/1`` (every runner writes exactly these top-level keys):

    schema            "adalora.result/1"
    run_name          unique name; the file is <output_dir>/<run_name>.json
    kind              "glue" | "summarization"
    task              glue task ("rte", "cola", ...) or dataset ("xsum", "cnn_dailymail")
    method            a name of experiments/methods.py METHODS ("adalora", "lora", "full", ...)
    variant           "" for the default method, else "+"-joined ablation tags, e.g.
                      "score=sensitivity", "score=magnitude", "gamma=0", "schedule=linear"
    model             model name or path as given; model_type ("bert", "deberta-v2", ...)
    seed, preset      int, "quick" | "paper"
    n_train, n_eval   examples read: int, and {split: int}
    hyperparameters   every hyperparameter of the run (flat dict: lr, epochs, batch_size,
                      max_length, init_r, target_r, lora_r, lora_alpha, tinit, tfinal, delta_t,
                      beta1, beta2, orth_reg_weight, target_modules, warmup, weight_decay,
                      cls_dropout, total_step, score, schedule, ...)
    budget            {"n_modules", "init_total_rank", "target_total_rank" (b(T)),
                       "final_total_rank" (ranks kept at the end; = b(T) for AdaLoRA),
                       "avg_final_rank" (b(T) / n_modules: the budget level tables group by),
                       "curve": [[step, budget], ...] (AdaLoRA / prune_lora, else null)}
                      (null for full / bitfit)
    params            {"trainable": int (at start), "final_adapter": int (adapter parameters
                       after resizing to the final rank pattern; LoRA: unchanged),
                       "total": int}
    rank_pattern      {module name: final rank (int)} or null
    metrics           {"main": name of the metric tables use (e.g. "mcc"),
                       "table_uses": "best" | "final",
                       "primary_split": the split "main" is read on (MNLI: validation_matched),
                       "evals": [{"step": int, "epoch": float, "split": str, "loss": float,
                                  <metric>: float, ..., "runtime", "samples_per_second",
                                  "steps_per_second"}, ...]   (one row per evaluation and split),
                       "final": {split: {<metric>: float, "loss", ...}}  (each split's last
                                  evaluation, without step / epoch / split),
                       "best": {<metric>: float, "loss", ...}  (the primary split's evaluation
                                  with the highest main metric, the first one on ties),
                       "best_step": int, "main_final": float, "main_best": float}
                      (main_* and best_step null when nothing was evaluated)
    train_log         [{"step", "loss", "grad_norm", "learning_rate"}, ...] at every logging
                      step (files written before it existed lack it)
    status            "ok" | "diverged" (the training loss became nan / inf, which stops the
                      run) | "constant" (the loss stayed finite but the final main metric is
                      nan: constant predictions; files before this status say "diverged");
                      the run is kept, not dropped
    wall_time_s       float
    versions          {"python", "torch", "transformers", "adalora", ...}
    hardware          {"device", "cpu", "cpu_capability" (torch's SIMD level, e.g. "AVX2"),
                       "cpu_native_bf16", "n_threads", "n_cpus", "gpu": name or null,
                       "world_size"} (files before cpu_capability existed lack the two)
    command           the exact command line (shlex-joined argv)
    git_commit        HEAD of the checkout that ran it (null outside git; absent in files
                      written before this field existed)
    git_dirty         true when tracked files differed from git_commit (null outside git;
                      absent in files written before this field existed)
    created           ISO-8601 UTC time the file was written
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

SCHEMA = "adalora.result/1"
REQUIRED_KEYS = (
    "schema",
    "run_name",
    "kind",
    "task",
    "method",
    "variant",
    "model",
    "model_type",
    "seed",
    "preset",
    "n_train",
    "n_eval",
    "hyperparameters",
    "budget",
    "params",
    "rank_pattern",
    "metrics",
    "status",
    "wall_time_s",
    "versions",
    "hardware",
    "command",
    "created",
)


def result_path(output_dir: str | os.PathLike, run_name: str) -> Path:
    return Path(output_dir) / f"{run_name}.json"


def write_text_atomic(path: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    """Write ``text`` to ``path`` via a temp file, so a reader never sees half a file.

    Refuses to replace an existing file unless ``overwrite`` (results are never lost)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600: give the file the usual mode
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if overwrite:
            os.replace(tmp, path)
        else:
            # os.link fails if the target exists: an atomic "create only if absent".
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(
                    f"{path} already exists; results are never overwritten. "
                    "Choose another --run-name or --output-dir."
                ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_json_atomic(
    path: str | os.PathLike, data: Any, overwrite: bool = False, sort_keys: bool = True
) -> Path:
    """JSON (indented; keys sorted unless ``sort_keys=False``) through ``write_text_atomic``."""
    text = json.dumps(data, indent=2, sort_keys=sort_keys, default=str) + "\n"
    return write_text_atomic(path, text, overwrite)


def write_result(record: dict, output_dir: str | os.PathLike) -> Path:
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(f"result record lacks keys {missing}")
    return write_json_atomic(result_path(output_dir, record["run_name"]), record)


def load_results(root: str | os.PathLike) -> list[dict]:
    """Every result JSON under ``root`` (recursively), sorted by path for determinism."""
    out = []
    for p in sorted(Path(root).rglob("*.json")):
        try:
            rec = json.loads(p.read_text())
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("schema") == SCHEMA:
            rec["_path"] = str(p)
            out.append(rec)
    return out
