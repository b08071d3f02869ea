"""Progress on long loops, and how long a stage took: tqdm on a terminal, and one plain
line per update (at most every LOG_EVERY seconds) in a log (CI, `dvc repro > log`),
where a bar's carriage returns would pile up into one unreadable line."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
LOG_EVERY = 10.0  # seconds between lines when stderr is not a terminal


class _Lines:
    """A file for tqdm that writes each refresh as its own line."""

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            print(text, file=sys.stderr, flush=True)

    def flush(self) -> None:
        sys.stderr.flush()


def bar(
    items: Iterable[T] | None, desc: str, total: int | None = None, unit: str = "it"
) -> Iterator[T]:
    """`items` with a progress bar (count, rate, time left) on stderr; with `items` None, a
    bar of `total` steps that the caller advances (`update()`)."""
    from tqdm import tqdm

    terminal = sys.stderr.isatty()
    return tqdm(
        items,
        desc=desc,
        total=total,
        unit=unit,
        file=sys.stderr if terminal else _Lines(),
        mininterval=0.5 if terminal else LOG_EVERY,
        dynamic_ncols=terminal,
        ncols=None if terminal else 100,
    )


def eta(seconds: float) -> str:
    """Seconds left, as a person reads them."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
