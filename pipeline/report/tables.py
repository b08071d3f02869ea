"""The report's tables, computed from the stages' results: no plotting, no Markdown here.

The headline table has one row per retrained configuration and baseline:
test accuracy mean and sd over seeds, the validation accuracy that selected
it, its costs, and whether it lies on a Pareto front (nothing else is at least
as accurate and at most as costly) of test accuracy against trainable
parameters and against device time, within its backbone and overall.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import ThawError
from pipeline.evaluate.probe import STRATEGY as PROBE
from pipeline.evaluate.ranking import LINEAR_PIXELS, SCRATCH, TRANSFER, by_rank
from pipeline.report.pareto import pareto_front

COSTS = {"params": "trainable_params", "time": "device_seconds"}


BITS = {"test_correct": str, "val_correct": str}  # "0110...": per-image results, not numbers


def _read(path: Path, stage: str) -> pd.DataFrame:
    if not path.is_file():
        raise ThawError(f"{path} is missing; run `dvc repro {stage}` first")
    return pd.read_csv(path, dtype=BITS)


def load_trials(names: list[str], sweep_dir: Path) -> pd.DataFrame:
    return pd.concat(
        [_read(sweep_dir / n / "trials.csv", f"sweep@{n}") for n in names], ignore_index=True
    )


def load_runs(names: list[str], final_dir: Path, baseline_csv: Path) -> pd.DataFrame:
    """Every retraining run: each backbone's top-k and scratch, and the linear baseline."""
    tables = [_read(final_dir / n / "runs.csv", f"final@{n}") for n in names]
    tables.append(_read(baseline_csv, "linear_baseline"))
    runs = pd.concat(tables, ignore_index=True)
    runs["backbone"] = runs.backbone.fillna("")
    return runs


def load_depth_curves(names: list[str], final_dir: Path) -> pd.DataFrame:
    return pd.concat(
        [_read(final_dir / n / "depth.csv", f"final@{n}") for n in names], ignore_index=True
    )


def load_importances(names: list[str], sweep_dir: Path) -> pd.DataFrame:
    rows = []
    for name in names:
        path = sweep_dir / name / "importances.json"
        found = json.loads(path.read_text()) if path.is_file() else {"importances": {}}
        rows += [
            {
                "backbone": name,
                "parameter": p,
                "importance": v,
                "backbone_parameter": f"{name} / {p}",
            }
            for p, v in found["importances"].items()
        ]  # backbone_parameter: one bar per pair in `dvc plots show`
    return pd.DataFrame(rows, columns=["backbone", "parameter", "importance", "backbone_parameter"])


def _label(row) -> str:
    if row.strategy == PROBE:
        return "linear probe (converged)"
    if row.kind == TRANSFER:
        label = f"#{int(row['rank'])} (trial {int(row.trial)})"
        return label if row.top_k else f"{label}, best {row.strategy}"
    return {SCRATCH: "scratch baseline", LINEAR_PIXELS: "linear on pixels"}[row.kind]


UNSTABLE_SPREAD = 0.10  # seeds whose test accuracies span more than this: the result is luck


def headline(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: seeds aggregated, Pareto membership marked."""
    runs = runs.assign(rank=runs["rank"].fillna(0).astype(int))
    defaults = {"strategy": "", "frozen_fraction": math.nan, "top_k": True,
                "strategy_best": False, "test_accuracy_train_only": math.nan,
                "test_balanced_accuracy": math.nan, "image_size": math.nan,
                "augmentation": "", "test_correct": "", "val_correct": "",
                "val_loss": math.nan, "class_weight": "none"}  # fmt: skip
    for column, default in defaults.items():
        if column not in runs:  # no transfer run at all (every final stage failed)
            runs[column] = default
    keys = ["backbone", "kind", "rank"]
    table = (
        runs.groupby(keys, sort=False)
        .agg(
            trial=("trial", "first"),
            strategy=("strategy", "first"),
            top_k=("top_k", "first"),
            strategy_best=("strategy_best", "first"),
            plan=("plan", "first"),
            image_size=("image_size", "first"),
            augmentation=("augmentation", "first"),
            class_weight=("class_weight", "first"),
            frozen_fraction=("frozen_fraction", "first"),
            head_units=("head_units", "first"),
            learning_rate=("learning_rate", "first"),
            epochs=("epochs", "first"),  # retrained for: up to the selecting run's best epoch
            val_accuracy=("val_accuracy", "first"),
            test_accuracy_train_only=("test_accuracy_train_only", "first"),
            test_accuracy_mean=("test_accuracy", "mean"),
            test_accuracy_sd=("test_accuracy", "std"),
            test_accuracy_min=("test_accuracy", "min"),
            test_accuracy_max=("test_accuracy", "max"),
            test_balanced_accuracy_mean=("test_balanced_accuracy", "mean"),
            test_balanced_accuracy_sd=("test_balanced_accuracy", "std"),
            seeds=("test_accuracy", "count"),  # failed runs (NaN) do not count
            trainable_params=("trainable_params", "first"),
            total_params=("total_params", "first"),
            # the median: a new model's first seed also pays tracing and graph building
            device_seconds=("device_seconds", "median"),
            device=("device", "first"),
            device_kind=("device_kind", "first"),
            train_flops=("train_flops", "mean"),
            test_correct=("test_correct", _seeds_bits),
            val_correct=("val_correct", "first"),
            val_loss=("val_loss", "first"),
        )
        .reset_index()
    )
    table["top_k"] = table.top_k.fillna(True).astype(bool)
    table["strategy_best"] = table.strategy_best.fillna(False).astype(bool)
    table["unstable"] = table.test_accuracy_max - table.test_accuracy_min > UNSTABLE_SPREAD
    table["configuration"] = [_label(r) for _, r in table.iterrows()]
    for short, cost in COSTS.items():
        overall = pareto_front(table, "test_accuracy_mean", cost)
        own = pareto_front(table, "test_accuracy_mean", cost, by="backbone")
        table[f"front_{short}_overall"] = overall
        table[f"front_{short}_backbone"] = own & (table.backbone != "")
    return table.sort_values(["test_accuracy_mean"], ascending=False, ignore_index=True)


ALPHA = 0.05  # two-sided level of the verdicts' test


def welch(a, b) -> tuple[float, float, float]:
    """Gap between two rows' mean test accuracies, its standard error over seeds, and
    the two-sided p-value of Welch's t-test (unequal variances; with three seeds a
    side the t distribution has few degrees of freedom, so twice the SE is too lenient)."""
    from scipy import stats

    gap = a.test_accuracy_mean - b.test_accuracy_mean
    se = math.sqrt(a.test_accuracy_sd**2 / a.seeds + b.test_accuracy_sd**2 / b.seeds)
    if se == 0:  # no spread over seeds on either side: any gap is beyond seed noise
        return gap, se, 0.0 if gap else 1.0
    p = stats.ttest_ind_from_stats(
        a.test_accuracy_mean, a.test_accuracy_sd, a.seeds,
        b.test_accuracy_mean, b.test_accuracy_sd, b.seeds,
        equal_var=False,
    ).pvalue  # fmt: skip
    return gap, se, float(p)


def _seeds_bits(bits: pd.Series) -> str:
    """Each seed's per-image correctness ("0110..."), joined by ";"."""
    return ";".join(str(b) for b in bits if isinstance(b, str) and b)


def per_image(row) -> np.ndarray | None:
    """Each test image's correctness averaged over the row's seeds (None: not recorded)."""
    seeds = [b for b in str(row.get("test_correct") or "").split(";") if b]
    if not seeds or len({len(b) for b in seeds}) != 1:
        return None
    return np.mean([[c == "1" for c in b] for b in seeds], axis=0)


BOOTSTRAP = 2000  # resamples of the test images in the paired bootstrap
PAIRED = "paired bootstrap over test images"
WELCH = "Welch over seeds"


def paired_bootstrap(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Gap in mean accuracy between two runs scored on the same images, its bootstrap
    standard error and two-sided p-value: resample images (with replacement), keep the
    pairs. Each image carries both runs' seeds, so the test set's own sampling noise and
    the seeds' are both in it, which Welch over seeds leaves out."""
    d = x - y
    if not np.any(d):
        return 0.0, 0.0, 1.0
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (BOOTSTRAP, len(d)))].mean(axis=1)
    p = 2 * min(np.mean(means <= 0), np.mean(means >= 0))
    return float(d.mean()), float(means.std(ddof=1)), float(min(1.0, max(p, 1 / BOOTSTRAP)))


def compare(a, b) -> tuple[float, float, float, str] | None:
    """a against b: the paired bootstrap where both have per-image results on the same
    test images, else Welch over seeds (two seeds a side at least); None: neither."""
    x, y = per_image(a), per_image(b)
    if x is not None and y is not None and len(x) == len(y):
        return (*paired_bootstrap(x, y), PAIRED)
    if a.seeds < 2 or b.seeds < 2:
        return None  # one seed has no spread to test against
    return (*welch(a, b), WELCH)


VERDICT_COLUMNS = ["backbone", "against", "gap", "se", "p", "verdict", "test"]


def against_baselines(table: pd.DataFrame, chosen) -> list[dict]:
    """Did transfer pay for `chosen`? It against its backbone's scratch twin and the linear
    baseline: "paid" / "lost" when `compare` rejects equal accuracy at ALPHA."""
    linear = table[table.kind == LINEAR_PIXELS]
    scratch = table[(table.kind == SCRATCH) & (table.backbone == chosen.backbone)]
    rows = []
    for name, other in (("scratch", scratch), ("linear on pixels", linear)):
        found = None if other.empty else compare(chosen, other.iloc[0])
        if found is None:
            continue
        gap, se, p, test = found
        verdict = "within noise" if p >= ALPHA else "paid" if gap > 0 else "lost"
        rows.append(
            {"backbone": chosen.backbone, "against": name, "gap": gap, "se": se, "p": p,
             "verdict": verdict, "test": test}
        )  # fmt: skip
    return rows


def verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """Each backbone's selected configuration against each baseline (`against_baselines`)."""
    rows = [r for _, chosen in selected(table).iterrows() for r in against_baselines(table, chosen)]
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


def curve_seeds_text(curve: pd.DataFrame) -> str:
    """How the curve's points were averaged (report.curve_seeds): the report's and plot's words."""
    seeds = int(curve.seeds.max()) if len(curve) else 0
    return "one seed" if seeds < 2 else f"mean ± sd over {seeds} seeds"


def depth_curve(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over seeds per backbone, mode and depth."""
    return (
        curves.groupby(["backbone", "mode", "depth"], sort=False)
        .agg(
            frozen_fraction=("frozen_fraction", "first"),
            last_frozen_layer=("last_frozen_layer", "first"),
            val_accuracy_mean=("val_accuracy", "mean"),
            val_accuracy_sd=("val_accuracy", "std"),
            seeds=("val_accuracy", "count"),  # failed runs (NaN) do not count
            converged_probe_accuracy=("converged_probe_accuracy", "first"),
            pooled_features=("pooled_features", "first"),
            settings_trial=("settings_trial", "first"),
            head_units=("head_units", "first"),
            learning_rate=("learning_rate", "first"),
            lr_decay=("lr_decay", "first"),
            **(
                {"backbone_lr_fraction": ("backbone_lr_fraction", "first")}
                if "backbone_lr_fraction" in curves  # curves from before the fraction had none
                else {}
            ),
        )
        .reset_index()
    )


def selected(table: pd.DataFrame) -> pd.DataFrame:
    """Each backbone's configuration chosen by validation: its rank-1 trial, retrained."""
    return table[(table.kind == TRANSFER) & (table["rank"] == 1)]


SELECTIONS = ("one_se", "best")  # report.selection


@dataclass(frozen=True)
class Choice:
    """The recommendation and why: the best on validation, those tied with it, the rule."""

    pick: pd.Series
    best: pd.Series
    tied: pd.DataFrame  # candidates within `margin` of the best's validation accuracy
    candidates: int
    margin: float  # one binomial standard error of the best's validation accuracy (one_se)
    n_val: int
    rule: str


def candidates(table: pd.DataFrame) -> pd.DataFrame:
    """What the recommendation chooses among: every retrained configuration of every
    backbone and every baseline that has a validation accuracy and a test run."""
    return table[(table.seeds > 0) & table.val_accuracy.notna()]


def cheapest_first(frame: pd.DataFrame) -> pd.DataFrame:
    """Fewest trainable parameters, then fewest training FLOPs per epoch (both the same on
    every machine, unlike seconds): what the configuration costs. Of equal cost, the better
    on validation (accuracy, then loss) first: a run's epoch count comes from where a noisy
    validation curve peaked, so total FLOPs and seconds only break what ties remain."""
    per_epoch = frame.train_flops / frame.epochs.where(frame.epochs > 0)
    loss = frame.val_loss if "val_loss" in frame else np.nan
    order = frame.assign(_per_epoch=per_epoch, _neg_val=-frame.val_accuracy, _loss=loss)
    keys = ["trainable_params", "_per_epoch", "_neg_val", "_loss", "train_flops",
            "device_seconds", "backbone", "rank"]  # fmt: skip
    ordered = order.sort_values(keys, ignore_index=True, na_position="last")
    return ordered.drop(columns=["_per_epoch", "_neg_val", "_loss"])


def recommendation(table: pd.DataFrame, n_val: int, rule: str = "one_se") -> Choice:
    """Chosen on validation among all candidates, baselines included (test only reports).

    `best`: the highest validation accuracy, the cheaper on a tie. `one_se` (Breiman et
    al.'s one-standard-error rule): every candidate within one binomial standard error
    of the best's validation accuracy, sqrt(p (1 - p) / n_val), is tied with it, and the
    cheapest of those wins: fewest trainable parameters, then fewest training FLOPs per
    epoch, then the better on validation (`cheapest_first`).
    """
    pool = cheapest_first(candidates(table))
    if pool.empty:
        raise ThawError("no configuration has a test run: every final stage failed")
    best = pool.sort_values("val_accuracy", ascending=False, kind="stable").iloc[0]
    tied = pool[tied_with_best(pool.val_accuracy.to_numpy()[:, None], n_val, rule)[:, 0]]
    p = float(best.val_accuracy)
    margin = math.sqrt(p * (1 - p) / n_val) if rule == "one_se" and n_val else 0.0
    return Choice(tied.iloc[0], best, tied, len(pool), margin, n_val, rule)


def tied_with_best(accuracy: np.ndarray, n_val: int, rule: str) -> np.ndarray:
    """Which candidates (rows, cheapest first) the rule ties with the best, per column of
    validation accuracies (the images as they are, or a resample of them): within one
    binomial standard error of the column's best for `one_se`, equal to it for `best`.
    The recommendation is the first tied row; `pick_stability` applies the same rule."""
    best = accuracy.max(axis=0)
    margin = np.sqrt(best * (1 - best) / n_val) if rule == "one_se" and n_val else 0.0
    return accuracy >= best - margin - 1e-12


STABILITY_RESAMPLES = 1000
FRAGILE = 0.5  # a pick chosen in fewer than this share of the resamples is flagged


def _val_bits(row, n_val: int) -> np.ndarray | None:
    text = row.get("val_correct")
    if not isinstance(text, str) or len(text) != n_val:
        return None
    return np.frombuffer(text.encode(), np.uint8) == ord("1")


def pick_stability(table: pd.DataFrame, n_val: int, rule: str, seed: int = 0) -> pd.DataFrame:
    """How often the selection rule picks each candidate when the validation images are
    resampled with replacement (STABILITY_RESAMPLES times, seeded): every candidate's
    accuracy on each resample comes from its per-image validation results. Empty when
    fewer than two candidates kept them."""
    pool = cheapest_first(candidates(table))  # so the first of those tied is the cheapest
    bits = [_val_bits(row, n_val) for _, row in pool.iterrows()]
    keep = [i for i, b in enumerate(bits) if b is not None]
    if len(keep) < 2 or not n_val:
        return pd.DataFrame()
    pool, correct = pool.iloc[keep].reset_index(drop=True), np.array([bits[i] for i in keep])
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_val, np.full(n_val, 1 / n_val), size=STABILITY_RESAMPLES)
    accuracy = correct.astype(np.float64) @ counts.T / n_val  # candidates x resamples
    picked = np.argmax(tied_with_best(accuracy, n_val, rule), axis=0)  # the first (cheapest)
    share = np.bincount(picked, minlength=len(pool)) / STABILITY_RESAMPLES
    return pool.assign(share=share, option=[_option(r) for _, r in pool.iterrows()])


def _option(row) -> str:
    """A candidate as stability counts it: its strategy, or the baseline's name."""
    if row.kind == TRANSFER:
        return str(row.strategy)
    return {SCRATCH: "scratch", LINEAR_PIXELS: "linear on pixels"}[row.kind]


def by_input(trials: pd.DataFrame) -> pd.DataFrame:
    """Per backbone, input size and augmentation: the search's completed trials, their best
    and median validation accuracy and median device time (the cost grows with the size)."""
    done = trials[trials.state == "COMPLETE"].assign(
        augmentation=lambda t: t.augmentation.fillna("none") if "augmentation" in t else "none"
    )
    if "image_size" not in done or done.image_size.isna().all():
        return pd.DataFrame()
    return (
        done.groupby(["backbone", "image_size", "augmentation"], sort=True)
        .agg(
            trials=("trial", "count"),
            best_val=("val_accuracy", "max"),
            median_val=("val_accuracy", "median"),
            median_seconds=("device_seconds", "median"),
            median_gflops=("train_flops", "median"),
        )
        .reset_index()
    )


def strategy_winners(table: pd.DataFrame) -> pd.DataFrame:
    """Per backbone: the strategy whose best configuration scored highest on test, against
    the runner-up strategy, with the paired bootstrap's p over the same test images
    (`compare`; "within noise" when p >= ALPHA).

    The winner is the highest of several on the same test set, so a "wins" is optimistic
    by that selection; the report says so.
    """
    rows = []
    best = table[(table.kind == TRANSFER) & table.strategy_best & (table.seeds > 0)]
    for backbone, group in best.groupby("backbone", sort=False):
        ranked = group.sort_values("test_accuracy_mean", ascending=False)
        winner = ranked.iloc[0]
        row = {"backbone": backbone, "winner": winner.strategy, "mean": winner.test_accuracy_mean,
               "sd": winner.test_accuracy_sd, "seeds": int(winner.seeds), "runner_up": "",
               "runner_up_mean": math.nan, "runner_up_sd": math.nan, "gap": math.nan,
               "p": math.nan, "verdict": "only strategy", "test": ""}  # fmt: skip
        if len(ranked) > 1:
            second = ranked.iloc[1]
            found = compare(winner, second)
            gap, _, p, test = (
                found
                if found
                else (winner.test_accuracy_mean - second.test_accuracy_mean, math.nan, math.nan, "")
            )
            row.update(runner_up=second.strategy, runner_up_mean=second.test_accuracy_mean,
                       runner_up_sd=second.test_accuracy_sd, gap=gap, p=p, test=test,
                       verdict="wins" if p < ALPHA else "within noise")  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


FEW_TO_COMPARE = 5  # completed trials below which a strategy's best and median mean little


def strategy_summary(
    trials: pd.DataFrame, table: pd.DataFrame, strategies: list[str]
) -> pd.DataFrame:
    """Per backbone and strategy of the search: trials completed and pruned, best and median
    validation accuracy, the best trial's test accuracy over seeds, and whether there are
    too few completed trials to compare (fewer than FEW_TO_COMPARE)."""
    rows = []
    tested = table[(table.kind == TRANSFER) & table.strategy_best].set_index(
        ["backbone", "strategy"]
    )
    for backbone in trials.backbone.unique():
        own = trials[trials.backbone == backbone]
        for strategy in strategies:
            mine = own[own.strategy == strategy]
            done = by_rank(mine[mine.state == "COMPLETE"])  # ties name the retrained trial
            best = done.iloc[0] if len(done) else None
            key = (backbone, strategy)
            test = tested.loc[key] if key in tested.index else None
            rows.append(
                {
                    "backbone": backbone,
                    "strategy": strategy,
                    "completed": len(done),
                    "pruned": int((mine.state == "PRUNED").sum()),
                    "failed": int((mine.state == "FAIL").sum()),
                    "best_val": math.nan if best is None else best.val_accuracy,
                    "median_val": done.val_accuracy.median() if len(done) else math.nan,
                    "best_trial": None if best is None else int(best.trial),
                    "best_plan": "" if best is None else best.plan,
                    "test_mean": math.nan if test is None else test.test_accuracy_mean,
                    "test_sd": math.nan if test is None else test.test_accuracy_sd,
                    "too_few": len(done) < FEW_TO_COMPARE,
                }
            )
    return pd.DataFrame(rows)


IMBALANCE = 1.5  # largest over smallest class: above this, balanced accuracy is reported too


def imbalanced(manifest: dict) -> bool:
    """Whether the test split's largest class has over IMBALANCE times its smallest's images."""
    counts = list(manifest["counts"]["test"].values())
    return bool(counts) and max(counts) > IMBALANCE * max(min(counts), 1)


def metrics(table: pd.DataFrame, balanced: bool = False) -> dict:
    """For `dvc metrics show` / `dvc exp show`: few numbers, named for the question.

    Per backbone, the configuration selected on validation: its strategy, the share of
    the backbone frozen, test accuracy over seeds, trainable parameters, device time;
    per baseline, its test accuracy. `balanced`: balanced accuracy beside accuracy.
    """
    out = {}
    for _, row in selected(table).iterrows():
        out[row.backbone] = {
            "strategy": row.strategy,
            "frozen_share": _rounded(row.frozen_fraction, 3),
            "test_accuracy": _rounded(row.test_accuracy_mean, 4),
            "test_accuracy_sd": _rounded(row.test_accuracy_sd, 4),
            "trainable_params": _rounded(row.trainable_params, 0),
            "device_seconds": _rounded(row.device_seconds, 3),
        }
        if balanced:
            out[row.backbone]["balanced_accuracy"] = _rounded(row.test_balanced_accuracy_mean, 4)
    for _, row in table[table.kind != TRANSFER].iterrows():
        key = "_".join(filter(None, [row.backbone, row.kind]))
        out[key] = {
            "test_accuracy": _rounded(row.test_accuracy_mean, 4),
            "test_accuracy_sd": _rounded(row.test_accuracy_sd, 4),
        }
        if balanced:
            out[key]["balanced_accuracy"] = _rounded(row.test_balanced_accuracy_mean, 4)
    return dict(sorted(out.items()))


def _rounded(value, digits: int) -> float | None:
    """JSON has no NaN: a missing number (every seed failed) is null."""
    if pd.isna(value):
        return None
    return int(value) if digits == 0 else round(float(value), digits)


def device_label(kinds) -> str:
    """'GPU seconds' only when everything ran on a GPU; CPU time is never called GPU time."""
    kinds = set(pd.Series(list(kinds)).dropna())
    return {frozenset({"GPU"}): "GPU seconds", frozenset({"CPU"}): "CPU seconds"}.get(
        frozenset(kinds), "device seconds"
    )
