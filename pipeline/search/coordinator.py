"""A backbone's sweep: the coordinator that creates the study, starts local workers and
waits for the budget; `thaw worker`, which joins it; and the results DVC tracks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from pipeline.config import Params
from pipeline.data import datasets
from pipeline.errors import ThawError
from pipeline.paths import MANIFEST, MODELS_DIR
from pipeline.screen import decision
from pipeline.search import budget, storage, studies, urls, workers
from pipeline.search.objective import Progress, run_trial
from pipeline.search.pruning import make_pruner
from pipeline.train.context import MB, Contexts, effective_search, manifest_sizes


def study_inputs(name: str, params: Params, meta: dict) -> dict:
    inputs = studies.identity(
        meta["sha256"], datasets.file_digest(MANIFEST), effective_search(params, name), params.seed
    )
    sizes = decision.screened_sizes(name, manifest_sizes(datasets.read_manifest(MANIFEST)))
    # only when the screen narrowed them: a study of every size keeps its name
    return inputs if sizes is None else {**inputs, "screened_sizes": list(sizes)}


def swept_contexts(name: str, params: Params, manifest: dict) -> Contexts:
    """The backbone's contexts at the sizes the screen kept for its sweep."""
    sizes = decision.screened_sizes(name, manifest_sizes(manifest))
    return Contexts(name, params, manifest, sizes=sizes)


def read_meta(name: str) -> dict:
    path = MODELS_DIR / name / "meta.json"
    if not path.is_file():
        raise ThawError(
            f"{path} not found: this machine lacks the backbone stage's output. Run `dvc pull` "
            f"(or `dvc repro backbone@{name}`) at the coordinator's commit first."
        )
    return json.loads(path.read_text())


def open_study(name: str, params: Params, meta: dict):
    """The coordinator's study: created (with the schema) once; workers only load it."""
    import optuna

    url = storage.url_for(params.sweep.storage, name)
    inputs = study_inputs(name, params, meta)
    study = optuna.create_study(
        study_name=studies.study_name(name, inputs),
        storage=_storage(url, params, create=True),
        direction="maximize",
        sampler=workers.make_sampler(params.seed),
        pruner=_pruner(params),
        load_if_exists=True,
    )
    study.set_user_attr("inputs", inputs)
    study.set_user_attr("code", studies.code_digest())
    studies.write_pointer(name, study.study_name, url)
    return study


def _storage(url: str, params: Params, create: bool):
    return storage.open_storage(
        url,
        create=create,
        heartbeat=params.sweep.heartbeat_seconds,
        grace=params.sweep.lost_after_seconds,
        outage_limit=params.sweep.outage_seconds,
    )


def _pruner(params: Params):
    return make_pruner(
        params.sweep.pruner, params.search.max_epochs, params.sweep.min_trials_per_strategy
    )


def local_worker_env(index: int, gpus: list[str]) -> dict[str, str]:
    """Worker `index`'s environment: one accelerator each, round robin over `gpus`
    (CUDA_VISIBLE_DEVICES's entries, or the GPUs TensorFlow sees)."""
    env = dict(os.environ, **{workers.PARENT_ENV: str(os.getpid())})
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    return env


def _visible_gpus() -> list[str]:
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g for g in listed.split(",") if g.strip()]
    import tensorflow as tf

    return [str(i) for i in range(len(tf.config.list_physical_devices("GPU")))]


class LocalWorkers:
    """The N - 1 `thaw worker` processes the stage starts beside itself."""

    def __init__(self, name: str, count: int):
        gpus = _visible_gpus() if count else []
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "worker", name, "--worker-id", str(i)],
                env=local_worker_env(i, gpus),
                # A terminal's Ctrl-C (or a scheduler's group signal) reaches only the
                # stage, which forwards it once: a worker seeing it twice would abandon
                # its trial on the first Ctrl-C.
                start_new_session=True,
            )
            for i in range(1, count + 1)
        ]
        self.reported: set[int] = set()

    def signal(self, signum: int) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    def watch(self) -> None:
        for i, proc in enumerate(self.procs, start=1):
            code = proc.poll()
            if code not in (None, 0) and i not in self.reported:
                self.reported.add(i)
                print(
                    f"[sweep] local worker {i} exited with status {code}; the others go on",
                    file=sys.stderr,
                    flush=True,
                )

    def finish(self, failed: bool) -> None:
        """Wait for the workers to end. The stage failed: stop them first (one SIGTERM,
        so each finishes its running trial), or they would sweep on unwatched."""
        if failed:
            self.signal(signal.SIGTERM)
        for proc in self.procs:
            proc.wait()
        self.watch()


def run_trials(study, contexts: Contexts, name: str, params: Params, who: str, stop, **loop) -> int:
    """This process's share of the study's trials, for the coordinator and for
    `run_worker`: the worker loop (workers.run_until_budget) around run_trial."""
    # surgical's start-up covers every window start: the segments of the backbone
    starts = len(contexts.first.info.segments) if "surgical" in params.search.strategies else 0
    quota = budget.Budget.of(params, starts)
    return workers.run_until_budget(
        study,
        lambda trial: run_trial(trial, contexts),
        quota,
        who=who,
        stop=stop,
        grace=params.sweep.lost_after_seconds,
        callbacks=[Progress(name, quota, params.sweep.max_failures, who)],
        **loop,
    )


def sweep(name: str, params: Params, manifest: dict):
    """The coordinator: create the study, start local workers, run trials as worker 0,
    and return once the study holds its budget with nothing running or queued."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    contexts = swept_contexts(name, params, manifest)
    meta = read_meta(name)
    study = open_study(name, params, meta)
    quota = budget.Budget.of(params)
    already = studies.count_finished(study)
    if already:
        print(
            f"[sweep {name}] resuming study {study.study_name}: {already} finished trials kept",
            file=sys.stderr,
        )
    local = LocalWorkers(name, params.sweep.workers - 1)
    who = workers.label()
    stop = workers.StopSignal(who, forward=local.signal).install()
    failed = True
    try:
        run_trials(
            study, contexts, name, params, who, stop, wait_for_running=True, watch=local.watch
        )
        failed = False
    finally:
        local.finish(failed)
    if stop.requested is not None:
        how = "interrupted" if stop.requested == signal.SIGINT else "stopped by a signal"
        raise ThawError(
            f"sweep {name} {how}: {studies.count_finished(study)} finished trials kept; "
            "run `dvc repro` again to resume"
        )
    print(
        f"[sweep {name}] done: {workers.summary(study.get_trials(deepcopy=False), quota)}",
        file=sys.stderr,
    )
    for ctx in contexts.loaded():
        stats = ctx.cache.stats
        print(
            f"[sweep {name}] {ctx.size} px: activation cache: {stats.computed} arrays "
            f"computed in {stats.seconds:.1f} s, {stats.memory_hits} memory and "
            f"{stats.disk_hits} disk hits, {stats.memory_bytes / MB:.1f} MB in memory, "
            f"{stats.disk_bytes / MB:.1f} MB written; train steps: {ctx.pool.stats.traced} "
            f"traced, {ctx.pool.stats.reused} reused",
            file=sys.stderr,
        )
    return study, meta


def run_worker(name: str, params: Params, worker_id: int | None, wait: float) -> int:
    """`thaw worker <name>` (on any machine, or one of the stage's local workers): join
    the backbone's study and run trials until its budget; the process's exit status."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    workers.die_with_parent()  # a local worker: not one trial after its stage is killed
    who = workers.label()
    meta = read_meta(name)
    inputs = study_inputs(name, params, meta)
    url = storage.url_for(params.sweep.storage, name)
    stop = workers.StopSignal(who).install()
    seed = workers.sampler_seed(params.seed, worker_id, who)
    study = workers.join_study(
        lambda: _storage(url, params, create=False),
        studies.study_name(name, inputs),
        name,
        inputs,
        studies.code_digest(),
        sampler=workers.make_sampler(seed),
        pruner=_pruner(params),
        who=who,
        wait=wait,
        stop=stop,
    )
    if study is None:
        return 128 + (stop.requested or 0)
    print(
        f"[worker {who}] joined study {study.study_name} in {urls.mask(url)} (sampler seed {seed})",
        file=sys.stderr,
        flush=True,
    )
    manifest = datasets.read_manifest(MANIFEST)
    contexts = swept_contexts(name, params, manifest)
    ran = run_trials(study, contexts, name, params, who, stop)
    if stop.requested is not None:
        print(
            f"[worker {who}] stopped after {ran} trial(s); the study keeps every finished one",
            file=sys.stderr,
        )
        return 128 + stop.requested
    print(
        f"[worker {who}] budget met after {ran} trial(s) of mine: "
        f"{workers.summary(study.get_trials(deepcopy=False), budget.Budget.of(params))}",
        file=sys.stderr,
    )
    return 0


def write_results(name: str, study, meta: dict, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    table = studies.trials_table(study, name)
    table.to_csv(out / "trials.csv", index=False)
    best = budget.best_trial(study.get_trials(deepcopy=False))
    if best is None:
        raise ThawError(f"sweep {name}: no trial completed; see fail_reason in trials.csv")
    row = table[table.trial == best.number].iloc[0]
    summary = {
        "backbone": name,
        "arch": meta["arch"],
        "weights": meta["weights"],
        "study_name": study.study_name,
        "trial": int(best.number),
        "params": best.params,
        "strategy": best.params.get("strategy"),
        "plan": best.user_attrs.get("plan"),
        "val_accuracy": float(best.value),
        "trainable_params": int(row.trainable_params),
        "max_trainable_params": int(row.max_trainable_params),
        "total_params": int(row.total_params),
        "device": row.device,
        "device_kind": row.device_kind,
        "device_seconds": float(row.device_seconds),
        "trials": table.state.value_counts().to_dict(),
    }
    (out / "best.json").write_text(json.dumps(summary, indent=1) + "\n")
    importances = studies.importances(study, seed=0)
    (out / "importances.json").write_text(json.dumps(importances, indent=1) + "\n")
    return summary
