"""Which files under a results folder are result records, and reading them strictly.

The rule (``record_files``): every ``*.json`` file below the folder is a result record, except
those inside a folder named ``logs``, ``checkpoints``, ``wandb`` or ``bench`` below it (the
grid's logs, resumable checkpoints with their run.json / trainer_state.json, W&B's local files,
the benchmarks' JSON) and hidden files or folders (``.name``). Nothing else is read (.log,
.jsonl predictions, .md, .png, ...). A record that does not read is an error, never skipped
silently (``read_records``: raised, or handed to ``skip``).

A record (``read_record``) is UTF-8 JSON holding one object with ``schema`` "adalora.result/1",
every key experiments/results.py requires, and the types that schema gives its fields
(``check_record``). Older files lack ``train_log``, ``git_commit``, ``git_dirty`` and
``metrics.primary_split`` / ``best_step`` and key ``metrics.final`` by split: all accepted.
A problem raises ``BadInput(file, field, problem, fix)``, one line naming both.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments.results import REQUIRED_KEYS, SCHEMA
from experiments.validation.base import BadInput

NOT_RECORDS = ("logs", "checkpoints", "wandb", "bench")  # folders below the results folder
FIX = (
    "restore the file (git checkout, or re-run the run that wrote it), or pass --skip-invalid "
    "to leave it out with a warning"
)
NOT_A_RECORD_FIX = (
    "move it out of the results folder (files under logs/, checkpoints/, wandb/, bench/ and "
    "hidden files are not read)"
)


def record_files(root: str | os.PathLike) -> list[Path]:
    """The result records under the folder ``root`` by the rule above, sorted by path."""
    root = Path(root)
    out = []
    for p in root.rglob("*.json"):
        parts = p.relative_to(root).parts
        if p.is_dir() or any(x.startswith(".") for x in parts):
            continue
        if not any(x in NOT_RECORDS for x in parts[:-1]):
            out.append(p)
    return sorted(out)


# ---------------------------------------------------------------- types

STR, INT, NUM, OBJ, LIST = "a string", "an integer", "a number", "an object", "a list"
BOOL = "a boolean"
_IS = {
    BOOL: lambda v: isinstance(v, bool),
    STR: lambda v: isinstance(v, str),
    INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
    NUM: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    OBJ: lambda v: isinstance(v, dict),
    LIST: lambda v: isinstance(v, list),
}
_NAMES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    dict: "an object",
    list: "a list",
}


def _shown(v: Any) -> str:
    """A JSON value as a message shows it: its type, and its text when short."""
    if v is None:
        return "null"
    text = json.dumps(v) if isinstance(v, str | int | float | bool) else ""
    kind = _NAMES.get(type(v), type(v).__name__)
    return f"{kind} ({text})" if text and len(text) <= 40 else kind


class _Check:
    """Type checks of one record; ``where`` is the file (or W&B run) the messages name."""

    def __init__(self, where: str, fix: str):
        self.where, self.fix = where, fix

    def bad(self, field: str, problem: str, fix: str | None = None) -> BadInput:
        return BadInput(self.where, field, problem, self.fix if fix is None else fix)

    def value(self, field: str, v: Any, kind: str, null: bool = False) -> Any:
        """``v`` when it is ``kind`` (or null, when ``null``), else raise."""
        if (v is None and null) or (v is not None and _IS[kind](v)):
            return v
        raise self.bad(field, f"is {_shown(v)}, not {kind}" + (" or null" if null else ""))

    def key(self, d: dict, prefix: str, key: str, kind: str, null=False, need=True) -> Any:
        """d[key] checked as ``kind`` (or null); absent: an error when ``need``, else None."""
        if key not in d:
            if need:
                raise self.bad(prefix + key, f"is missing (every {SCHEMA} record has it)")
            return None
        return self.value(prefix + key, d[key], kind, null)

    def rows(self, d: dict, prefix: str, key: str, spec: dict, null=False, need=True) -> None:
        """d[key]: a list of objects whose keys in ``spec`` ({key: (kind, null, need)}) check."""
        for i, row in enumerate(self.key(d, prefix, key, LIST, null, need) or []):
            field = f"{prefix}{key}[{i}]"
            self.value(field, row, OBJ)
            for k, (kind, nul, req) in spec.items():
                self.key(row, field + ".", k, kind, nul, req)


def _check_metrics(c: _Check, m: dict) -> None:
    main = c.key(m, "metrics.", "main", STR)
    uses = c.key(m, "metrics.", "table_uses", STR)
    if uses not in ("best", "final"):
        raise c.bad("metrics.table_uses", f'is {_shown(uses)}, not "best" or "final"')
    for k in ("main_best", "main_final"):
        c.key(m, "metrics.", k, NUM, null=True)
    c.key(m, "metrics.", "primary_split", STR, need=False)
    c.key(m, "metrics.", "best_step", INT, null=True, need=False)
    spec = {"step": (INT, False, True), "epoch": (NUM, True, False), "split": (STR, False, False)}
    c.rows(m, "metrics.", "evals", {**spec, main: (NUM, True, False)})
    for k in ("best", "final"):
        scores = c.key(m, "metrics.", k, OBJ)
        # {metric: value}, or (metrics.final) {split: {metric: value}}
        nested = [(f"metrics.{k}.{s}.", v) for s, v in scores.items() if isinstance(v, dict)]
        for prefix, d in [(f"metrics.{k}.", scores), *nested]:
            if not isinstance(d.get(main), dict):
                c.key(d, prefix, main, NUM, null=True, need=False)


def _check_budget(c: _Check, b: dict) -> None:
    c.key(b, "budget.", "avg_final_rank", NUM)
    c.key(b, "budget.", "n_modules", INT, need=False)
    for k in ("init_total_rank", "target_total_rank", "final_total_rank"):
        c.key(b, "budget.", k, INT, null=True, need=False)
    for i, point in enumerate(c.key(b, "budget.", "curve", LIST, null=True, need=False) or []):
        if not (isinstance(point, list) and len(point) == 2 and all(_IS[NUM](x) for x in point)):
            raise c.bad(f"budget.curve[{i}]", f"is {_shown(point)}, not a [step, budget] pair")


def _check_hp(c: _Check, hp: dict) -> None:
    lr = c.key(hp, "hyperparameters.", "lr", NUM)
    if not (math.isfinite(lr) and lr > 0):
        raise c.bad("hyperparameters.lr", f"is {lr!r}, not a positive finite number")
    c.key(hp, "hyperparameters.", "sweep", OBJ, null=True, need=False)
    for k in ("epochs", "lora_r", "lora_alpha", "init_r", "target_r"):
        c.key(hp, "hyperparameters.", k, NUM, null=True, need=False)
    for k in ("schedule", "score", "rank_pattern_from"):
        c.key(hp, "hyperparameters.", k, STR, null=True, need=False)


def check_record(rec: Any, where: str, fix: str = FIX, file: bool = True) -> dict:
    """``rec`` when it is a valid ``adalora.result/1`` record, else raise BadInput naming
    ``where`` and the field. ``file``: a result file, which also holds every provenance key
    (W&B runs converted by wandb_import have only what the report reads)."""
    c = _Check(where, fix)
    if not isinstance(rec, dict):
        raise BadInput(where, None, f"holds {_shown(rec)}, not a JSON object", fix)
    if "schema" not in rec:
        raise c.bad("schema", f"is missing: not a result record ({SCHEMA})", NOT_A_RECORD_FIX)
    if rec["schema"] != SCHEMA:
        raise c.bad(
            "schema",
            f"is {_shown(rec['schema'])}, a schema this report does not read (it reads {SCHEMA})",
            "regenerate the tables with the version of this code that wrote it, or move it out "
            "of the results folder",
        )
    if file:
        for k in REQUIRED_KEYS:
            if k not in rec:
                raise c.bad(k, f"is missing (every {SCHEMA} record has it)")
    name = c.key(rec, "", "run_name", STR)
    if not name.strip():
        raise c.bad("run_name", "is empty")
    for k in ("kind", "task", "method", "variant", "model", "status"):
        c.key(rec, "", k, STR)
    c.key(rec, "", "seed", INT)
    c.key(rec, "", "wall_time_s", NUM, null=not file)
    _check_hp(c, c.key(rec, "", "hyperparameters", OBJ))
    budget = c.key(rec, "", "budget", OBJ, null=True)
    if budget is not None:
        _check_budget(c, budget)
    params = c.key(rec, "", "params", OBJ)
    for k in ("trainable", "final_adapter", "total"):
        c.key(params, "params.", k, INT, null=True, need=False)
    for module, rank in (c.key(rec, "", "rank_pattern", OBJ, null=True) or {}).items():
        c.value(f"rank_pattern.{module}", rank, INT)
    _check_metrics(c, c.key(rec, "", "metrics", OBJ))
    row = {"step": (INT, False, True), "loss": (NUM, True, False)}
    c.rows(rec, "", "train_log", row, null=True, need=False)
    if file:
        c.key(rec, "", "model_type", STR, null=True)
        c.key(rec, "", "git_commit", STR, null=True, need=False)
        c.key(rec, "", "git_dirty", BOOL, null=True, need=False)
        provenance = {
            "preset": STR,
            "n_train": INT,
            "n_eval": OBJ,
            "versions": OBJ,
            "hardware": OBJ,
            "command": STR,
            "created": STR,
        }
        for k, kind in provenance.items():
            c.key(rec, "", k, kind)
    return rec


def read_record(path: str | os.PathLike) -> dict:
    """The record in result file ``path`` (with ``_path``: the path as given), or BadInput."""
    path = Path(path)
    where = str(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BadInput(where, None, f"cannot be read ({e.strerror or e})", FIX) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        problem = f"is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})"
        raise BadInput(where, None, problem, FIX) from None
    if not text.strip():
        raise BadInput(where, None, "is empty (an interrupted write?)", FIX)
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as e:
        at = f"{e.msg} at line {e.lineno} column {e.colno}"
        problem = f"is not valid JSON ({at})"
        # the text stops early: the error is at its end, or a string runs to its end
        if not text[e.pos :].strip() or e.msg.startswith("Unterminated string"):
            problem = f"is truncated: its JSON ends early ({at})"
        raise BadInput(where, None, problem, FIX) from None
    check_record(rec, where)
    rec["_path"] = where
    return rec


def read_records(
    root: str | os.PathLike, skip: Callable[[BadInput], None] | None = None
) -> list[dict]:
    """Every record under the folder ``root`` (``record_files``), in path order. An invalid one
    raises BadInput, or, with ``skip``, is passed to ``skip`` and left out."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    out = []
    for p in record_files(root):
        try:
            out.append(read_record(p))
        except BadInput as e:
            if skip is None:
                raise
            skip(e)
    return out
