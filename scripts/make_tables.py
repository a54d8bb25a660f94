#!/usr/bin/env python
"""Regenerate ``paper_tables.md`` (the paper's numbers next to ours) from result files.

    python scripts/make_tables.py [--results results/evidence] [--out paper_tables.md]
                                  [--figures results/figures] [--discussion results/discussion.md]
                                  [--shared-lr LR] [--check] [--wandb ENTITY/PROJECT]

Reads every ``adalora.result/1`` JSON under --results, recursively. The default is the committed
evidence (results/evidence/), so runs of your own (results/runs/, not committed) change nothing
until you pass ``--results results/runs`` (with another --out) or move them into the evidence.
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
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scripts.report.document import REGEN_COMMAND, generate, read_discussion
from scripts.report.figures import render_figures
from scripts.report.records import load_runs
from scripts.report.wandb_import import fetch_wandb

ROOT = Path(__file__).resolve().parents[1]
# evidence/ (committed result files), runs/ (your runs, git-ignored), figures/, discussion.md
RESULTS = ROOT / "results"


def main(argv: list | None = None, results_root: Path = RESULTS) -> int:
    """Command line; ``results_root`` is the layout the defaults point into."""
    root = Path(results_root)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--results",
        default=str(root / "evidence"),
        help="result files, read recursively (default: results/evidence)",
    )
    ap.add_argument("--out", default=str(ROOT / "paper_tables.md"))
    ap.add_argument(
        "--figures", default=str(root / "figures"), help="figure dir (default: results/figures)"
    )
    ap.add_argument(
        "--discussion",
        default=str(root / "discussion.md"),
        help="hand-written discussion to include (default: results/discussion.md)",
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
        "--wandb",
        default=None,
        metavar="ENTITY/PROJECT",
        help="also pull runs from this W&B project (needs network)",
    )
    args = ap.parse_args(argv)
    out = Path(args.out)
    runs = load_runs(args.results)
    if args.wandb:
        local = {r.name for r in runs}
        runs += [r for r in fetch_wandb(args.wandb) if r.name not in local]
    text, specs = generate(
        runs, out, Path(args.figures), read_discussion(args.discussion), args.shared_lr
    )
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
