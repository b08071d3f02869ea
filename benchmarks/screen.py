"""The screen against the search, on backbones of known quality: does ranking frozen
features (LogME, k-NN, the linear probe) pick the backbone the full sweeps find best, and
what does it cost beside them?

    python -m benchmarks.screen            # 7 minutes on 2 busy cores (docs/benchmarks.md)
    python -m benchmarks.screen --quick    # a smoke test: few images, 2 trials, 1 architecture
                                           # (3.5 minutes there: 25 processes start TensorFlow)
    python -m benchmarks.screen --keep /tmp/screen --tree work

Two zoos, each a copy of the project in a folder of its own, its stages run one process
each (`python -m pipeline.stages.<stage>`, as `dvc repro` would) from `score` through
`screen` (`keep: all`) to every backbone's `sweep`:

  flowers: ../shared/data/flowers5's photos, a subset per class, with both real ImageNet
           backbones (MobileNet v1 0.25 and MobileNetV2 1.0, from their weight files) at
           two input sizes, the default's search (head_only and freeze_depth from 0.5);
  digits:  pretrained on digits 0-4, transferred to 5-9; per architecture (small_cnn,
           MobileNetV2 0.35) three backbones of known order: its random initial weights,
           pretrained 1 epoch, pretrained to convergence, each a model file made first
           (benchmarks/screen_backbones.py) because `pretrain.epochs` is one global key.

Per zoo: a table per candidate (backbone, size, cut: each score, its rank by each score,
the search's best val accuracy at that cut) and per (backbone, size) pair; Kendall's tau
of each score against the search (pipeline/report/screening.py, as the report computes
it); whether each score's top backbone is the search's best on validation; the screen's
cost against the sweeps'. Targets (issue 29): the top backbone is the search's best in
both zoos; tau >= 0.6 over all candidates; the screen costs <= 10 % of the sweeps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from benchmarks.child_processes import TAIL, python_module, timed

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
# The default's cuts on photos (from 0.5: full fine-tunes of a 224 px MobileNetV2 take
# minutes on a CPU); on 32 px digits the example's range from 0.0, so that small_cnn, whose
# last block holds most of its weights, has cuts below its top to rank.
FLOWERS_DEPTHS = {"low": 0.5, "high": 1.0, "candidates": 3}
DIGITS_DEPTHS = {"low": 0.0, "high": 1.0, "candidates": 4}
SCORES = ("logme", "knn", "probe")
TAU_TARGET, COST_TARGET = 0.6, 0.10


@dataclass(frozen=True)
class Size:
    """How much of each zoo runs: the full benchmark or `--quick`'s smoke test."""

    flowers_per_class: int
    flowers_sizes: list[int]
    digits_val_per_class: int
    archs: list[str]
    epochs: tuple[int, int]  # pretraining: short, converged
    trials: int  # completed trials per backbone; half per strategy


FULL = Size(30, [128, 224], 30, list(DIGITS_ARCHS), (1, 20), 12)
QUICK = Size(4, [128], 10, ["small_cnn"], (1, 3), 2)


@dataclass
class Zoo:
    name: str
    folder: Path
    backbones: list[str]
    score_wall: float = 0.0  # the score stages' wall seconds, process start to exit
    sweep_wall: float = 0.0
    notes: str = ""
    seconds: float = 0.0  # the whole zoo, its backbones made and its stages run


# --- the workspaces ---------------------------------------------------------------------


def project(folder: Path, params: dict, tree: str) -> None:
    """A copy of the code with `params`: pipeline/ from the working tree, or from git HEAD
    (`tree: head`, the figures of a commit while the tree is being edited); benchmarks/
    from the working tree (this benchmark's own child module)."""
    folder.mkdir(parents=True, exist_ok=True)
    for part in ("pipeline", "benchmarks"):
        shutil.rmtree(folder / part, ignore_errors=True)
    if tree == "head":
        archive = subprocess.run(
            ["git", "archive", "HEAD", "pipeline"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    skip = shutil.ignore_patterns("__pycache__")
    for part in ("benchmarks",) if tree == "head" else ("pipeline", "benchmarks"):
        shutil.copytree(ROOT / part, folder / part, ignore=skip)
    write_params(folder, params)


def write_params(folder: Path, params: dict) -> None:
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def search_settings(params: dict, size: Size, depths: dict) -> dict:
    """head_only and freeze_depth (at `depths`), `size.trials` completed trials per
    backbone, half per strategy, and a screen that keeps all."""
    params["search"].update(strategies=["head_only", "freeze_depth"], freeze_depth=depths)
    params["sweep"].update(
        n_trials=size.trials,
        min_trials_per_strategy=size.trials // 2,
        max_trials=2 * size.trials,
        screen={"score": "probe", "keep": "all", "neighbours": 5},
    )
    return params


def stage(folder: Path, module: str, *args: str) -> float:
    what = f"{folder.name}: {' '.join((module, *args))}"
    seconds = timed(python_module(f"pipeline.stages.{module}", *args), folder, what)
    print(f"{what}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return seconds


def run_stages(zoo: Zoo) -> None:
    """weights, every backbone, then the screen's stages and the sweeps, each timed."""
    stage(zoo.folder, "weights")
    for name in zoo.backbones:
        stage(zoo.folder, "backbone", name)
    zoo.score_wall = sum(stage(zoo.folder, "score", name) for name in zoo.backbones)
    stage(zoo.folder, "screen")
    for name in zoo.backbones:
        zoo.sweep_wall += stage(zoo.folder, "sweep", name)


def flowers(base: Path, size: Size, tree: str) -> Zoo:
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = search_settings(default, size, FLOWERS_DEPTHS)
    params["data"].update(
        folder=str(SHARED / "flowers5"),
        train_per_class=size.flowers_per_class,
        val_per_class=size.flowers_per_class,
        image_size=size.flowers_sizes,
    )
    params["backbones"] = {
        name: {"arch": arch, "weights": str(SHARED / "weights" / file), "alpha": alpha}
        for name, (arch, alpha, file) in WEIGHT_FILES.items()
    }
    zoo = Zoo("flowers", base / "flowers", list(params["backbones"]))
    project(zoo.folder, params, tree)
    stage(zoo.folder, "prepare")
    run_stages(zoo)
    zoo.notes = (
        f"flowers5: {size.flowers_per_class} train + {size.flowers_per_class} val photos per "
        f"class (5 classes), sizes {size.flowers_sizes}, {size.trials} completed trials per "
        "backbone (half head_only, half freeze_depth from 0.5)"
    )
    return zoo


def digits(base: Path, size: Size, tree: str) -> Zoo:
    """Backbones made in a workspace with the source classes, screened and swept in one
    without them (targets only): the backbone stage refuses a model file whose linear
    probe on the source classes is under twice chance, and a random MobileNetV2 at 32 px
    scored 0.29 there (0.40 needed). The screen is meant to rank such a backbone last, so
    the target workspace has no source task to check it on."""
    example = yaml.safe_load((ROOT / "examples" / "digits" / "params.yaml").read_text())
    params = search_settings(example, size, DIGITS_DEPTHS)
    params["data"]["val_per_class"] = size.digits_val_per_class
    params["backbones"] = {a: {"weights": "source", **DIGITS_ARCHS[a]} for a in size.archs}
    source = base / "digits_source"
    project(source, params, tree)
    stage(source, "prepare")
    made = make_known_backbones(source, size.epochs)
    params["data"]["source_classes"] = []
    params["backbones"] = {
        stem: {"weights": str(found["file"]), "preprocess": found["preprocess"]}
        for stem, found in made.items()
    }
    zoo = Zoo("digits", base / "digits", list(made))
    project(zoo.folder, params, tree)
    stage(zoo.folder, "prepare")
    run_stages(zoo)
    sources = ", ".join(f"{stem} {found['source_accuracy']:.3f}" for stem, found in made.items())
    zoo.notes = (
        f"digits: {params['data']['train_per_class']} train + {size.digits_val_per_class} val "
        f"images per target class (5-9) at 32 px; pretraining epochs {size.epochs}; source "
        f"(0-4) val accuracy (pretrained: in inference mode; random: a linear probe): "
        f"{sources}; {size.trials} completed trials per backbone (half head_only, half "
        "freeze_depth from 0.0)"
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


def search_best(trials: pd.DataFrame) -> tuple[float, set[str]]:
    """The search's best val accuracy and every backbone that reached it (ties count)."""
    done = trials[trials.state == "COMPLETE"]
    best = done.val_accuracy.max()
    return float(best), set(done[done.val_accuracy == best].backbone)


def verdicts(zoo: Zoo, cands: pd.DataFrame, pairs: pd.DataFrame, trials: pd.DataFrame):
    """Per score: tau over candidates and pairs, its top backbone, whether that is the
    search's best; as rows to print and flags for the targets."""
    from pipeline.report import screening

    best, winners = search_best(trials)
    rows = []
    for score in SCORES:
        tau, n = screening.kendall(cands, score)
        pair_tau, pairs_n = screening.kendall(pairs, score)
        top = pairs.sort_values(f"rank_{score}").iloc[0]
        failed = cands[score].isna().sum()
        rows.append({
            "score": score,
            "tau (candidates)": tau, "n": n, "tau (pairs)": pair_tau, "pairs": pairs_n,
            "top pair": f"{top.backbone} @ {int(top.image_size)}",
            "top is best": top.backbone in winners,
            "tau >= 0.6": bool(tau >= TAU_TARGET),
            "failed rows": int(failed),
        })  # fmt: skip
    return pd.DataFrame(rows), best, winners


def costs(zoo: Zoo, screen: pd.DataFrame, trials: pd.DataFrame) -> dict:
    scored, device = float(screen.seconds.sum()), float(trials.device_seconds.sum())
    return {
        "score seconds (sum of rows)": scored,
        "trial device seconds (sum)": device,
        "share by seconds": scored / device,
        "score stages wall": zoo.score_wall,
        "sweep stages wall": zoo.sweep_wall,
        "share by wall": zoo.score_wall / zoo.sweep_wall,
    }


# --- the printout -----------------------------------------------------------------------


def number(value) -> str:
    return "" if pd.isna(value) else f"{value:.3f}"


def signed(value) -> str:
    return "n/a" if pd.isna(value) else f"{value:+.2f}"


def print_zoo(zoo: Zoo) -> dict:
    screen, trials = read_results(zoo)
    cands, pairs = candidates_table(screen, trials), pairs_table(screen, trials)
    table, best, winners = verdicts(zoo, cands, pairs, trials)
    cost = costs(zoo, screen, trials)
    print(f"\n=== {zoo.name} ({zoo.seconds:.0f} s) ===\n{zoo.notes}")
    shown = cands.assign(
        cut=[f"{n} ({s:.0%})" for n, s in zip(cands.layer, cands.share)],
    )[["backbone", "image_size", "cut", *SCORES, *(f"rank_{s}" for s in SCORES), "searched"]]
    print("\nper candidate (rank_*: the candidate's rank by that score; searched: the best "
          "completed trial's val accuracy at that backbone, size and frozen share)")  # fmt: skip
    print(shown.to_string(index=False, formatters={c: number for c in (*SCORES, "searched")}))
    print("\nper (backbone, size) pair (each score at its best cut; rank_*: the screen's order)")
    print(pairs.to_string(index=False, formatters={c: number for c in (*SCORES, "searched")}))
    print(f"\nsearch's best val accuracy {best:.3f}, reached by: {', '.join(sorted(winners))}")
    taus = {"tau (candidates)": signed, "tau (pairs)": signed}
    print(table.to_string(index=False, formatters=taus))
    print("(tau n/a: under 3 rows, or a constant column)")
    for row in table.to_dict("records"):
        if row["failed rows"]:
            print(f"SCORE FAILED: {row['score']} gave no value for {row['failed rows']} candidates")
    print("cost: " + "; ".join(f"{k} {v:.1%}" if "share" in k else f"{k} {v:.1f} s"
                               for k, v in cost.items()))  # fmt: skip
    return {"zoo": zoo.name, "verdicts": table, "cost": cost}


def print_targets(found: list[dict]) -> None:
    """Which score meets which target, zoo by zoo, in plain words."""
    print("\n=== targets (issue 29) ===")
    for score in SCORES:
        parts = []
        for zoo in found:
            row = zoo["verdicts"].set_index("score").loc[score]
            parts.append(
                f"{zoo['zoo']}: top backbone {'IS' if row['top is best'] else 'is NOT'}"
                f" the search's best, tau {row['tau (candidates)']:+.2f} "
                f"({'met' if row['tau >= 0.6'] else 'FAILED'} >= {TAU_TARGET})"
            )
        print(f"{score}: " + "; ".join(parts))
    for zoo in found:
        cost = zoo["cost"]
        print(
            f"{zoo['zoo']} cost: {cost['share by seconds']:.1%} by seconds, "
            f"{cost['share by wall']:.1%} by stage wall time "
            f"(target <= {COST_TARGET:.0%}: by seconds "
            f"{'met' if cost['share by seconds'] <= COST_TARGET else 'FAILED'}, by wall "
            f"{'met' if cost['share by wall'] <= COST_TARGET else 'FAILED'})"
        )


def machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return f"{model}, {os.cpu_count()} cores, load average {load}; commit {commit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test (< 2 minutes)")
    parser.add_argument("--keep", help="build the workspaces here (kept), not in a temp folder")
    parser.add_argument(
        "--tree", choices=["work", "head"], default="work",
        help="the code the workspaces copy: the working tree, or the last commit (git HEAD)",
    )  # fmt: skip
    args = parser.parse_args()
    for name, (_, _, file) in WEIGHT_FILES.items():
        if not (SHARED / "weights" / file).is_file():
            sys.exit(f"{SHARED / 'weights' / file} not found (see ../shared/data/README.md)")
    size = QUICK if args.quick else FULL
    base = Path(args.keep or tempfile.mkdtemp(prefix="thaw_screen_"))
    print(f"machine: {machine()}\nworkspaces: {base}", flush=True)
    start = time.perf_counter()
    zoos = []
    for make in (flowers, digits):
        begun = time.perf_counter()
        zoos.append(make(base, size, args.tree))
        zoos[-1].seconds = time.perf_counter() - begun
    found = [print_zoo(zoo) for zoo in zoos]
    print_targets(found)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\nload average at the end {load}; {time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
