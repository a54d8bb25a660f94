#!/usr/bin/env python
"""Run a hyperparameter grid of ``experiments/glue.py`` runs, sequentially and resumably.

    python scripts/ablate.py --task rte --grid tinit=100,200 tfinal=300 delta_t=1,10 \\
        --seeds 1 2 3 [--method adalora] [--output-dir results/runs/ablations] [--dry-run] \\
        [--schedules cubic linear constant] [-- extra glue.py args]

Every point of the cartesian product of the grid, for every seed, becomes one command

    python experiments/glue.py --task T --method M --seed S --<flag> v ... --run-name NAME
        --output-dir DIR --sweep-json '{"delta_t":1,"tinit":100,...}' [extra args]

Grid keys are glue.py flags written with underscores (delta_t -> --delta-t). NAME is derived
from (task, method, sorted grid point, seed) (plus a hash of the extra args when given), e.g.
``abl-rte-adalora-delta_t=1-tinit=100-s1``; a point whose ``<output-dir>/<NAME>.json`` exists
is skipped, so an interrupted grid resumes where it stopped. Failed runs are listed at the end
and make the exit status non-zero.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

from experiments import glue

ROOT = Path(__file__).resolve().parents[1]
GLUE_SCRIPT = "experiments/glue.py"
_GLUE_ACTIONS = [a for a in glue.build_parser()._actions if a.dest != "help"]
# The command-line flags of experiments/glue.py, read from its parser.
GLUE_FLAGS = tuple(o for a in _GLUE_ACTIONS for o in a.option_strings if o.startswith("--"))
# Flags ablate.py sets itself: not allowed as grid keys or extra arguments.
RESERVED_FLAGS = ("--task", "--method", "--seed", "--run-name", "--output-dir", "--sweep-json")
# glue.py's flags with a fixed set of values: key (dest) -> the values.
CHOICES = {a.dest: tuple(a.choices) for a in _GLUE_ACTIONS if a.choices is not None}
TASKS = CHOICES["task"]
METHODS = CHOICES["method"]


class GridError(ValueError):
    pass


def flag_of(key: str) -> str:
    return "--" + key.replace("_", "-")


def parse_value(text: str):
    """'100' -> 100, '0.1' / '1e-3' -> float, anything else stays a string."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_grid(items: list, schedules: list | None = None) -> dict:
    """``["tinit=100,200", "delta_t=1"]`` -> {"delta_t": ["1"], "tinit": ["100", "200"]}
    (values kept as written; validated against GLUE_FLAGS)."""
    grid = {}
    for item in items or []:
        key, sep, vals = item.partition("=")
        key = key.strip()
        if not sep or not key or not vals:
            raise GridError(f"grid item {item!r} is not KEY=V1,V2,...")
        if key.startswith("-"):
            raise GridError(
                f"grid key {key!r}: write it without dashes, with underscores (e.g. delta_t=1,10)"
            )
        values = [v.strip() for v in vals.split(",") if v.strip()]
        if not values:
            raise GridError(f"grid item {item!r} has no values")
        if key in grid:
            raise GridError(f"grid key {key!r} given twice")
        grid[key] = values
    if schedules:
        if "schedule" in grid:
            raise GridError(
                "give the schedule either with --schedules or --grid schedule=..., not both"
            )
        grid["schedule"] = list(schedules)
    for key, values in grid.items():
        flag = flag_of(key)
        if flag not in GLUE_FLAGS:
            valid = ", ".join(
                sorted(
                    f[2:].replace("-", "_")
                    for f in GLUE_FLAGS
                    if f not in RESERVED_FLAGS and f != "--dry-run"
                )
            )
            raise GridError(
                f"unknown grid key {key!r} (no glue.py flag {flag}). Valid keys: {valid}"
            )
        if flag in RESERVED_FLAGS or flag == "--dry-run":
            what = {"--seed": "use --seeds", "--task": "use --task", "--method": "use --method"}
            raise GridError(
                f"grid key {key!r} is set by ablate.py itself"
                + (f" ({what[flag]})" if flag in what else "")
            )
        if key in CHOICES:
            bad = [v for v in values if v not in CHOICES[key]]
            if bad:
                raise GridError(
                    f"grid key {key!r}: invalid value(s) {bad}; choose from {list(CHOICES[key])}"
                )
        if len(set(values)) != len(values):
            raise GridError(f"grid key {key!r} repeats a value: {values}")
    return {k: grid[k] for k in sorted(grid)}


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


def sweep_json(point: dict) -> str:
    return json.dumps(
        {k: parse_value(point[k]) for k in sorted(point)}, sort_keys=True, separators=(",", ":")
    )


def build_command(
    task: str,
    method: str,
    point: dict,
    seed: int,
    output_dir: str,
    extra: list | None = None,
    python: str | None = None,
) -> list:
    cmd = [
        python or sys.executable,
        GLUE_SCRIPT,
        "--task",
        task,
        "--method",
        method,
        "--seed",
        str(seed),
    ]
    for k in sorted(point):
        cmd += [flag_of(k), str(point[k])]
    cmd += [
        "--run-name",
        run_name(task, method, point, seed, extra),
        "--output-dir",
        str(output_dir),
        "--sweep-json",
        sweep_json(point),
    ]
    return cmd + list(extra or [])


def check_extra(extra: list) -> None:
    """Extra glue.py arguments must not set what ablate.py sets (glue.py checks the rest)."""
    for a in extra:
        flag = a.split("=", 1)[0]
        if flag in RESERVED_FLAGS:
            raise GridError(
                f"extra argument {flag} is set by ablate.py itself; use its own "
                "option (--task/--method/--seeds/--output-dir)"
            )


def plan(
    tasks: list,
    methods: list,
    grid: dict,
    seeds: list,
    output_dir: str,
    extra: list | None = None,
) -> list:
    """[(name, command)] in run order: task, method, grid point, seed."""
    out = []
    for task in tasks:
        for method in methods:
            for point in expand(grid):
                for seed in seeds:
                    out.append(
                        (
                            run_name(task, method, point, seed, extra),
                            build_command(task, method, point, seed, output_dir, extra),
                        )
                    )
    return out


def _display_dir(path: str) -> str:
    """Output dir as passed to glue.py (which runs from the repo root)."""
    p = Path(path).resolve()
    try:
        return p.relative_to(ROOT).as_posix()
    except ValueError:
        return str(p)


def main(argv: list | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(
        description="Run a hyperparameter grid of experiments/glue.py runs (resumable).",
        epilog="Arguments after -- are passed to every glue.py command.",
    )
    ap.add_argument("--task", nargs="+", required=True, choices=TASKS)
    ap.add_argument("--method", nargs="+", default=["adalora"], choices=METHODS)
    ap.add_argument(
        "--grid",
        nargs="*",
        default=[],
        metavar="KEY=V1,V2",
        help="grid axes; keys are glue.py flags with underscores (delta_t=1,10)",
    )
    ap.add_argument(
        "--schedules",
        nargs="+",
        default=None,
        choices=CHOICES["schedule"],
        help="shortcut for --grid schedule=...",
    )
    ap.add_argument("--seeds", nargs="+", type=int, default=[1])
    ap.add_argument("--output-dir", default="results/runs/ablations")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args(argv)
    try:
        grid = parse_grid(args.grid, args.schedules)
        check_extra(extra)
    except GridError as e:
        ap.error(str(e))
    out_dir = Path(args.output_dir)
    runs = plan(args.task, args.method, grid, args.seeds, _display_dir(args.output_dir), extra)
    failures, done, skipped = [], 0, 0
    for i, (name, cmd) in enumerate(runs, 1):
        tag = f"[{i}/{len(runs)}] {name}"
        if (out_dir / f"{name}.json").exists():
            print(f"{tag}: skip (result exists)", flush=True)
            skipped += 1
            continue
        print(f"{tag}: {shlex.join(cmd)}", flush=True)
        if args.dry_run:
            continue
        try:
            rc = subprocess.run(cmd, cwd=str(ROOT), check=False).returncode
        except OSError as e:
            rc = f"could not start ({e})"
        if rc != 0:
            failures.append((name, f"exit status {rc}"))
        elif not (out_dir / f"{name}.json").exists():
            failures.append((name, f"exited 0 but wrote no {out_dir / (name + '.json')}"))
        else:
            done += 1
    print(
        f"{len(runs)} runs: {done} ran, {skipped} skipped, {len(failures)} failed"
        + (" (dry run)" if args.dry_run else ""),
        flush=True,
    )
    if failures:
        print("FAILED:", file=sys.stderr)
        for name, why in failures:
            print(f"  {name}: {why}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
