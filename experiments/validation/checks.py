"""Bad input, rejected before anything runs: one line, exit status 2, nothing written.

Every runner flag and every resolved hyperparameter (a preset's values too) is checked before
anything is trained or written, as soon as what the check needs is there:

1. ``check_flags``: right after the config resolves, before any model or data loads: sizes and
   counts, learning rate, fractions and coefficients, two flags for one quantity (--tinit with
   --tinit-frac, --max-steps with --epochs, --budget with --target-r: one would be dropped),
   ranks against each other, the schedule when T is given, precision, paths (--data-dir,
   --output-dir, --model, --run-name, --rank-pattern-from), --save-steps / --resume.
2. ``check_model`` (experiments/validation/model.py): right after the model loads: --max-length
   (and a seq2seq model's summary lengths) against the model's positions; ranks against the
   sizes of the adapted matrices.
3. ``check_schedule``: once the data has fixed T: tinit + tfinal < T.

A problem raises ``BadInput(flag, value, problem, fix)`` (experiments/validation/base.py); the
runners' entry point (experiments/cli.py) prints it as ``<prog>: error: <flag> <value>:
<problem>; <fix>`` on stderr and exits with status 2. ``flag`` (base.py: a
hyperparameter's flag) and ``blame`` (an error raised while loading the model or the data, or
by the adalora library, to the flag it is about) are the one place that maps a problem to its
flag. Data files: the readers in experiments/data/ raise ``DataError`` (a ValueError,
experiments/data/files.py), which ``blame`` turns into the line naming --data-dir; the library
keeps raising its own ValueErrors (AdaLoraConfig, AdaLoraModel, find_targets), matched to their
flag by ``LIBRARY_ERRORS``.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from dataclasses import fields
from pathlib import Path

from experiments.data.files import DataError, DataFileNotFound
from experiments.methods import ADAPTER_METHODS as ADAPTERS
from experiments.methods import ALLOCATING_METHODS as ALLOCATING
from experiments.methods import METHOD_HP, METHODS
from experiments.methods import SCHEDULED_METHODS as SCHEDULED  # tinit + tfinal < T
from experiments.validation import inputs
from experiments.validation.base import (
    BadInput,
    bad,
    flag,
    given,
    one_line,
    writable_folder,
)
from experiments.validation.model import check_model as check_model  # the runners' checks.*
from experiments.validation.model import check_planned_ranks as check_planned_ranks
from experiments.validation.model import held_logs as held_logs

# --------------------------------------------------------------------------- 1. flags
# key -> (smallest allowed value, fix when below). Integers.
AT_LEAST = {
    "batch_size": (1, "pass --batch-size 1 or more"),
    "eval_batch_size": (1, "pass --eval-batch-size 1 or more"),
    "grad_accum": (1, "pass --grad-accum 1 or more (1 = no accumulation)"),
    "evals": (1, "pass --evals 1 or more (1 = one evaluation, at the end)"),
    "max_length": (8, "pass --max-length 8 or more (room for the special tokens and text)"),
    "max_steps": (1, "pass --max-steps 1 or more, or leave it out to train --epochs"),
    "max_train_samples": (1, "pass 1 or more, or leave it out to use every example"),
    "max_eval_samples": (1, "pass 1 or more, or leave it out to use every example"),
    "init_r": (1, "pass --init-r 1 or more"),
    "lora_r": (1, "pass --lora-r 1 or more"),
    "budget": (1, "pass a total rank b(T) of 1 or more"),
    "delta_t": (1, "pass --delta-t 1 or more (steps between two re-allocations)"),
    "tinit": (0, "pass --tinit 0 or more (steps before pruning starts)"),
    "tfinal": (0, "pass --tfinal 0 or more (final steps at the fixed mask)"),
    "num_beams": (1, "pass --num-beams 1 or more (1 = greedy)"),
    "max_target_length": (1, "pass --max-target-length 1 or more"),
    "gen_max_length": (1, "pass --gen-max-length 1 or more, or leave it out"),
    "no_repeat_ngram_size": (0, "pass 0 (off) or more"),
    "save_steps": (1, "pass --save-steps 1 or more (optimizer steps between checkpoints)"),
}
# key -> (low, high, low inclusive, high inclusive, what it is). Floats.
IN_RANGE = {
    "lr": (0, math.inf, False, False, "a learning rate > 0"),
    "epochs": (0, math.inf, False, False, "a number of epochs > 0"),
    "target_r": (0, math.inf, False, False, "an average rank > 0"),
    "lora_alpha": (0, math.inf, False, False, "an adapter alpha > 0"),
    "lora_dropout": (0, 1, True, False, "a dropout probability in [0, 1)"),
    "cls_dropout": (0, 1, True, False, "a dropout probability in [0, 1)"),
    "beta1": (0, 1, False, False, "an EMA coefficient in (0, 1)"),
    "beta2": (0, 1, False, False, "an EMA coefficient in (0, 1)"),
    "weight_decay": (0, math.inf, True, False, "a weight decay >= 0"),
    "orth_reg_weight": (0, math.inf, True, False, "a regulariser weight >= 0"),
    "warmup": (0, math.inf, True, False, "warm-up steps (>= 1) or a fraction of T (< 1), >= 0"),
    "tinit_frac": (0, 1, True, False, "a fraction of T in [0, 1)"),
    "tfinal_frac": (0, 1, True, False, "a fraction of T in [0, 1)"),
    "length_penalty": (-math.inf, math.inf, False, False, "a finite number"),
}
RANGE_FIX = {
    "lr": "pass a positive learning rate, e.g. --lr 1e-3",
    "epochs": "pass --epochs above 0 (e.g. 0.5 or 3), or --max-steps N",
    "target_r": "pass --target-r above 0 (e.g. 2 or 8)",
    "lora_alpha": "pass --lora-alpha above 0 (e.g. 16 or 32)",
    "lora_dropout": "pass --lora-dropout between 0 and 1, e.g. 0 or 0.1",
    "cls_dropout": "pass --cls-dropout between 0 and 1, e.g. 0.1",
    "beta1": "pass --beta1 between 0 and 1 (the paper: 0.85)",
    "beta2": "pass --beta2 between 0 and 1 (the paper: 0.85)",
    "weight_decay": "pass --weight-decay 0 or more, e.g. 0.01",
    "orth_reg_weight": "pass --orth-reg-weight 0 or more (the paper: 0.1 to 0.5)",
    "warmup": "pass --warmup 0 or more: steps (e.g. 100) or a fraction of T (e.g. 0.06)",
    "tinit_frac": "pass --tinit-frac between 0 and 1, e.g. 0.15, or --tinit STEPS",
    "tfinal_frac": "pass --tfinal-frac between 0 and 1, e.g. 0.45, or --tfinal STEPS",
    "length_penalty": "pass a finite --length-penalty, e.g. 1.0",
}


def _range_ok(v, low, high, low_in, high_in) -> bool:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v):
        return False
    if math.isinf(v):
        return False
    return (v >= low if low_in else v > low) and (v <= high if high_in else v < high)


def check_flags(cfg, kind: str = "glue") -> None:
    """Everything that needs neither the model nor the data (module doc). ``cfg``: the resolved
    config (experiments/config.py); ``kind``: "glue" or "summarization"."""
    for key, (low, fix) in AT_LEAST.items():
        v = getattr(cfg, key, None)
        if v is not None and (not isinstance(v, int) or v < low):
            what = "a positive integer" if low == 1 else f"an integer >= {low}"
            raise bad(cfg, key, v, f"must be {what}", fix)
    for key, (low, high, low_in, high_in, what) in IN_RANGE.items():
        v = getattr(cfg, key, None)
        if key in ("tinit_frac", "tfinal_frac") and getattr(cfg, key[: -len("_frac")]) is not None:
            continue  # the fraction is unused when the step count is given
        if v is not None and not _range_ok(v, low, high, low_in, high_in):
            raise bad(cfg, key, v, f"must be {what}", RANGE_FIX[key])
    if not 0 <= cfg.seed < 2**32:
        raise BadInput("--seed", cfg.seed, "must be in [0, 2^32)", "pass --seed 0 or more")
    _check_dropped(cfg)
    _check_ranks(cfg)
    _check_schedule_fractions(cfg)
    _check_target_modules(cfg)
    _check_precision(cfg)
    _check_paths(cfg, kind)
    if cfg.sweep_json is not None:
        try:
            sweep = json.loads(cfg.sweep_json)
        except json.JSONDecodeError as e:
            raise BadInput(
                "--sweep-json",
                repr(cfg.sweep_json),
                f"not JSON ({e.msg})",
                'pass e.g. {"lr": 1e-3}',
            ) from None
        if not isinstance(sweep, dict):
            raise BadInput(
                "--sweep-json", cfg.sweep_json, "not a JSON object", 'pass e.g. {"lr": 1e-3}'
            )
    inputs.check_flags(cfg, kind)  # summarisation lengths, --rank-pattern-from


# Two flags that set one quantity: the second would be dropped, so giving both is an error.
# (flag that would lose, flag that wins, what the winner sets)
_EITHER_OR = (
    ("tinit_frac", "tinit", "tinit in steps"),
    ("tfinal_frac", "tfinal", "tfinal in steps"),
    ("epochs", "max_steps", "T, the number of optimizer steps"),
    ("target_r", "budget", "the final average rank (budget / n_modules)"),
)


def _check_dropped(cfg) -> None:
    """No given flag is silently dropped: two flags for one quantity stop the run."""
    for loser, winner, what in _EITHER_OR:
        if given(cfg, loser) and given(cfg, winner):
            raise bad(
                cfg,
                loser,
                getattr(cfg, loser),
                f"{flag(winner)} {getattr(cfg, winner):g} sets {what} already",
                f"pass {flag(winner)} or {flag(loser)}, not both",
            )


def unused_flags(cfg) -> list[str]:
    """The flags given that the run's method does not read (experiments/methods.py METHODS:
    e.g. --tinit for LoRA, --target-r for full fine-tuning), for a note: not an error, since one
    command line often serves several methods (the converged grid's common flags)."""
    ignored = (cfg.given & METHOD_HP) - METHODS[cfg.method].reads
    return [flag(f.name) for f in fields(cfg) if f.name in ignored]


def _check_ranks(cfg) -> None:
    """init_r >= target_r when both are known without the model (the budget needs it)."""
    if cfg.method not in ALLOCATING or cfg.budget is not None:
        return
    init_r, target_r = cfg.init_r, cfg.target_r
    if init_r is not None and target_r is not None and target_r > init_r:
        key = "target_r" if given(cfg, "target_r") or not given(cfg, "init_r") else "init_r"
        raise bad(
            cfg,
            key,
            target_r if key == "target_r" else init_r,
            f"final average rank target_r {target_r:g} > init_r {init_r}: AdaLoRA only prunes",
            f"pass --init-r {math.ceil(target_r)} or more, or a lower --target-r "
            "(the paper: init_r = 1.5 x target_r)",
        )


def _check_schedule_fractions(cfg) -> None:
    if cfg.method not in SCHEDULED:
        return
    ti, tf = cfg.tinit, cfg.tfinal
    if ti is None and tf is None and (cfg.tinit_frac or 0) + (cfg.tfinal_frac or 0) >= 1:
        key = "tfinal_frac" if given(cfg, "tfinal_frac") else "tinit_frac"
        raise bad(
            cfg,
            key,
            getattr(cfg, key),
            f"tinit_frac + tfinal_frac = {cfg.tinit_frac:g} + {cfg.tfinal_frac:g} >= 1 leaves "
            "no budgeting phase",
            "keep their sum below 1 (the paper: about 0.15 + 0.45)",
        )
    T = cfg.max_steps
    if T is not None and ti is not None and tf is not None:
        _schedule_error(cfg, ti, tf, T)


def _schedule_error(cfg, ti: int, tf: int, T: int) -> None:
    if ti + tf < T:
        return
    keys = [k for k in ("tinit", "tfinal", "tinit_frac", "tfinal_frac", "max_steps", "epochs")]
    key = next((k for k in keys if given(cfg, k)), "tinit")
    value = {"tinit": ti, "tfinal": tf}.get(key, getattr(cfg, key))
    raise bad(
        cfg,
        key,
        value,
        f"no budgeting phase: tinit + tfinal = {ti} + {tf} >= T = {T} steps",
        "lower --tinit / --tfinal (or --tinit-frac / --tfinal-frac) or train longer "
        "(--max-steps / --epochs) so that tinit + tfinal < T",
    )


def _check_target_modules(cfg) -> None:
    """A regex that compiles (a list naming no module: config.resolve)."""
    tm = cfg.target_modules
    fix = "pass comma-separated module-name suffixes (e.g. query,value), a regex or all-linear"
    if tm is None or cfg.method not in ADAPTERS:
        return
    if isinstance(tm, str):
        if not tm.strip():
            raise bad(cfg, "target_modules", repr(tm), "empty", fix)
        try:
            re.compile(tm)
        except re.error as e:
            raise bad(cfg, "target_modules", tm, f"not a valid regex ({e})", fix) from None


def _check_precision(cfg) -> None:
    if cfg.precision != "fp16":
        return
    import torch

    if not torch.cuda.is_available():
        raise bad(
            cfg,
            "precision",
            "fp16",
            "fp16 mixed precision needs a CUDA GPU and none is visible",
            "use --precision fp32 (or bf16) on CPU",
        )


def _check_paths(cfg, kind: str) -> None:
    from experiments.checkpoints import checkpoint_root, latest_checkpoint

    if cfg.data_dir is not None:
        d = Path(cfg.data_dir)
        if not d.is_dir():
            raise BadInput(
                "--data-dir",
                cfg.data_dir,
                "not a folder" if d.exists() else "no such folder",
                data_fix(kind),
            )
    model = str(cfg.model or "")
    local_looking = model.startswith(("/", "./", "../", "~")) or model.count("/") > 1
    if local_looking and not Path(model).expanduser().exists():
        raise bad(
            cfg,
            "model",
            model,
            "no such folder",
            "pass a local model folder, a Hub name (org/name)"
            + (" or minilm" if kind == "glue" else " or tiny-bart"),
        )
    rp = cfg.rank_pattern_from
    if rp is not None:
        if cfg.method != "lora":
            raise BadInput(
                "--rank-pattern-from",
                rp,
                f"only for --method lora, not {cfg.method}",
                "add --method lora or drop the flag",
            )
        if not Path(rp).is_file():
            raise BadInput(
                "--rank-pattern-from",
                rp,
                "no such file",
                "pass the result JSON of an adalora run",
            )
    writable_folder(cfg.output_dir, "--output-dir")
    name = cfg.run_name
    if name is not None:
        if (
            not name.strip()
            or name != name.strip()
            or any(c in name for c in "/\\\0")
            or name.startswith(".")
        ):
            raise BadInput(
                "--run-name",
                repr(name),
                "not a plain file name",
                "use letters, digits and - _ . (not starting with a dot)",
            )
        check_no_result(cfg.output_dir, name)
    if cfg.resume:
        if name is None:
            raise BadInput(
                "--resume", None, "needs the run to continue", "pass its --run-name NAME"
            )
        root = checkpoint_root(cfg.output_dir, name)
        if latest_checkpoint(root) is None:
            raise BadInput(
                "--resume",
                None,
                f"no complete checkpoint of run {name} under {root}",
                "drop --resume to start the run, or check --run-name and --output-dir",
            )


def check_no_result(output_dir, run_name: str) -> None:
    """The run's result file is not there yet (results are never overwritten). Raises BadInput."""
    from experiments.results import result_path

    out = result_path(output_dir, run_name)
    if out.exists():
        raise BadInput(
            "--run-name",
            run_name,
            f"{out} already exists and results are never overwritten",
            "pick another --run-name or --output-dir",
        )


def data_fix(kind: str) -> str:
    if kind == "summarization":
        return (
            "pass the folder holding <dataset>/<split>.jsonl (or the dataset's own folder), "
            "or leave --data-dir out to use $SUMM_DIR or the Hub"
        )
    return (
        "pass the GLUE folder in the official layout (holding RTE/, SST-2/, ...) or the task's "
        "own folder, or leave --data-dir out to use $GLUE_DIR or the Hub"
    )


# --------------------------------------------------------------------------- 2. model
# check_model: experiments/validation/model.py


# --------------------------------------------------------------------------- 3. schedule
def check_schedule(cfg) -> None:
    """tinit + tfinal < T (AdaLoraConfig's rule), once T is known."""
    if cfg.method in SCHEDULED:
        _schedule_error(cfg, cfg.tinit, cfg.tfinal, cfg.total_step)


# --------------------------------------------------------------------------- errors -> flags
# The adalora library's ValueErrors (AdaLoraConfig, LoraConfig, AdaLoraModel, find_targets,
# RankAllocator): (regex on the message, hyperparameter it is about, fix). First match wins.
# Most fixes just say what to pass: "pass <the hyperparameter's flag> <rule>".
_PASS_RULES = {  # regex -> (hyperparameter, rule)
    r"target_total_rank": ("budget", "1 or more"),
    r"init_r": ("init_r", "1 or more"),
    r"target_r": ("target_r", "above 0"),
    r"LoRA rank r|rank_pattern": ("lora_r", "1 or more"),
    r"lora_dropout": ("lora_dropout", "in [0, 1)"),
    r"beta1": ("beta1", "in (0, 1)"),
    r"beta2": ("beta2", "in (0, 1)"),
    r"orth_reg_weight": ("orth_reg_weight", "0 or more"),
    r"deltaT": ("delta_t", "1 or more"),
}
LIBRARY_ERRORS = (
    (r"target_modules|target module", "target_modules", "pass names from the list, a regex or "
     "all-linear"),
    (r"target_r .*> init_r", "target_r", "raise --init-r or lower --target-r / --budget"),
    (r"final budget .* exceeds", "budget", "lower --budget / --target-r or raise --init-r"),
    *((pattern, key, f"pass {flag(key)} {rule}") for pattern, (key, rule) in _PASS_RULES.items()),
    (r"budgeting phase|tinit|tfinal", "tinit", "lower --tinit / --tfinal or train longer"),
    (r"total_step", "max_steps", "pass --max-steps 1 or more"),
)  # fmt: skip
_FLAG_FIRST = re.compile(r"^(--[a-z][a-z0-9-]*) ?")


def from_library(cfg, e: ValueError) -> BadInput | None:
    """The BadInput for a library ValueError, or None when no flag is known for it. A message
    that starts with a flag (``--rank-pattern-from PATH: ...``) is already a one-line error."""
    msg = one_line(e)
    m = _FLAG_FIRST.match(msg)
    if m:
        rest = msg[m.end() :]
        value, _, problem = rest.partition(": ") if ": " in rest else ("", "", rest)
        return BadInput(m.group(1), value or None, problem or rest)
    for pattern, key, fix in LIBRARY_ERRORS:
        if re.search(pattern, msg):
            problem, own = _advice(msg)
            return bad(cfg, key, getattr(cfg, key, None), problem, own or fix)
    return None


def _advice(msg: str) -> tuple[str, str | None]:
    """(problem, fix): a message's closing advice ("... . Pass names from ...") is the fix."""
    own = re.search(r"[.:]\s+((?:Pass|Set|Use|Narrow|Decrease|Choose)\b.*)$", msg)
    if not own:
        return msg.rstrip("."), None
    return msg[: own.start()].rstrip("."), (own.group(1)[0].lower() + own.group(1)[1:]).rstrip(".")


@contextlib.contextmanager
def blame(cfg, what: str, kind: str = "glue"):
    """Errors while loading the model (``what="model"``) or the data (``"data"``), or building
    the method (``"library"``), become the BadInput naming the flag they are about."""
    try:
        yield
    except BadInput:
        raise
    except DataFileNotFound as e:
        problem, own = _advice(one_line(e))
        raise BadInput("--data-dir", cfg.data_dir, problem, own or data_fix(kind)) from None
    except DataError as e:
        fix = "fix the file, or point --data-dir at a good copy of the data"
        raise BadInput("--data-dir", cfg.data_dir, one_line(e), fix) from None
    except (OSError, RuntimeError, ValueError) as e:
        if what == "model":
            problem, own = _advice(one_line(e))
            raise bad(
                cfg,
                "model",
                cfg.model,
                f"cannot load it ({problem})",
                own or "pass a local model folder or a Hub name you can reach",
            ) from None
        if what == "data" and isinstance(e, (OSError, RuntimeError)):  # e.g. the Hub offline
            problem, own = _advice(one_line(e))
            raise BadInput("--data-dir", cfg.data_dir, problem, own or data_fix(kind)) from None
        if isinstance(e, ValueError):
            mapped = from_library(cfg, e)
            if mapped is not None:
                raise mapped from None
        raise
