"""Errors a user can act on: stages print them in one paragraph, without a traceback."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


class ThawError(RuntimeError):
    """Bad input or an environment problem, phrased for the user."""


class ParamsError(ThawError):
    """A params.yaml problem, phrased for the person editing the file."""


def run_main(main: Callable[[], None], tensorflow: bool = True) -> None:
    """Run a stage's main(); a ThawError exits with status 2 and its message only.

    `tensorflow`: the stage uses it, so import it first without its start-up noise.
    Ends with the stage's name and how long it took, TensorFlow's start-up included.
    """
    start = time.perf_counter()
    try:
        if tensorflow:
            from pipeline import quiet_tf

            quiet_tf.load()
        main()
        module = main.__module__
        if module == "__main__":  # `python -m pipeline.stages.sweep`: the module's own name
            module = getattr(sys.modules["__main__"].__spec__, "name", module)
        stage = " ".join([module.rsplit(".", 1)[-1], *sys.argv[1:]])
        print(f"{stage}: done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    except ThawError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C outside a sweep's trials: no traceback
        print(
            "\ninterrupted: finished work is kept (trials in the study, written outputs); "
            "run `dvc repro` again to resume",
            file=sys.stderr,
        )
        sys.exit(130)
