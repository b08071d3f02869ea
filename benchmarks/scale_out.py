"""Scale out past this machine, by simulation: W workers against one real PostgreSQL.

    python -m benchmarks.scale_out [--workers 1 2 4 8 16 32 64] [--trial-seconds 2]
                                   [--trials-per-worker 16] [--together]

Each worker is a process running Thaw's own worker loop (`workers.run_until_budget`: lost-trial
reaping, budget counting, TPE with the constant liar, heartbeats, the resilient
storage with its one-round-trip reads and writes) with a trial simulated by a fixed
sleep, so the workers do not compete for this machine's 2 cores; the sampler and
every storage call are real.

Workers start once all have imported and connected (32 imports take 10 s on 2 cores),
spread over the first trial's length as a scheduler starts them; `--together` starts
them at one instant instead, so that with fixed-length trials all W ask, report and
tell at the same moments for the whole run: the worst case.

Prints, per W:
- trials per minute in steady state (W / the mean time from a worker's trial start to
  its next), and efficiency against W x the one-worker rate; also end to end (first
  start to last finish, which adds the staggered start and the last trials' tail);
- the storage overhead per trial in ms (median and p90 of `study.optimize` wall time
  minus the simulated work: ask, suggestions, epoch reports, tell, heartbeat start);
- the loop's own bookkeeping per trial (reaping, counting, waiting at the end), and
  peak connections.
Targets (issue 11): efficiency >= 90 % and overhead <= 50 ms at 32 workers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.child_processes import start_talking

EPOCHS = 5
STRATEGIES = ("head_only", "freeze_depth", "lp_ft", "gradual", "surgical")


def objective(trial_seconds: float):
    def run(trial) -> float:
        strategy = trial.suggest_categorical("strategy", STRATEGIES)
        trial.suggest_categorical("head_units", [0, 32, 128])
        lr = trial.suggest_float("learning_rate", 1e-4, 3e-2, log=True)
        if strategy != "head_only":
            trial.suggest_float(f"{strategy}_depth", 0.0, 1.0)
        value = 0.5
        for epoch in range(EPOCHS):
            time.sleep(trial_seconds / EPOCHS)
            value = min(1.0, value + lr)
            trial.report(value, epoch)
        return value

    return run


def worker(url: str, study_name: str, seed: int, budget: int, secs: float, stagger: float):
    """One simulated worker process: says it is ready, waits for the start time on
    stdin, runs, and prints its timings as one JSON line."""
    import optuna

    from pipeline.search import budget as budget_mod
    from pipeline.search import storage, workers

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    who = workers.label()
    stop = workers.StopSignal(who)
    store = storage.open_storage(url, create=False, heartbeat=5, grace=20)
    study = optuna.load_study(
        study_name=study_name, storage=store, sampler=workers.make_sampler(seed)
    )
    quota = budget_mod.Budget(budget, 0, budget, ("any",))
    overheads: list[float] = []
    optimize = study.optimize

    def timed(*args, **kwargs):
        began = time.perf_counter()
        optimize(*args, **kwargs)
        overheads.append(time.perf_counter() - began - secs)

    study.optimize = timed
    print("ready", flush=True)  # imported and connected: 32 imports take 10 s on 2 cores
    start_at = float(sys.stdin.readline()) + stagger
    time.sleep(max(0.0, start_at - time.time()))
    began = time.perf_counter()
    workers.run_until_budget(study, objective(secs), quota, who=who, stop=stop, grace=20, poll=0.2)
    loop = time.perf_counter() - began
    print(json.dumps({"overheads": overheads, "loop": loop, "trials": len(overheads)}))


def peak_connections(server, database: str, stop: threading.Event, out: list[int]) -> None:
    while not stop.is_set():
        try:
            out.append(server.connections(database))
        except Exception:
            pass
        stop.wait(0.05)


def measure(server, w: int, per_worker: int, secs: float, together: bool) -> dict:
    import optuna

    from pipeline.search import storage

    database = f"scale_{w}"
    url = server.create_database(database)
    store = storage.open_storage(url, create=True)
    study = optuna.create_study(study_name="sim", storage=store, direction="maximize")
    budget = w * per_worker
    procs = [
        start_talking(
            "benchmarks.scale_out",
            "--worker",
            url,
            "sim",
            str(i),
            str(budget),
            str(secs),
            str(0.0 if together else i * secs / w),
        )
        for i in range(w)
    ]
    for p in procs:  # start together once every worker has imported and connected
        assert p.stdout.readline().strip() == "ready"
    start_at = time.time() + 0.5
    for p in procs:
        p.stdin.write(f"{start_at}\n")
        p.stdin.flush()
    seen: list[int] = []
    stop = threading.Event()
    sampler = threading.Thread(target=peak_connections, args=(server, database, stop, seen))
    sampler.start()
    reports = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    stop.set()
    sampler.join()
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    first = min(t.datetime_start for t in finished)
    last = max(t.datetime_complete for t in finished)
    minutes = (last - first).total_seconds() / 60
    by_worker: dict[str, list] = {}
    for t in finished:
        by_worker.setdefault(t.user_attrs["worker"], []).append(t.datetime_start)
    cycles = [
        (b - a).total_seconds()
        for starts in by_worker.values()
        for a, b in zip(sorted(starts), sorted(starts)[1:], strict=False)
    ]
    overheads = [o for r in reports for o in r["overheads"]]
    total_trials = sum(r["trials"] for r in reports)
    loop_extra = [(r["loop"] - sum(r["overheads"]) - r["trials"] * secs) / max(r["trials"], 1)
                  for r in reports]  # fmt: skip
    return {
        "workers": w,
        "finished": len(finished),
        "budget": budget,
        "per_minute": len(finished) / minutes,
        "steady_per_minute": 60 * w / statistics.mean(cycles),
        "overhead_ms": 1000 * statistics.median(overheads),
        "overhead_p90_ms": 1000 * statistics.quantiles(overheads, n=10)[-1],
        "bookkeeping_ms": 1000 * statistics.median(loop_extra),
        "peak_connections": max(seen, default=0),
        "trials_run": total_trials,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        url, name, seed, budget, secs, stagger = sys.argv[2:8]
        worker(url, name, int(seed), int(budget), float(secs), float(stagger))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--trial-seconds", type=float, default=2.0)
    parser.add_argument("--trials-per-worker", type=int, default=16)
    parser.add_argument(
        "--together",
        action="store_true",
        help="start every worker at the same instant instead of spread over one trial",
    )
    args = parser.parse_args()
    from tests.postgres import Server

    server = Server(Path(tempfile.mkdtemp(prefix="thaw-scale-")))
    rows = []
    try:
        for w in args.workers:
            row = measure(server, w, args.trials_per_worker, args.trial_seconds, args.together)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    finally:
        server.close()
    base = rows[0]["steady_per_minute"] / rows[0]["workers"]
    end_base = rows[0]["per_minute"] / rows[0]["workers"]
    print(f"\n{args.trial_seconds:g} s simulated trials, {args.trials_per_worker} per worker, "
          f"real PostgreSQL on a Unix socket, {EPOCHS} reports per trial")  # fmt: skip
    print("| workers | finished/budget | trials/min (steady) | efficiency (steady) | "
          "efficiency (end to end) | overhead ms/trial (median, p90) | "
          "loop bookkeeping ms/trial | peak connections |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        eff = r["steady_per_minute"] / (r["workers"] * base)
        end_eff = r["per_minute"] / (r["workers"] * end_base)
        print(
            f"| {r['workers']} | {r['finished']}/{r['budget']} | {r['steady_per_minute']:.1f} | "
            f"{eff:.0%} | {end_eff:.0%} | {r['overhead_ms']:.0f} ({r['overhead_p90_ms']:.0f}) | "
            f"{r['bookkeeping_ms']:.0f} | {r['peak_connections']} |"
        )


if __name__ == "__main__":
    main()
