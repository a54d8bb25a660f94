#!/usr/bin/env python
"""Run a hyperparameter grid of ``experiments/glue.py`` runs, resumably.

    python scripts/ablate.py --task rte --grid tinit=100,200 tfinal=300 delta_t=1,10 \\
        --seeds 1 2 3 [--method adalora] [--output-dir results/runs/ablations] [--dry-run] \\
        [--schedules cubic linear constant] [--launcher local|slurm ...] [-- extra glue.py args]

Every point of the cartesian product of the grid, for every seed, becomes one command

    python experiments/glue.py --task T --method M --seed S --<flag> v ... --sweep-json
        '{"delta_t":1,"tinit":100,...}' [extra args] --output-dir DIR --run-name NAME

Grid keys are glue.py flags written with underscores (delta_t -> --delta-t). NAME is derived
from (task, method, sorted grid point, seed) (plus a hash of the extra args when given), e.g.
``abl-rte-adalora-delta_t=1-tinit=100-s1``; a point whose ``<output-dir>/<NAME>.json`` exists
is skipped, so an interrupted grid resumes where it stopped. Failed runs are listed at the end
and make the exit status non-zero.

Runs go one at a time on this machine by default (their output on the console); --workers N
runs N at once and --launcher slurm sends them to SLURM as job arrays (scripts/grid/options.py;
their output then goes to <output-dir>/logs/<NAME>.log).

Checked before anything runs or is written (one line, exit status 2): every flag, every grid
key and value, the extra arguments (a flag that is also a grid key, or one that ablate.py sets,
is refused: the runs would train at another value than their names and sweep say), every
planned command as glue.py itself checks it (--dry-run too), and, for runs on this machine, that
it trains their --precision natively (scripts/grid/launch.py check_machine).
"""

from __future__ import annotations

import hashlib
import itertools
import re
import shlex
import sys
from pathlib import Path

from scripts.checks import BadInput, ScriptParser, parse
from scripts.grid import launch, options
from scripts.grid.command import (
    GLUE_HELP,
    GLUE_SCRIPT,
    ROOT,
    GlueRefused,
    check_glue_argv,
    flag_of,
    given_keys,
    glue_argv,
    glue_command,
    glue_dests,
    parse_value,
    sweep_json,
)
from scripts.grid.pool import Run, drive

__all__ = ["GLUE_SCRIPT", "flag_of", "parse_value", "sweep_json"]  # the names grids share

GLUE_KEYS = glue_dests()  # the keys of glue.py's flags, read from its parser
# Keys ablate.py sets itself: not grid keys, not in the extra arguments.
RESERVED = {
    "task": "--task",
    "method": "--method",
    "seed": "--seeds",
    "run_name": None,
    "output_dir": "--output-dir",
    "sweep_json": None,
    "dry_run": "--dry-run",
}
WORKERS = 1  # local runs at once (--workers): one, its output on the console


class GridError(BadInput):
    """A --grid / --schedules / extra-argument problem (one line, as BadInput)."""


def parse_grid(items: list, schedules: list | None = None) -> dict:
    """``["tinit=100,200", "delta_t=1"]`` -> {"delta_t": ["1"], "tinit": ["100", "200"]}
    (values kept as written; keys checked against glue.py's flags, values by glue.py itself
    when the commands are checked)."""
    grid = {}
    for item in items or []:
        key, sep, vals = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise GridError("--grid", item, "not KEY=V1,V2,...", "write e.g. delta_t=1,10")
        if key.startswith("-"):
            raise GridError(
                "--grid",
                item,
                "a key is written without dashes",
                f"write {key.lstrip('-').replace('-', '_')}={vals}",
            )
        values = [v.strip() for v in vals.split(",") if v.strip()]
        if not values:
            raise GridError("--grid", item, "no values", f"write e.g. {key}=V1,V2")
        if key in grid:
            raise GridError(
                "--grid", item, f"key {key} given twice", "give each key once, with all its values"
            )
        grid[key] = values
    if schedules:
        if "schedule" in grid:
            raise GridError(
                "--schedules",
                " ".join(schedules),
                "schedule is also a --grid key",
                "give it once: --schedules ... or --grid schedule=...",
            )
        grid["schedule"] = list(schedules)
    for key, values in grid.items():
        item = f"{key}={','.join(values)}"
        if key in RESERVED:
            use = RESERVED[key]
            raise GridError(
                "--grid",
                item,
                f"{key} is set by ablate.py itself",
                f"use {use}" if use else "drop it",
            )
        if key not in GLUE_KEYS:
            valid = ", ".join(sorted(k for k in GLUE_KEYS if k not in RESERVED))
            raise GridError(
                "--grid",
                item,
                f"glue.py has no flag {flag_of(key)}",
                f"use one of its keys: {valid}",
            )
        if len(set(values)) != len(values):
            raise GridError("--grid", item, "repeats a value", "list each value once")
    return {k: grid[k] for k in sorted(grid)}


def check_extra(extra: list, grid: dict | None = None) -> None:
    """The extra glue.py arguments: glue.py's parser accepts them, and they set neither what
    ablate.py sets nor a grid key (every run would train at the passed value while its name
    and --sweep-json say the grid's)."""
    if not extra:
        return
    shown = shlex.join(extra)
    try:
        keys = given_keys(extra)
    except GlueRefused as e:
        raise GridError("--", shown, f"glue.py refuses them: {e.problem}", GLUE_HELP) from None
    for key in keys:
        if key in RESERVED:
            use = RESERVED[key]
            raise GridError(
                "--",
                shown,
                f"{flag_of(key)} is set by ablate.py itself",
                f"use ablate.py's {use}" if use else f"drop {flag_of(key)}",
            )
        if key in (grid or {}):
            raise GridError(
                "--",
                shown,
                f"{flag_of(key)} is also a grid key: every run would "
                "train at this value while its name and --sweep-json say the grid's",
                f"drop {flag_of(key)} after --, or the grid key {key}",
            )


def expand(grid: dict) -> list:
    """Cartesian product: a list of {key: value string} (keys sorted; order deterministic)."""
    keys = sorted(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", text)


def run_name(task: str, method: str, point: dict, seed: int, extra: list | None = None) -> str:
    parts = ["abl", task, method] + [f"{k}={point[k]}" for k in sorted(point)]
    if extra:
        parts.append("x" + hashlib.sha1(shlex.join(extra).encode()).hexdigest()[:8])
    parts.append(f"s{seed}")
    return _safe("-".join(parts))


def build_argv(task, method, point: dict, seed: int, output_dir, extra=None) -> list:
    """glue.py's arguments of one grid run (scripts/grid/command.py: glue_argv)."""
    flags = ["--task", task, "--method", method, "--seed", str(seed)]
    for k in sorted(point):
        flags += [flag_of(k), str(point[k])]
    flags += ["--sweep-json", sweep_json(point), *(extra or [])]
    name = run_name(task, method, point, seed, extra)
    return glue_argv(flags, output_dir=output_dir, run_name=name)


def build_command(task, method, point, seed, output_dir, extra=None, python=None) -> list:
    return glue_command(build_argv(task, method, point, seed, output_dir, extra), python)


def plan(tasks, methods, grid: dict, seeds, output_dir: str, extra=None, logs: bool = False):
    """[Run] in run order: task, method, grid point, seed. ``logs``: each run writes to
    <output_dir>/logs/<name>.log (else to the console)."""
    out = []
    for task, method, point, seed in itertools.product(tasks, methods, expand(grid), seeds):
        name = run_name(task, method, point, seed, extra)
        argv = build_argv(task, method, point, seed, output_dir, extra)
        log = Path(output_dir) / "logs" / f"{name}.log" if logs else None
        out.append(Run(name, tuple(argv), Path(output_dir) / f"{name}.json", log))
    return out


def check_run(run: Run, point: dict, args, extra: list) -> None:
    """glue.py's own check of one planned command; its refusal names the ablate.py flag, grid
    item or extra argument the problem came from."""
    try:
        check_glue_argv(run.argv)
    except GlueRefused as e:
        key = e.flag.lstrip("-").replace("-", "_")
        said = f"{e.flag} {e.value}" if e.value else "it"
        problem = f"glue.py refuses {said}: {e.problem}"
        if key == "schedule" and args.schedules:
            raise BadInput("--schedules", point[key], problem, e.fix) from None
        if key in point:
            raise BadInput("--grid", f"{key}={point[key]}", problem, e.fix) from None
        own = {"task": "--task", "method": "--method", "seed": "--seeds"}
        if key in own:
            value = run.argv[run.argv.index(e.flag) + 1]
            raise BadInput(own[key], value, problem, e.fix) from None
        if key == "output_dir":
            raise BadInput("--output-dir", args.output_dir, problem, e.fix) from None
        if extra and key in given_keys(extra):
            raise BadInput("--", shlex.join(extra), problem, e.fix) from None
        raise BadInput(e.flag, e.value, f"{e.problem} (run {run.name})", e.fix) from None


def _display_dir(path: str) -> str:
    """Output dir as passed to glue.py (which runs from the repo root)."""
    p = Path(path).resolve()
    try:
        return p.relative_to(ROOT).as_posix()
    except ValueError:
        return str(p)


def build_parser() -> ScriptParser:
    ap = ScriptParser(
        prog="ablate.py",
        description="Run a hyperparameter grid of experiments/glue.py runs (resumable).",
        epilog="Arguments after -- are passed to every glue.py command.",
    )
    ap.add_argument("--task", nargs="+", required=True, help="GLUE task(s), as glue.py's --task")
    ap.add_argument("--method", nargs="+", default=["adalora"], help="as glue.py's --method")
    ap.add_argument(
        "--grid",
        nargs="*",
        default=[],
        metavar="KEY=V1,V2",
        help="grid axes; keys are glue.py flags with underscores (delta_t=1,10)",
    )
    ap.add_argument("--schedules", nargs="+", default=None, help="shortcut for --grid schedule=...")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1])
    ap.add_argument("--output-dir", default="results/runs/ablations")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    options.add_flags(ap, workers=WORKERS)
    return ap


def main(argv: list | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    ap = build_parser()
    state = {}

    def check(args) -> None:
        for what in ("task", "method", "seeds"):
            values = getattr(args, what)
            if len(set(values)) != len(values):
                raise BadInput(
                    flag_of(what),
                    " ".join(map(str, values)),
                    "repeats a value",
                    "list each value once",
                )
        grid = parse_grid(args.grid, args.schedules)
        check_extra(extra, grid)
        options.check(args)
        logs = args.launcher != "local" or (args.workers or WORKERS) > 1
        out = _display_dir(args.output_dir)
        runs = plan(args.task, args.method, grid, args.seeds, out, extra, logs)
        points = [
            p for _ in args.task for _ in args.method for p in expand(grid) for _ in args.seeds
        ]
        for run, point in zip(runs, points):
            if not run.done():
                check_run(run, point, args, extra)
        if not args.dry_run:
            launch.check_machine(args, [r for r in runs if not r.done()])
        state.update(runs=runs, out=out)

    args = parse(ap, argv, check)
    runs = state["runs"]
    index = {r.name: i for i, r in enumerate(runs, 1)}
    skipped = [r for r in runs if r.done()]
    for r in skipped:
        print(f"[{index[r.name]}/{len(runs)}] {r.name}: skip (result exists)", flush=True)
    todo = [r for r in runs if not r.done()]
    if args.dry_run:
        if args.launcher == "local":
            for r in todo:
                print(f"[{index[r.name]}/{len(runs)}] {r.name}: {shlex.join(glue_command(r.argv))}")
        elif todo:
            print(launch.slurm_dry_run(args, state["out"], todo, "adalora-ablate"))
        print(f"{len(runs)} runs: 0 ran, {len(skipped)} skipped, 0 failed (dry run)", flush=True)
        return 0

    def started(r: Run) -> None:
        print(
            f"[{index[r.name]}/{len(runs)}] {r.name}: {shlex.join(glue_command(r.argv))}",
            flush=True,
        )

    pool = launch.make(args, state["out"], WORKERS, "adalora-ablate")
    outcomes = drive(lambda: runs, pool, on_start=started)
    failures = [o for o in outcomes if not o.ok]
    print(
        f"{len(runs)} runs: {len(outcomes) - len(failures)} ran, {len(skipped)} skipped, "
        f"{len(failures)} failed",
        flush=True,
    )
    if failures:
        print("FAILED:", file=sys.stderr)
        for o in failures:
            print(f"  {o.name}: {o.why}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
