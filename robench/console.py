"""What robench shows while it works: progress bars on a terminal, plain lines in a log.

A bar redrawn in place is useful on a terminal and noise in a log file (a tiny run's log used to
be 25 KB of bar frames), so bars are drawn only when stderr is a terminal; the one-line summaries
(one per epoch, one per metric) are printed either way, unless progress is off altogether.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def bar(iterable: Iterable[Any] | None = None, *, progress: bool, **options: Any) -> tqdm:
    """A tqdm bar over ``iterable`` (or a manual one); drawn with ``progress`` on a terminal."""
    return tqdm(iterable, disable=not (progress and sys.stderr.isatty()), **options)


def say(line: str, progress: bool = True) -> None:
    """A one-line summary, printed above any bar that is drawn (stdout)."""
    if progress:
        tqdm.write(line)
