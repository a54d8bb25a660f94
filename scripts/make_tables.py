#!/usr/bin/env python
"""Regenerate ``paper_tables.md`` (the paper's numbers next to ours) from result files.

    python scripts/make_tables.py [--results results/evidence] [--out paper_tables.md]
                                  [--figures results/figures] [--discussion results/discussion.md]
                                  [--shared-lr LR] [--check] [--skip-invalid]
                                  [--wandb ENTITY/PROJECT]

Reads every ``adalora.result/1`` record under --results, recursively (which files are records:
below). The default is the committed evidence (results/evidence/), so runs of your own
(results/runs/, not committed) change nothing until you pass ``--results results/runs`` (with
another --out) or move them into the evidence.
Files under a folder named ``converged`` (results/evidence/converged/{calibration,sweep,seeds,
ablations}/) make the converged section, which leads the file (final evaluation, selected
setting per method, Welch 95% verdicts; scripts/report/converged.py); every other file (the
short-run grid, results/evidence/short/) makes the short-run section after it, and the two never
read each other's runs.
Runs are grouped by (model, task, method, variant, budget level, learning rate); cells show
mean ± std (n) over seeds of the runs with status "ok", and runs with any other status (e.g.
"diverged") are counted in the cell, never dropped silently. Output is deterministic (sorted,
no timestamps); ``--check`` exits 1 when the existing file differs from what would be generated
(figures are not rendered in --check mode). The report itself is built by scripts/report/.

Evidence is read strictly (scripts/report/evidence.py): every ``*.json`` under --results outside
logs/, checkpoints/, wandb/, bench/ folders and hidden files is a result record and must parse
into a valid one, else the run stops with ``make_tables.py: error: <file> <field>: <problem>;
<fix>`` (exit status 2, nothing written); ``--skip-invalid`` leaves such files out instead, each
listed on stderr with a count. A --results folder that does not exist or holds no record, and
any other bad flag (an output path that cannot be written, a --shared-lr no run has), are errors
in the same form, before anything is written.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from pathlib import Path

from experiments.validation.base import BadInput
from scripts.report.document import REGEN_COMMAND, generate, read_discussion
from scripts.report.evidence import record_files
from scripts.report.figures import render_figures
from scripts.report.records import load_runs
from scripts.report.wandb_import import fetch_wandb

ROOT = Path(__file__).resolve().parents[1]
# evidence/ (committed result files), runs/ (your runs, git-ignored), figures/, discussion.md
RESULTS = ROOT / "results"
PROG = "make_tables.py"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its errors on one line (``make_tables.py: error: <message>``, exit 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (--help lists the flags)\n")


def build_parser(root: Path) -> ArgumentParser:
    ap = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--results",
        default=str(root / "evidence"),
        help="result files, read recursively (default: results/evidence)",
    )
    ap.add_argument(
        "--out", default=str(ROOT / "paper_tables.md"), help="(default: paper_tables.md)"
    )
    ap.add_argument(
        "--figures", default=str(root / "figures"), help="figure dir (default: results/figures)"
    )
    ap.add_argument(
        "--discussion",
        default=None,
        help="hand-written discussion to include (default: results/discussion.md, if present)",
    )
    ap.add_argument(
        "--shared-lr",
        type=float,
        default=None,
        help="LR for the shared-LR rows (default: chosen per task, see the file)",
    )
    ap.add_argument(
        "--check", action="store_true", help="exit 1 if --out differs from what would be generated"
    )
    ap.add_argument(
        "--skip-invalid",
        action="store_true",
        help="leave out invalid result files (each listed on stderr) instead of stopping",
    )
    ap.add_argument(
        "--wandb",
        default=None,
        metavar="ENTITY/PROJECT",
        help="also pull runs from this W&B project (needs network)",
    )
    return ap


def check_output(flag: str, path: Path, folder: bool, write: bool) -> None:
    """``path`` is (or can become) a file (a folder when ``folder``), writable when ``write``."""
    kind, other = ("a folder", "a file") if folder else ("a file", "a folder")
    fix = f"pass {flag} {'DIR' if folder else 'FILE'} where you can write {kind}"
    if path.exists():
        if path.is_dir() != folder:
            raise BadInput(flag, path, f"is {other}, not {kind}", fix)
        if write and not os.access(path, os.W_OK):
            raise BadInput(flag, path, "is not writable", fix)
        return
    above = next(p for p in path.absolute().parents if p.exists())
    if write and not above.is_dir():
        raise BadInput(flag, path, f"cannot be created: {above} is a file, not a folder", fix)
    if write and not os.access(above, os.W_OK | os.X_OK):
        raise BadInput(flag, path, f"cannot be created: {above} is not writable", fix)


def check_flags(args: argparse.Namespace) -> None:
    """Every flag that can be checked before reading the evidence; raises BadInput."""
    results = Path(args.results)
    fix = "pass the folder holding the result files (default: results/evidence)"
    if not results.exists():
        raise BadInput("--results", results, "no such folder", fix)
    if not results.is_dir():
        raise BadInput("--results", results, "is a file, not a folder", fix)
    if not record_files(results):
        raise BadInput(
            "--results",
            results,
            "holds no result file (*.json outside logs/, checkpoints/, wandb/, bench/)",
            "pass the folder your runs wrote to (glue.py --output-dir)",
        )
    check_output("--out", Path(args.out), folder=False, write=not args.check)
    check_output("--figures", Path(args.figures), folder=True, write=not args.check)
    if args.discussion is not None:
        d = Path(args.discussion)
        if not d.is_file():
            why = "is a folder" if d.is_dir() else "no such file"
            raise BadInput("--discussion", d, why, "pass the discussion file or leave it out")
    lr = args.shared_lr
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        fix = "pass a learning rate such as 1e-3, or leave --shared-lr out"
        raise BadInput("--shared-lr", f"{lr:g}", "must be a positive finite number", fix)
    if args.wandb is not None and not re.fullmatch(r"[^/\s]+/[^/\s]+", args.wandb):
        raise BadInput(
            "--wandb", args.wandb, "is not ENTITY/PROJECT", "pass e.g. --wandb me/adalora"
        )


def discussion_text(path: Path) -> str:
    """The discussion file's text ("" when absent); BadInput when it is not UTF-8."""
    try:
        if path.is_file():
            path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        problem = f"is not UTF-8 text (byte at offset {e.start})"
        raise BadInput("--discussion", path, problem, "save it as UTF-8") from None
    return read_discussion(path)


def check_shared_lr(lr: float | None, runs: list) -> None:
    """--shared-lr names an LR that some short-run GLUE LoRA or AdaLoRA run has."""
    if lr is None:
        return
    lrs = {
        r.lr
        for r in runs
        if r.kind == "glue"
        and r.method in ("lora", "adalora")
        and not r.converged
        and r.lr is not None
    }
    if not any(math.isclose(lr, x, rel_tol=1e-9) for x in lrs):
        have = ", ".join(f"{x:g}" for x in sorted(lrs)) or "none"
        raise BadInput(
            "--shared-lr",
            f"{lr:g}",
            f"no short-run GLUE LoRA or AdaLoRA run has this learning rate (theirs: {have})",
            "pass one of theirs, or leave --shared-lr out",
        )


def read_runs(args: argparse.Namespace) -> list:
    """The runs of --results (and --wandb); with --skip-invalid, invalid ones are listed on
    stderr and left out (at least one valid run must remain)."""
    skipped: list[BadInput] = []

    def skip(e: BadInput) -> None:
        skipped.append(e)
        why = BadInput(e.flag, e.value, e.problem).line()  # the fix is --skip-invalid itself
        print(f"{PROG}: warning: --skip-invalid: left out {why}", file=sys.stderr)

    hook = skip if args.skip_invalid else None
    runs = load_runs(args.results, hook)
    if not runs:
        raise BadInput(
            "--results",
            args.results,
            f"none of its {len(skipped)} result files is valid (each listed above)",
            "fix them or pass another folder",
        )
    if args.wandb:
        local = {r.name for r in runs}
        runs += [r for r in fetch_wandb(args.wandb, hook) if r.name not in local]
    if skipped:
        print(
            f"{PROG}: warning: --skip-invalid: left out {len(skipped)} invalid "
            f"record{'s' if len(skipped) != 1 else ''} (listed above); the tables do not count "
            "them",
            file=sys.stderr,
        )
    return runs


def main(argv: list | None = None, results_root: Path = RESULTS) -> int:
    """Command line; ``results_root`` is the layout the defaults point into. Returns the exit
    status: 0, 1 (--check: out of date) or 2 (bad input, nothing written)."""
    root = Path(results_root)
    args = build_parser(root).parse_args(argv)
    out = Path(args.out)
    try:
        check_flags(args)
        runs = read_runs(args)
        check_shared_lr(args.shared_lr, runs)
        discussion = discussion_text(Path(args.discussion or root / "discussion.md"))
    except BadInput as e:
        print(f"{PROG}: error: {e.line()}", file=sys.stderr)
        return 2
    text, specs = generate(runs, out, Path(args.figures), discussion, args.shared_lr)
    if args.check:
        current = out.read_text() if out.exists() else None
        if current != text:
            why = "does not exist" if current is None else "is out of date"
            print(f"{out} {why}: regenerate with `{REGEN_COMMAND}` and commit it.", file=sys.stderr)
            return 1
        print(f"{out} is up to date ({len(runs)} runs).")
        return 0
    render_figures(specs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out} ({len(runs)} runs, {len(specs)} figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
