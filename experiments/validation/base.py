"""What every input check shares (checks.py, inputs.py, model.py here; scripts/checks.py): the
one-line ``BadInput``, a hyperparameter's flag and the write probe of an output folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class BadInput(ValueError):
    """A flag, hyperparameter or file the run cannot use; ``line()`` is the one-line message."""

    def __init__(self, flag: str, value, problem: str, fix: str = ""):
        self.flag, self.value, self.problem, self.fix = flag, value, problem, fix
        super().__init__(self.line())

    def line(self) -> str:
        head = self.flag if self.value is None or self.value == "" else f"{self.flag} {self.value}"
        return one_line(f"{head}: {self.problem}" + (f"; {self.fix}" if self.fix else ""))


def one_line(text: str) -> str:
    """Any text as one line: every run of whitespace (line breaks too) becomes one space."""
    return " ".join(str(text).split())


def flag(key: str) -> str:
    """The flag of a config field: batch_size -> --batch-size."""
    return "--" + key.replace("_", "-")


def given(cfg, key: str) -> bool:
    """Whether the flag was passed (not left to the preset)."""
    return key in cfg.given


def _shown(cfg, key: str, value) -> str:
    """A value as the message shows it: as given, or marked as the preset's."""
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if given(cfg, key) else f"{text} (the {cfg.preset} preset's value)"


def bad(cfg, key: str, value, problem: str, fix: str = "") -> BadInput:
    """The BadInput of config field ``key`` (``cfg``: the run's config, experiments/config.py)."""
    shown = None if value is None or value == "" else _shown(cfg, key, value)
    return BadInput(flag(key), shown, problem, fix)


def writable_folder(path, shown_flag: str) -> None:
    """``path`` is a folder the run can write into, or can create: a temp file is made (and
    removed) in it, or in its nearest existing ancestor when it is not there yet (os.access
    misreads read-only mounts and ACLs); nothing is left behind. Raises BadInput."""
    probe = Path(os.path.abspath(path))
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise BadInput(shown_flag, path, f"{probe} is a file, not a folder", "pass a folder path")
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".adalora-write-check-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise BadInput(
            shown_flag,
            path,
            f"cannot write in {probe} ({e.strerror or e})",
            "pass a folder you can write to",
        ) from None
