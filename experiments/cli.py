"""The runners' entry point: command line -> frozen config (experiments/config.py) -> checks ->
training (experiments/train.py). glue.py and summarization.py call ``main`` with their config
class, presets, task, file and module doc."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from experiments.config import ROOT, RunConfig, build_parser, resolve


def main(
    config_cls: type[RunConfig],
    presets: dict[str, Callable[[str, str], dict]],
    make_task: Callable,
    runner: str,
    doc: str,
    argv: list[str] | None = None,
) -> dict | None:
    """Parse the flags, resolve the config (``presets``: name -> (task, method) -> {field:
    value}), check it, build the task
    (``make_task(cfg) -> train.Task``) and run it. ``runner``: the runner's file (the program
    name in messages and in the recorded command); ``doc``: its module doc (the first line
    describes it in --help). Every bad flag, value or file: one line on stderr, exit status 2,
    nothing written."""
    from experiments import train
    from experiments.validation import checks

    explicit_argv = argv is not None
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(config_cls, doc.splitlines()[0])
    parser.prog = Path(runner).name  # glue.py: error: ... (also when called in-process)
    flags = vars(parser.parse_args(argv))
    prog = sys.argv[0]
    if explicit_argv:  # called in-process (glue.main([...])): record the runner, not the caller
        prog = runner
        prog = os.path.relpath(prog, ROOT) if Path(prog).resolve().is_relative_to(ROOT) else prog
    try:
        cfg = resolve(config_cls, presets, flags)
        task = make_task(cfg)
        checks.check_flags(cfg, task.kind)
        unused = checks.unused_flags(cfg)
        if unused:
            print(f"note: --method {cfg.method} does not use {', '.join(unused)}", file=sys.stderr)
        return train.run(task, cfg, [prog] + argv)
    except checks.BadInput as e:
        parser.exit(2, f"{parser.prog}: error: {e.line()}\n")
