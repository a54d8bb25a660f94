"""Local data files that cannot be used: the errors the readers here (glue.py, glue_tsv.py,
summarization.py) raise, and the one read wrapper they share.

``DataError`` is a ValueError whose message names the file (and row);
experiments/validation/checks.py's ``blame`` turns it into the one-line error naming --data-dir.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class DataError(ValueError):
    """A data file that cannot be used: unreadable, empty, malformed, a wrong label. The message
    names the file (and row)."""


class DataFileNotFound(DataError, FileNotFoundError):
    """A data file that is not there (a FileNotFoundError too)."""


def read_data_file(read: Callable[..., T], path: str | os.PathLike, *args) -> T:
    """``read(Path(path), *args)``; a file that is not UTF-8 text or cannot be read raises
    DataError naming ``path`` (a missing file stays a FileNotFoundError)."""
    try:
        return read(Path(path), *args)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except FileNotFoundError:
        raise
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e})") from None
