"""`thaw`: the command line around the DVC pipeline.

    thaw check                       validate params.yaml and say what the pipeline will run
    thaw status                      each backbone's study: trials, workers, best so far
    thaw run                         the same as `dvc repro`
    thaw worker <backbone>           join the backbone's study and run trials until its budget
    thaw studies copy <backbone> --to URL   move a study (every trial) to another storage
    thaw predict <image or folder>...   classify images with models/recommended/

Run it from the project root (where params.yaml and dvc.yaml are).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from pipeline.config import Params
from pipeline.errors import ParamsError, ThawError
from pipeline.paths import RECOMMENDED_DIR
from pipeline.preflight import dataset_class_names, load_params


def check(params: Params, _args) -> int:
    from pipeline.search import urls

    names = ", ".join(params.backbones)
    where = urls.mask(urls.env_url() or params.sweep.storage)
    sizes = "/".join(map(str, params.data.sizes))
    print(
        f"params.yaml is valid: dataset {params.data.dataset} at {sizes} px; "
        f"backbones {names}; {params.sweep.n_trials} completed trials each, at least "
        f"{params.sweep.min_trials_per_strategy} per strategy; studies in {where} with "
        f"{params.sweep.workers} local worker(s)."
    )
    if params.data.dataset == "folder":
        names = dataset_class_names("folder", params.data.folder)
        source = [names[c] for c in params.data.source_classes] or "none (no source task)"
        target = [names[c] for c in params.data.target_classes]
        print(f"image folder {params.data.folder}: source classes {source}; target {target}")
    return 0


def _open_study(params: Params, name: str):
    """The backbone's study named by its pointer, read only; None with a line saying why."""
    import optuna

    from pipeline.paths import MODELS_DIR
    from pipeline.search import storage, studies, urls

    pointer = studies.read_pointer(name)
    if pointer is None and (MODELS_DIR / name / "meta.json").is_file():  # a worker's machine
        from pipeline.search import coordinator

        meta = coordinator.read_meta(name)
        pointer = {
            "study_name": studies.study_name(name, coordinator.study_inputs(name, params, meta))
        }
    if pointer is None:
        from pipeline.screen import decision

        if decision.screened_out(name):
            print(f"{name}: screened out before its sweep (results/screen/pairs.csv ranks it)")
            return None
        print(f"{name}: not started (run `dvc repro` or `dvc repro sweep@{name}`)")
        return None
    url = storage.url_for(params.sweep.storage, name)
    try:
        return optuna.load_study(
            study_name=pointer["study_name"],
            storage=storage.open_storage(url, create=False, outage_limit=10),
        )
    except (KeyError, storage.NoSchemaYet):
        print(f"{name}: study {pointer['study_name']} not found in {urls.mask(url)}")
        return None


def status(params: Params, _args) -> int:
    """Progress of each backbone's study, read from its storage: any worker's trials."""
    import optuna

    from pipeline.search import budget, workers

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quota = budget.Budget.of(params)
    for name in params.backbones:
        study = _open_study(params, name)
        if study is None:
            continue
        trials = study.get_trials(deepcopy=False)
        line = f"{name} ({study.study_name}): {workers.summary(trials, quota)}"
        best = budget.best_trial(trials)
        if best is not None:
            line += (
                f"; best trial {best.number}: {best.user_attrs.get('plan')}, head "
                f"{best.params.get('head_units')}, lr {best.params.get('learning_rate', 0):.1e}, "
                f"{best.user_attrs.get('trainable_params', 0):,} trainable parameters"
            )
        print(line)
    return 0


def run(_: Params, _args) -> int:
    return subprocess.call(["dvc", "repro"])


def worker(params: Params, args) -> int:
    from pipeline import quiet_tf
    from pipeline.search import coordinator

    quiet_tf.load()
    if args.backbone not in params.backbones:
        raise ParamsError(
            f"backbone {args.backbone!r} is not in params.yaml; known: {sorted(params.backbones)}"
        )
    return coordinator.run_worker(args.backbone, params, args.worker_id, args.wait)


def copy_study(params: Params, args) -> int:
    """Copy a backbone's study, every trial with its state and attributes, to `--to`."""
    import optuna

    from pipeline.search import storage, urls

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    source = _open_study(params, args.backbone)
    if source is None:
        return 1
    try:
        target_url = urls.check_url(args.to, password_allowed=False)
    except ValueError as exc:
        raise ThawError(f"--to {urls.mask(args.to)!r}: {exc}") from None
    # --to as given: THAW_STORAGE names the source here, not the target
    target = storage.open_storage(storage.location(target_url, args.backbone), create=True)
    if source.study_name in {s.study_name for s in target.get_all_studies()}:
        raise ThawError(
            f"{urls.mask(target_url)} already holds study {source.study_name}; nothing copied"
        )
    optuna.copy_study(
        from_study_name=source.study_name,
        from_storage=source._storage,
        to_storage=target,
        to_study_name=source.study_name,
    )
    copied = optuna.load_study(study_name=source.study_name, storage=target)
    print(
        f"copied study {source.study_name}: {len(copied.trials)} trials to "
        f"{urls.mask(target_url)}. Set sweep.storage to that URL in params.yaml (or "
        f"{urls.ENV_VAR}) and `dvc repro` resumes it there."
    )
    return 0


def predict(_: Params, args) -> int:
    from pipeline.winner import predict as predicting

    return predicting.run(Path(args.model), args.paths, top=args.top, as_csv=args.csv)


def compact_weights(_: Params, args) -> int:
    from pipeline.models import weights_file

    try:
        weights_file.compact(args.source, args.target)
    except (OSError, ValueError) as exc:
        raise ThawError(f"{args.source}: {exc}") from None
    before, after = Path(args.source).stat().st_size, Path(args.target).stat().st_size
    print(
        f"wrote {args.target}: {after / 1e6:.1f} MB ({before / 1e6:.1f} MB in float32), large "
        "kernels in 8 bits, small ones in 16; `weights:` takes it like the original"
    )
    return 0


COMMANDS = {
    "predict": predict,
    "compact-weights": compact_weights,
    "check": check,
    "status": status,
    "run": run,
    "worker": worker,
    "copy": copy_study,
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="thaw",
        description="Which pretrained backbone, how much of it frozen, with what head and "
        "learning rate: accuracy against trainable parameters and accelerator time.",
        epilog="The pipeline itself runs with `dvc repro`; results land in reports/.",
    )
    top.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="validate params.yaml")
    sub.add_parser("status", help="each study's progress across workers and best trial so far")
    sub.add_parser("run", help="run the pipeline (dvc repro)")
    w = sub.add_parser("worker", help="run a backbone's trials beside `dvc repro`, any machine")
    w.add_argument("backbone", help="a key of `backbones` in params.yaml")
    w.add_argument(
        "--worker-id",
        type=int,
        default=None,
        help="seeds this worker's sampler (e.g. $SLURM_ARRAY_TASK_ID); default: host and pid",
    )
    w.add_argument(
        "--wait",
        type=float,
        default=3600,
        help="seconds to wait for the coordinator to create the study (default: %(default)s)",
    )
    p = sub.add_parser("predict", help="classify images with models/recommended/model.keras")
    p.add_argument(
        "--model",
        default=str(RECOMMENDED_DIR),
        help="a folder with model.keras and card.json (default: %(default)s, the recommendation)",
    )
    p.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("--top", type=int, default=3, help="classes shown per image (default 3)")
    p.add_argument("--csv", action="store_true", help="a CSV table: every class's probability")
    k = sub.add_parser(
        "compact-weights",
        help="store a keras.applications weights file in 8 and 16 bits (about 3x smaller)",
    )
    k.add_argument("source", help="a weights-only .h5 as keras.applications publish it")
    k.add_argument("target", help="the .h5 to write")
    s = sub.add_parser("studies", help="manage studies").add_subparsers(
        dest="action", required=True
    )
    c = s.add_parser("copy", help="copy a backbone's study to another storage (e.g. PostgreSQL)")
    c.add_argument("backbone")
    c.add_argument(
        "--to", required=True, help="target URL, without a password (docs/scaling-out.md)"
    )
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = args.action if args.command == "studies" else args.command
    try:  # predict and compact-weights need no valid params.yaml
        needs_params = command not in ("predict", "compact-weights")
        params = load_params(args.params) if needs_params else None
        return COMMANDS[command](params, args)
    except ThawError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
