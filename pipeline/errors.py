"""Errors a user can act on: stages print them in one paragraph, without a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable


class ThawError(RuntimeError):
    """Bad input or an environment problem, phrased for the user."""


def run_main(main: Callable[[], None]) -> None:
    """Run a stage's main(); a ThawError exits with status 2 and its message only."""
    try:
        main()
    except ThawError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        sys.exit(2)
