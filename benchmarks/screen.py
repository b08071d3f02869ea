"""The screen against the search, on backbones of known quality: does ranking frozen
features (LogME, k-NN, the linear probe) pick the backbone the full sweeps find best, and
what does it cost beside the sweeps it would replace?

    python -m benchmarks.screen --tree head    # 11.5 minutes on 2 busy cores (docs/benchmarks.md)
    python -m benchmarks.screen --quick        # a smoke test: few images, 2 trials, 1 architecture
                                               # (3 minutes there: 23 processes start TensorFlow)
    python -m benchmarks.screen --keep /tmp/screen --tree work

Two zoos, each a copy of the project in a folder of its own, its stages run one process
each (`python -m pipeline.stages.<stage>`, as `dvc repro` would) from `score` through
`screen` (`keep: all`) to every backbone's `sweep`:

  flowers: ../shared/data/flowers5's photos, 60 train + 100 val per class, with both real
           ImageNet backbones (MobileNet v1 0.25 and MobileNetV2 1.0, from their weight
           files) at 128 and 224 px, the default's search (params.yaml: its strategies, its
           freeze_depth range and its budget of trials and epochs);
  digits:  pretrained on digits 0-4, transferred to 5-9 (20 train + 100 val per class); per
           architecture (small_cnn, MobileNetV2 0.35) three backbones of known order: its
           random initial weights, pretrained 1 epoch, pretrained to convergence, each a
           model file made first (benchmarks/screen_backbones.py) because
           `pretrain.epochs` is one global key; the default's budget of trials and epochs,
           freeze_depth from 0.0.

The ground truth is the search at the default's budget, so that it is as good as the one
a user's `dvc repro` runs; its best val accuracy has a binomial standard error the
printout gives, and backbones within it of the best are printed as tied.

Per zoo: a table per candidate (backbone, size, cut: each score, its rank by each score,
the search's best val accuracy at that cut) and per (backbone, size) pair; Kendall's tau
of each score against the search (pipeline/report/screening.py, as the report computes
it); whether each score's top backbone is the search's best on validation; the cost. The
cost is the issue's: per backbone, the `score` stage's wall time against that backbone's
`sweep` stage's wall time with a COLD activation cache (results/cache/<name>/ deleted
before each sweep, so the sweep pays for its own forward passes, as it would had no
screen run). Targets (issue 29): the top backbone is the search's best in both zoos;
tau >= 0.6 over all candidates; the screen costs <= 10 % of the sweeps.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from benchmarks.child_processes import TAIL, python_module

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHARED = ROOT.parent / "shared" / "data"
WEIGHT_FILES = {  # backbone -> (arch, alpha, the file under ../shared/data/weights/)
    "mobilenet_025": ("mobilenet", 0.25, "mobilenet_2_5_224_tf_no_top.h5"),
    "mobilenet_v2": (
        "mobilenet_v2", 1.0, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    ),
}  # fmt: skip
DIGITS_ARCHS = {"small_cnn": {"width": 16}, "mobilenet_v2": {"alpha": 0.35}}
# On 32 px digits the example's range from 0.0, so that small_cnn, whose last block holds
# most of its weights, has cuts below its top to rank (flowers: the default's, from 0.5).
DIGITS_DEPTHS = {"low": 0.0, "high": 1.0, "candidates": 4}
BUDGET_KEYS = {"sweep": ("n_trials", "min_trials_per_strategy", "max_trials"),
               "search": ("epochs", "head_only_epochs")}  # fmt: skip
SCORES = ("logme", "knn", "probe")
TAU_TARGET, COST_TARGET = 0.6, 0.10
CACHE_LINE = re.compile(
    r"\] (\d+) px: activation cache: (\d+) arrays computed in ([\d.]+) s, "
    r"(\d+) memory and (\d+) disk hits"
)


@dataclass(frozen=True)
class Size:
    """How much of each zoo runs: the full benchmark or `--quick`'s smoke test."""

    flowers_per_class: tuple[int, int]  # train, val
    flowers_sizes: list[int]
    digits_per_class: tuple[int, int]  # train, val
    archs: list[str]
    epochs: tuple[int, int]  # pretraining: short, converged
    budget: dict | None  # {section: {key: value}} over the default's; None: the default's


FULL = Size((60, 100), [128, 224], (20, 100), list(DIGITS_ARCHS), (1, 20), None)
QUICK = Size(
    (4, 4), [128], (10, 10), ["small_cnn"], (1, 3),
    {"sweep": {"n_trials": 2, "min_trials_per_strategy": 1, "max_trials": 4},
     "search": {"epochs": 2, "head_only_epochs": 3}},
)  # fmt: skip


@dataclass
class Zoo:
    name: str
    folder: Path
    backbones: list[str]
    val_images: int = 0
    score_wall: dict[str, float] = field(default_factory=dict)  # process start to exit
    sweep_wall: dict[str, float] = field(default_factory=dict)  # cold activation cache
    sweep_cache: dict[str, dict] = field(default_factory=dict)  # its log's cache figures
    cache_deleted_mb: dict[str, float] = field(default_factory=dict)
    screen_wall: float = 0.0
    stage_walls: list[str] = field(default_factory=list)
    notes: str = ""
    seconds: float = 0.0  # the whole zoo, its backbones made and its stages run


# --- the workspaces ---------------------------------------------------------------------


@dataclass(frozen=True)
class Code:
    """The pipeline/ every workspace copies: the working tree's, or one commit's
    (`--tree head`: HEAD resolved once at the start, extracted under the base folder, so
    both zoos run the same code while other commits land)."""

    pipeline: Path  # the folder that holds pipeline/
    commit: str


def code_under_test(base: Path, tree: str) -> Code:
    commit = git("rev-parse", "--short", "HEAD")
    if tree == "work":
        return Code(ROOT, commit + " + working tree")
    where = base / "code"
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", commit, "pipeline"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return Code(where, commit)


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def project(folder: Path, params: dict, code: Code) -> None:
    """A copy of `code`'s pipeline/ with `params`, and benchmarks/ from the working tree
    (this benchmark's own child module)."""
    folder.mkdir(parents=True, exist_ok=True)
    skip = shutil.ignore_patterns("__pycache__")
    for part, source in (("pipeline", code.pipeline), ("benchmarks", ROOT)):
        shutil.rmtree(folder / part, ignore_errors=True)
        shutil.copytree(source / part, folder / part, ignore=skip)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def search_settings(params: dict, size: Size, depths: dict | None) -> dict:
    """head_only and freeze_depth (the default's range unless `depths`), the default's
    budget of trials and epochs (or `size.budget`), and a screen that keeps all."""
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, keys in BUDGET_KEYS.items():
        params[section].update({key: default[section][key] for key in keys})
        params[section].update((size.budget or {}).get(section, {}))
    params["search"].update(
        strategies=default["search"]["strategies"],
        freeze_depth=depths or default["search"]["freeze_depth"],
    )
    params["sweep"]["screen"] = {"score": "probe", "keep": "all", "neighbours": 5}
    return params


def budget_text(params: dict) -> str:
    search, sweep = params["search"], params["sweep"]
    depth = search["freeze_depth"]
    return (
        f"search {search['strategies']}, freeze_depth {depth['low']}-{depth['high']} "
        f"({depth['candidates']} depths); {sweep['n_trials']} completed trials per backbone "
        f"({sweep['min_trials_per_strategy']} per strategy first, at most "
        f"{sweep['max_trials']} finished), {search['epochs']} epochs a trial "
        f"(head-only {search['head_only_epochs']})"
    )


def stage(zoo: Zoo, module: str, *args: str) -> tuple[float, str]:
    """Wall seconds and stderr of one stage's process in the zoo's workspace."""
    what = f"{zoo.name}: {' '.join((module, *args))}"
    start = time.perf_counter()
    proc = subprocess.run(
        python_module(f"pipeline.stages.{module}", *args),
        cwd=zoo.folder, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"{what} failed:\n{proc.stderr[-TAIL:]}")
    zoo.stage_walls.append(f"{' '.join((module, *args))} {seconds:.1f}")
    print(f"{what}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return seconds, proc.stderr


def cold_cache(zoo: Zoo, name: str) -> float:
    """Delete the activations the score stage left for `name` (MB deleted): its sweep
    computes its own, as it would had no screen run. The stored images stay."""
    folder = zoo.folder / "results" / "cache" / name
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.exists() else 0
    shutil.rmtree(folder, ignore_errors=True)
    return size / 2**20


def cache_figures(log: str) -> dict:
    """The sweep's own account of its activation cache, summed over its sizes."""
    found = [m.groups() for m in CACHE_LINE.finditer(log)]
    return {
        "computed": sum(int(g[1]) for g in found),
        "forward_s": sum(float(g[2]) for g in found),
        "disk_hits": sum(int(g[4]) for g in found),
    }


def run_stages(zoo: Zoo) -> None:
    """weights, every backbone, the screen's stages, then each sweep on a cold cache."""
    stage(zoo, "weights")
    for name in zoo.backbones:
        stage(zoo, "backbone", name)
    for name in zoo.backbones:
        zoo.score_wall[name] = stage(zoo, "score", name)[0]
    zoo.screen_wall = stage(zoo, "screen")[0]
    for name in zoo.backbones:
        zoo.cache_deleted_mb[name] = cold_cache(zoo, name)
        zoo.sweep_wall[name], log = stage(zoo, "sweep", name)
        zoo.sweep_cache[name] = cache_figures(log)


def flowers(base: Path, size: Size, code: Code) -> Zoo:
    params = search_settings(yaml.safe_load((ROOT / "params.yaml").read_text()), size, None)
    train, val = size.flowers_per_class
    params["data"].update(
        folder=str(SHARED / "flowers5"),
        train_per_class=train,
        val_per_class=val,
        image_size=size.flowers_sizes,
    )
    params["backbones"] = {
        name: {"arch": arch, "weights": str(SHARED / "weights" / file), "alpha": alpha}
        for name, (arch, alpha, file) in WEIGHT_FILES.items()
    }
    zoo = Zoo("flowers", base / "flowers", list(params["backbones"]), val_images=5 * val)
    project(zoo.folder, params, code)
    stage(zoo, "prepare")
    run_stages(zoo)
    zoo.notes = (
        f"flowers5: {train} train + {val} val photos per class (5 classes), sizes "
        f"{size.flowers_sizes}; {budget_text(params)}"
    )
    return zoo


def digits(base: Path, size: Size, code: Code) -> Zoo:
    """Backbones made in a workspace with the source classes, screened and swept in one
    without them (targets only): the backbone stage refuses a model file whose linear
    probe on the source classes is under twice chance, and a random MobileNetV2 at 32 px
    scored 0.29 there (0.40 needed). The screen is meant to rank such a backbone last, so
    the target workspace has no source task to check it on."""
    example = yaml.safe_load((ROOT / "examples" / "digits" / "params.yaml").read_text())
    params = search_settings(example, size, DIGITS_DEPTHS)
    train, val = size.digits_per_class
    params["data"].update(train_per_class=train, val_per_class=val)
    params["backbones"] = {a: {"weights": "source", **DIGITS_ARCHS[a]} for a in size.archs}
    source = Zoo("digits_source", base / "digits_source", [])
    project(source.folder, params, code)
    stage(source, "prepare")
    made = make_known_backbones(source.folder, size.epochs)
    params["data"]["source_classes"] = []
    params["backbones"] = {
        stem: {"weights": str(found["file"]), "preprocess": found["preprocess"]}
        for stem, found in made.items()
    }
    zoo = Zoo("digits", base / "digits", list(made), val_images=5 * val)
    project(zoo.folder, params, code)
    stage(zoo, "prepare")
    run_stages(zoo)
    sources = ", ".join(f"{stem} {found['source_accuracy']:.3f}" for stem, found in made.items())
    zoo.notes = (
        f"digits: {train} train + {val} val images per target class (5-9) at 32 px; "
        f"pretraining epochs {size.epochs}; source (0-4) val accuracy (pretrained: in "
        f"inference mode; random: a linear probe): {sources}; {budget_text(params)}"
    )
    return zoo


def make_known_backbones(folder: Path, epochs: tuple[int, int]) -> dict:
    """{stem: {file, preprocess, source_accuracy}}: random, short, converged."""
    out = folder / "made"
    proc = subprocess.run(
        python_module("benchmarks.screen_backbones", str(out), *map(str, epochs)),
        cwd=folder,
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        sys.exit(f"digits: making the backbones failed:\n{proc.stderr[-TAIL:]}")
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"digits: made {', '.join(found)}", file=sys.stderr, flush=True)
    for stem, made in found.items():
        made["file"] = out / stem / "backbone.keras"
        made["preprocess"] = json.loads((out / stem / "meta.json").read_text())["preprocess"]
    return found


# --- the comparison ---------------------------------------------------------------------


def read_results(zoo: Zoo) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The screen's candidates and every backbone's trials."""
    from pipeline.screen import decision

    screen = decision.read_scores(zoo.backbones, zoo.folder / "results" / "screen")
    trials = pd.concat(
        [pd.read_csv(zoo.folder / "results/sweep" / n / "trials.csv") for n in zoo.backbones],
        ignore_index=True,
    )
    return screen, trials


NO_RUNS = pd.DataFrame(columns=["kind", "backbone", "trial", "test_accuracy"])  # no final stage


def candidates_table(screen: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """One row per candidate: its scores, its rank by each, the search's best val there."""
    from pipeline.report import screening

    rows = screening.comparison(screen, trials, NO_RUNS, "probe")
    for score in SCORES:
        ranked = screening.comparison(screen, trials, NO_RUNS, score)
        ranks = ranked[[*screening.CUT, "rank"]].rename(columns={"rank": f"rank_{score}"})
        rows = rows.merge(ranks, on=screening.CUT)
    return rows


def pairs_table(screen: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """One row per (backbone, size): each score's best cut's value and the pair's rank by
    it (the screen's decision), and the search's best val at that pair."""
    from pipeline.report import screening

    table = None
    for score in SCORES:
        found = screening.pair_comparison(screen, trials, score)
        found = found[[*screening.PAIR, score, "rank", "searched"]]
        found = found.rename(columns={"rank": f"rank_{score}"})
        table = found if table is None else table.merge(found.drop(columns="searched"))
    return table.sort_values("rank_probe").reset_index(drop=True)


@dataclass(frozen=True)
class Best:
    """The search's best val accuracy, the backbones that reached it, its binomial
    standard error on the val split, and the backbones whose best is within it."""

    accuracy: float
    winners: set[str]
    se: float
    tied: list[str]


def search_best(trials: pd.DataFrame, val_images: int) -> Best:
    done = trials[trials.state == "COMPLETE"]
    best = float(done.val_accuracy.max())
    se = math.sqrt(best * (1 - best) / val_images)
    per_backbone = done.groupby("backbone").val_accuracy.max().sort_values(ascending=False)
    tied = [f"{b} {v:.3f}" for b, v in per_backbone.items() if best - v <= se]
    return Best(best, set(done[done.val_accuracy == best].backbone), se, tied)


def verdicts(cands: pd.DataFrame, pairs: pd.DataFrame, best: Best) -> pd.DataFrame:
    """Per score: tau over candidates and pairs, its top backbone, whether that is the
    search's best."""
    from pipeline.report import screening

    rows = []
    for score in SCORES:
        tau, n = screening.kendall(cands, score)
        pair_tau, pairs_n = screening.kendall(pairs, score)
        top = pairs.sort_values(f"rank_{score}").iloc[0]
        rows.append({
            "score": score,
            "tau (candidates)": tau, "n": n, "tau (pairs)": pair_tau, "pairs": pairs_n,
            "top pair": f"{top.backbone} @ {int(top.image_size)}",
            "top is best": top.backbone in best.winners,
            "tau >= 0.6": bool(tau >= TAU_TARGET),
            "failed rows": int(cands[score].isna().sum()),
        })  # fmt: skip
    return pd.DataFrame(rows)


def forward_split(rows: pd.DataFrame) -> tuple[float, float]:
    """(forward-pass seconds, scoring seconds) of one backbone's score rows: each size's
    first row carries the pass that fills every cut, so its pass is that row's seconds
    less the median of the size's other rows (the scoring alone)."""
    forward = 0.0
    for _, size in rows.groupby("image_size", sort=False):
        seconds = size.seconds.tolist()
        scoring = pd.Series(seconds[1:]).median() if len(seconds) > 1 else 0.0
        forward += max(seconds[0] - scoring, 0.0)
    return forward, float(rows.seconds.sum()) - forward


def costs(zoo: Zoo, trials: pd.DataFrame) -> pd.DataFrame:
    """Per backbone and summed: the score stage against the cold-cache sweep stage."""
    from pipeline.screen import decision

    rows = []
    for name in zoo.backbones:
        scored = pd.read_csv(decision.scores_path(name, zoo.folder / "results" / "screen"))
        forward, scoring = forward_split(scored)
        rows.append({
            "backbone": name, "score wall": zoo.score_wall[name],
            "rows": float(scored.seconds.sum()), "rows: forward": forward,
            "rows: scoring": scoring, "sweep wall (cold)": zoo.sweep_wall[name],
            "sweep forward": zoo.sweep_cache[name]["forward_s"],
            "trials device": float(trials[trials.backbone == name].device_seconds.sum()),
            "sweep disk hits": zoo.sweep_cache[name]["disk_hits"],
        })  # fmt: skip
    table = pd.DataFrame(rows)
    total = table.drop(columns="backbone").sum().to_dict()
    table = pd.concat([table, pd.DataFrame([{"backbone": "(sum)", **total}])], ignore_index=True)
    table["score wall / sweep wall"] = table["score wall"] / table["sweep wall (cold)"]
    table["rows / sweep wall"] = table["rows"] / table["sweep wall (cold)"]
    return table


# --- the printout -----------------------------------------------------------------------


def number(value) -> str:
    return "" if pd.isna(value) else f"{value:.3f}"


def signed(value) -> str:
    return "n/a" if pd.isna(value) else f"{value:+.2f}"


def print_candidates(cands: pd.DataFrame, pairs: pd.DataFrame) -> None:
    shown = cands.assign(
        cut=[f"{n} ({s:.0%})" for n, s in zip(cands.layer, cands.share)],
    )[["backbone", "image_size", "cut", *SCORES, *(f"rank_{s}" for s in SCORES), "searched"]]
    print("\nper candidate (rank_*: the candidate's rank by that score; searched: the best "
          "completed trial's val accuracy at that backbone, size and frozen share)")  # fmt: skip
    print(shown.to_string(index=False, formatters={c: number for c in (*SCORES, "searched")}))
    print("\nper (backbone, size) pair (each score at its best cut; rank_*: the screen's order)")
    print(pairs.to_string(index=False, formatters={c: number for c in (*SCORES, "searched")}))


def print_costs(zoo: Zoo, cost: pd.DataFrame) -> None:
    share = {c: (lambda v: f"{v:.1%}") for c in cost.columns if "/" in c}
    seconds = {c: (lambda v: f"{v:.1f}") for c in cost.columns[1:] if "/" not in c}
    seconds["sweep disk hits"] = lambda v: f"{int(v)}"  # 0: the sweep read nothing cached
    print("\ncost, seconds (score wall: the score stage's process, start to exit; rows: the "
          "sum of its CSV rows' seconds, split into each size's forward pass and the scoring; "
          "sweep wall (cold): the sweep stage with results/cache/<name>/ deleted first; sweep "
          "forward: the activations it computed, from its log; trials device: its trials' "
          "summed device_seconds)")  # fmt: skip
    print(cost.to_string(index=False, formatters={**seconds, **share}))
    deleted = ", ".join(f"{n} {mb:.1f}" for n, mb in zoo.cache_deleted_mb.items())
    total = cost.iloc[-1]
    with_screen = (total["score wall"] + zoo.screen_wall) / total["sweep wall (cold)"]
    print(f"activations deleted before each sweep (MB): {deleted}")
    print(f"screen stage (ranking, no TensorFlow) {zoo.screen_wall:.1f} s; score stages + "
          f"screen stage / sweeps: {with_screen:.1%}")  # fmt: skip


def print_zoo(zoo: Zoo) -> dict:
    screen, trials = read_results(zoo)
    cands, pairs = candidates_table(screen, trials), pairs_table(screen, trials)
    best = search_best(trials, zoo.val_images)
    table, cost = verdicts(cands, pairs, best), costs(zoo, trials)
    print(f"\n=== {zoo.name} ({zoo.seconds:.0f} s) ===\n{zoo.notes}")
    print(f"stage wall seconds: {'; '.join(zoo.stage_walls)}")
    print_candidates(cands, pairs)
    print(f"\nsearch's best val accuracy {best.accuracy:.3f}, reached by: "
          f"{', '.join(sorted(best.winners))}; one binomial standard error on "
          f"{zoo.val_images} val images {best.se:.3f}; each backbone's best within it: "
          f"{', '.join(best.tied)}")  # fmt: skip
    print(table.to_string(index=False, formatters={"tau (candidates)": signed,
                                                   "tau (pairs)": signed}))  # fmt: skip
    print("(tau n/a: under 3 rows, or a constant column)")
    for row in table.to_dict("records"):
        if row["failed rows"]:
            print(f"SCORE FAILED: {row['score']} gave no value for {row['failed rows']} candidates")
    print_costs(zoo, cost)
    return {"zoo": zoo.name, "verdicts": table, "cost": cost.iloc[-1]}


def met(flag: bool) -> str:
    return "met" if flag else "FAILED"


def print_targets(found: list[dict]) -> None:
    """Which score meets which target, zoo by zoo, in plain words."""
    print("\n=== targets (issue 29) ===")
    for score in SCORES:
        for zoo in found:
            row = zoo["verdicts"].set_index("score").loc[score]
            print(
                f"{score:>5} {zoo['zoo']:>7}: top backbone = search's best: "
                f"{met(row['top is best'])} ({row['top pair']}); tau over candidates "
                f"{signed(row['tau (candidates)'])} >= {TAU_TARGET}: {met(row['tau >= 0.6'])}"
            )
    for score in SCORES:
        rows = [z["verdicts"].set_index("score").loc[score] for z in found]
        every = all(r["top is best"] and r["tau >= 0.6"] for r in rows)
        print(f"{score}: {'meets both targets in every zoo' if every else 'fails a target'}")
    for zoo in found:
        share = zoo["cost"]["score wall / sweep wall"]
        print(f"cost {zoo['zoo']}: score stages {share:.1%} of the cold sweeps' wall time "
              f"(<= {COST_TARGET:.0%}: {met(share <= COST_TARGET)})")  # fmt: skip


def machine(code: Code) -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"{model}, {os.cpu_count()} cores, load average {load}; pipeline/ of {code.commit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test (a few minutes)")
    parser.add_argument("--keep", help="build the workspaces here (kept), not in a temp folder")
    parser.add_argument(
        "--tree", choices=["work", "head"], default="work",
        help="the pipeline/ the workspaces copy: the working tree, or the last commit (git HEAD)",
    )  # fmt: skip
    args = parser.parse_args()
    for name, (_, _, file) in WEIGHT_FILES.items():
        if not (SHARED / "weights" / file).is_file():
            sys.exit(f"{SHARED / 'weights' / file} not found (see ../shared/data/README.md)")
    size = QUICK if args.quick else FULL
    base = Path(args.keep or tempfile.mkdtemp(prefix="thaw_screen_"))
    code = code_under_test(base, args.tree)
    sys.path.insert(0, str(code.pipeline))  # the tables read with the code under test
    print(f"machine: {machine(code)}\nworkspaces: {base}", flush=True)
    start = time.perf_counter()
    zoos = []
    for make in (flowers, digits):
        begun = time.perf_counter()
        zoos.append(make(base, size, code))
        zoos[-1].seconds = time.perf_counter() - begun
    found = [print_zoo(zoo) for zoo in zoos]
    print_targets(found)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\nload average at the end {load}; {time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
