"""One builder for an ``experiments/glue.py`` command, and glue.py's own check of one, in-process.

A planned run is glue.py's arguments in one order: the run's own flags, then ``--output-dir``,
``--run-name`` and, when it checkpoints, ``--save-steps`` (the order the converged grid's result
files record in their ``command``). The grids (scripts/reproduce.py, scripts/ablate.py,
scripts/plan_converged.py) and scripts/device/glue.py build their commands here.

``check_glue_argv`` runs what glue.py checks before it loads anything (its parser, the preset
overridden by the flags, ``experiments.validation.checks.check_flags``) without loading a model
or data and without writing anything, so that a grid refuses a bad command before its first run
starts.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from experiments.validation.base import BadInput, one_line

ROOT = Path(__file__).resolve().parents[2]
GLUE_SCRIPT = "experiments/glue.py"  # commands run from ROOT
GLUE_HELP = "see python experiments/glue.py --help"


def flag_of(key: str) -> str:
    """A glue.py flag from its key: delta_t -> --delta-t."""
    return "--" + key.replace("_", "-")


def flag_value(argv: Iterable, flag: str) -> str | None:
    """The value after ``flag`` in a glue.py command's arguments (None when it is not there)."""
    argv = list(argv)
    return argv[argv.index(flag) + 1] if flag in argv else None


def parse_value(text: str):
    """'100' -> 100, '0.1' / '1e-3' -> float, anything else stays a string."""
    for typ in (int, float):
        try:
            return typ(text)
        except ValueError:
            pass
    return text


def sweep_json(point: dict) -> str:
    """The --sweep-json of a grid point (keys sorted, values as numbers where they are)."""
    return json.dumps(
        {k: parse_value(str(point[k])) for k in sorted(point)},
        sort_keys=True,
        separators=(",", ":"),
    )


def glue_argv(
    flags: Iterable, *, output_dir: str | os.PathLike, run_name: str, save_steps: int | None = None
) -> list[str]:
    """glue.py's arguments for one run: ``flags``, then where its result goes
    (``<output_dir>/<run_name>.json``), then its checkpoint interval (None: no checkpoints)."""
    argv = [str(f) for f in flags] + ["--output-dir", str(output_dir), "--run-name", run_name]
    return argv + (["--save-steps", str(save_steps)] if save_steps is not None else [])


def glue_command(argv: Sequence[str], python: str | None = None) -> list[str]:
    """The command line of one run (run from the repository root)."""
    return [python or sys.executable, GLUE_SCRIPT, *argv]


# ------------------------------------------------------------------ glue.py's flags and checks
def glue_parser():
    from experiments.config import GlueConfig, build_parser

    return build_parser(GlueConfig, "glue.py")


def glue_dests() -> tuple[str, ...]:
    """The keys (argparse dests) of glue.py's flags: the flag of key k is flag_of(k)."""
    return tuple(vars(glue_parser().parse_args([])))


_UNSET = object()


def given_keys(argv: Sequence[str]) -> list[str]:
    """The keys of glue.py's flags that ``argv`` sets, however written (``--lr=1e-3``, an
    abbreviation such as ``--tinit-f``): glue.py's parser with every default unset. Raises
    GlueRefused when glue.py's parser refuses ``argv``."""
    p = glue_parser()
    keys = glue_dests()
    p.set_defaults(**dict.fromkeys(keys, _UNSET))
    args = _parse(p, argv)
    return [k for k in keys if getattr(args, k) is not _UNSET]


class GlueRefused(BadInput):
    """glue.py refuses a command: its flag, value, problem and fix (value None for a parser
    error, whose problem is argparse's message)."""


def _parse(parser, argv: Sequence[str]):
    out = io.StringIO()
    try:
        with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
            return parser.parse_args(list(argv))
    except SystemExit as e:
        text = out.getvalue()
        if e.code == 0:  # --help / --version printed and exited
            raise GlueRefused("--help", None, "asks for help, not a run", GLUE_HELP) from None
        msg = text.split("error:", 1)[-1].replace("(--help lists the flags)", "")
        m = re.search(r"argument (--[\w-]+)", msg)
        raise GlueRefused(m.group(1) if m else "glue.py", None, one_line(msg), GLUE_HELP) from None


@contextlib.contextmanager
def working_dir(path: Path):
    """Run the block with ``path`` as the working directory (contextlib.chdir from 3.11)."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def check_glue_argv(argv: Sequence[str]) -> None:
    """What glue.py checks before it loads the model or the data, for ``argv`` run from the
    repository root: its parser, then every flag and resolved preset value
    (experiments.validation.checks.check_flags). Raises GlueRefused with glue.py's own flag,
    value, problem and fix; loads and writes nothing."""
    from experiments import presets
    from experiments.config import GlueConfig, resolve
    from experiments.validation import checks

    args = _parse(glue_parser(), argv)
    try:
        with working_dir(ROOT):
            cfg = resolve(GlueConfig, presets.GLUE, vars(args))
            checks.check_flags(cfg, "glue")
    except BadInput as e:
        raise GlueRefused(e.flag, e.value, e.problem, e.fix) from None
