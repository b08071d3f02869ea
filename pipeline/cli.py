"""`thaw`: the command line around the DVC pipeline.

    thaw check     validate params.yaml and say what the pipeline will run
    thaw status    each backbone's study: trials finished, best so far
    thaw run       the same as `dvc repro`

Run it from the project root (where params.yaml and dvc.yaml are).
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from pipeline.config import Params, load_params
from pipeline.errors import ThawError


def check(params: Params) -> int:
    names = ", ".join(params.backbones)
    print(
        f"params.yaml is valid: dataset {params.data.dataset} at {params.data.image_size} px; "
        f"backbones {names}; {params.sweep.n_trials} completed trials each, at least "
        f"{params.sweep.min_trials_per_strategy} per strategy."
    )
    return 0


def status(params: Params) -> int:
    """Progress of each backbone's study, read from its storage."""
    import optuna

    from pipeline import studies

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name in params.backbones:
        pointer = studies.read_pointer(name)
        if pointer is None:
            print(f"{name}: not started (run `dvc repro` or `dvc repro sweep@{name}`)")
            continue
        url = studies.storage_url(params.sweep.storage, name)
        try:
            study = optuna.load_study(study_name=pointer["study_name"], storage=url)
        except KeyError:
            print(f"{name}: study {pointer['study_name']} not found in {pointer['storage']}")
            continue
        states: dict[str, int] = {}
        for trial in study.get_trials(deepcopy=False):
            states[trial.state.name] = states.get(trial.state.name, 0) + 1
        state_text = ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))
        complete = states.get("COMPLETE", 0)
        line = (
            f"{name}: {complete}/{params.sweep.n_trials} completed trials "
            f"({state_text or 'no trials'}; at most {params.sweep.trial_cap} finished)"
        )
        complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if complete:
            best = max(complete, key=lambda t: t.value)
            line += (
                f"; best val accuracy {best.value:.3f} (trial {best.number}: "
                f"{best.user_attrs.get('plan')}, head {best.params.get('head_units')}, "
                f"lr {best.params.get('learning_rate', 0):.1e}, "
                f"{best.user_attrs.get('trainable_params', 0):,} trainable parameters)"
            )
        print(line)
    return 0


def run(_: Params) -> int:
    return subprocess.call(["dvc", "repro"])


COMMANDS = {"check": check, "status": status, "run": run}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="thaw",
        description="Which pretrained backbone, how much of it frozen, with what head and "
        "learning rate: accuracy against trainable parameters and accelerator time.",
        epilog="The pipeline itself runs with `dvc repro`; results land in reports/.",
    )
    parser.add_argument(
        "--params", default="params.yaml", help="params file (default: %(default)s)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="validate params.yaml")
    sub.add_parser("status", help="each study's progress and best trial so far")
    sub.add_parser("run", help="run the pipeline (dvc repro)")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        return COMMANDS[args.command](params)
    except ThawError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
