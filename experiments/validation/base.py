"""What every input check shares (checks.py, inputs.py, model.py here; scripts/checks.py): the
one-line ``BadInput`` and a hyperparameter's flag."""

from __future__ import annotations


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
