"""The scripts' flag checks, in glue.py's style (experiments/validation/): every flag is checked
before anything runs or is written, and a problem is one line on stderr,

    <script>: error: <flag> <value>: <problem>; <fix>

with exit status 2. A check raises ``BadInput`` (experiments/validation/base.py, the runners' own
one-line error); ``parse`` prints it, and ``stop`` prints one raised after loading (values
only a loaded model or data set can tell). Used by reproduce.py, ablate.py, bench_step.py,
bench_train.py, device_check.py and minilm_fp16.py.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

from experiments.validation.base import BadInput, flag, writable_folder

__all__ = [
    "BadInput",
    "ScriptParser",
    "parse",
    "stop",
    "at_least",
    "positive",
    "non_negative",
    "folder",
    "writable_folder",
    "new_file",
]


class ScriptParser(argparse.ArgumentParser):
    """argparse whose own errors (an unknown flag, a value of the wrong type, a bad choice) are
    one line too, like the runners' (experiments/cli.py)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (--help lists the flags)\n")


def parse(
    parser: argparse.ArgumentParser, argv, check: Callable[[argparse.Namespace], None]
) -> argparse.Namespace:
    """``argv`` parsed and passed to ``check`` (which raises BadInput); a problem ends the
    script with its one line and exit status 2."""
    args = parser.parse_args(argv)
    try:
        check(args)
    except BadInput as e:
        parser.exit(2, f"{parser.prog}: error: {e.line()}\n")
    return args


def stop(prog: str, e: BadInput):
    """End the script with ``e``'s one line and exit status 2 (a check after loading)."""
    print(f"{prog}: error: {e.line()}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _shown(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def at_least(args, key: str, low: int, fix: str | None = None) -> None:
    """``args.<key>``, when given (not None), is an integer >= ``low``."""
    v = getattr(args, key)
    if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < low):
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise BadInput(
            flag(key), _shown(v), f"must be {what}", fix or f"pass {flag(key)} {low} or more"
        )


def positive(args, key: str, what: str, fix: str) -> None:
    """``args.<key>``, when given, is a finite number > 0 (NaN and infinity refused)."""
    v = getattr(args, key)
    if v is not None and not (math.isfinite(v) and v > 0):
        raise BadInput(flag(key), _shown(v), f"must be {what}, finite and > 0", fix)


def non_negative(args, key: str, what: str, fix: str) -> None:
    """``args.<key>``, when given, is a finite number >= 0 (NaN and infinity refused)."""
    v = getattr(args, key)
    if v is not None and not (math.isfinite(v) and v >= 0):
        raise BadInput(flag(key), _shown(v), f"must be {what}, finite and >= 0", fix)


def folder(args, key: str, fix: str) -> None:
    """``args.<key>``, when given, is an existing folder."""
    v = getattr(args, key)
    if v is not None and not Path(v).is_dir():
        problem = "not a folder" if Path(v).exists() else "no such folder"
        raise BadInput(flag(key), v, problem, fix)


def new_file(path: str | os.PathLike, shown_flag: str, shown: str | None = None) -> None:
    """``path`` is a file the script may create: not there yet (results are never overwritten
    silently), not a folder, in a folder that exists or can be created and is writable.
    ``shown``: the value the message names (default: ``path``)."""
    p, shown = Path(path), shown or str(path)
    if p.is_dir():
        raise BadInput(shown_flag, shown, "is a folder", f"pass a file path, e.g. {p / 'out.json'}")
    if p.exists() or p.is_symlink():
        raise BadInput(
            shown_flag,
            shown,
            "already exists and results are never overwritten",
            f"pass another {shown_flag}, or delete the file to measure again",
        )
    try:
        writable_folder(p.parent, shown_flag)
    except BadInput as e:
        fix = "pass a path inside a folder" if e.fix == "pass a folder path" else e.fix
        raise BadInput(shown_flag, shown, e.problem, fix) from None
