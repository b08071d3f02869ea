"""Stage `report`: compare every backbone's sweep in one document.

    python -m pipeline.report

Reads `results/sweep/<name>/` for each backbone in params.yaml and the data
manifest; writes `reports/report.md`, `reports/trials.csv` (every trial of
every backbone), `reports/metrics.json` (for `dvc metrics show`) and
`reports/accuracy_vs_trainable_params.png` and `accuracy_vs_freeze_depth.png`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pipeline import data
from pipeline.config import load_params
from pipeline.errors import ThawError, run_main
from pipeline.prepare import MANIFEST
from pipeline.sweep import MODELS_DIR, RESULTS_DIR

REPORTS_DIR = Path("reports")
PLOT = "accuracy_vs_trainable_params.png"
DEPTH_PLOT = "accuracy_vs_freeze_depth.png"


def load_results(names: list[str], results_dir: Path = RESULTS_DIR) -> tuple[pd.DataFrame, list]:
    tables, bests = [], []
    for name in names:
        folder = results_dir / name
        if not (folder / "best.json").is_file():
            raise ThawError(
                f"no sweep results for backbone {name!r} in {folder}; run `dvc repro sweep@{name}`"
            )
        tables.append(pd.read_csv(folder / "trials.csv"))
        bests.append(json.loads((folder / "best.json").read_text()))
    return pd.concat(tables, ignore_index=True), bests


def device_label(trials: pd.DataFrame) -> str:
    """'GPU seconds' only when every trial trained on a GPU; CPU time is never called GPU time."""
    kinds = set(trials.device_kind.dropna())
    return (
        "GPU seconds"
        if kinds == {"GPU"}
        else "CPU seconds"
        if kinds == {"CPU"}
        else "device seconds"
    )


def metrics(bests: list[dict]) -> dict:
    return {
        b["backbone"]: {
            "best_val_accuracy": round(b["val_accuracy"], 4),
            "trainable_params": b["trainable_params"],
            "device_seconds": round(b["device_seconds"], 3),
        }
        for b in bests
    }


def plot_accuracy_vs_params(trials: pd.DataFrame, bests: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = trials[trials.state == "COMPLETE"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, group) in enumerate(done.groupby("backbone", sort=False)):
        color = colors[i % len(colors)]
        ax.scatter(
            group.trainable_params, group.val_accuracy, s=28, alpha=0.75, color=color, label=name
        )
        best = next(b for b in bests if b["backbone"] == name)
        ax.scatter(
            [best["trainable_params"]],
            [best["val_accuracy"]],
            s=160,
            marker="*",
            color=color,
            edgecolors="black",
            linewidths=0.8,
            zorder=3,
        )
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (log scale)")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Validation accuracy vs trainable parameters (star: best per backbone)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="backbone")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def strategy_table(trials: pd.DataFrame, unit: str) -> pd.DataFrame:
    """Best trial per backbone x strategy, with end and peak trainable counts."""
    done = trials[trials.state == "COMPLETE"]
    best = done.loc[done.groupby(["backbone", "strategy"], sort=False).val_accuracy.idxmax()]
    best = best.sort_values(["backbone", "val_accuracy"], ascending=[True, False])
    return pd.DataFrame(
        {
            "backbone": best.backbone,
            "strategy": best.strategy,
            "best val accuracy": best.val_accuracy.map("{:.3f}".format),
            "trials": [
                int(((done.backbone == b) & (done.strategy == s)).sum())
                for b, s in zip(best.backbone, best.strategy)
            ],
            "plan": best.plan,
            "trainable params (end / max)": [
                f"{e:,.0f} / {m:,.0f}"
                for e, m in zip(best.trainable_params, best.max_trainable_params)
            ],
            unit: best.device_seconds.map("{:.1f}".format),
        }
    )


def plot_accuracy_vs_depth(trials: pd.DataFrame, path: Path) -> None:
    """Yosinski-style transferability curve: accuracy against share of backbone frozen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = trials[trials.state == "COMPLETE"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=120, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = dict(zip(sorted(done.strategy.unique()), "osD^vP*X"))
    panels = (
        ("backbone frozen (only the head trains)", False),
        ("backbone partly fine-tuned", True),
    )
    for ax, (title, fine_tunes) in zip(axes, panels):
        part = done[done.fine_tunes == fine_tunes]
        for i, name in enumerate(done.backbone.unique()):
            for strategy, group in part[part.backbone == name].groupby("strategy"):
                ax.scatter(
                    100 * group.frozen_fraction,
                    group.val_accuracy,
                    s=30,
                    alpha=0.75,
                    color=colors[i % len(colors)],
                    marker=markers[strategy],
                    label=f"{name} / {strategy}",
                )
        ax.set_title(title)
        ax.set_xlabel("backbone parameters frozen at the end (%)")
        ax.set_xlim(-5, 105)
        ax.grid(True, alpha=0.3)
        if len(part):
            ax.legend(fontsize=7)
    axes[0].set_ylabel("validation accuracy")
    fig.suptitle("Validation accuracy vs freeze depth")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def markdown(
    trials: pd.DataFrame, bests: list[dict], manifest: dict, metas: dict[str, dict], top_n: int
) -> str:
    unit = device_label(trials)
    devices = ", ".join(sorted(set(trials.device.dropna())))
    best_rows = pd.DataFrame(
        [
            {
                "backbone": b["backbone"],
                "weights": b["weights"],
                "val accuracy": f"{b['val_accuracy']:.3f}",
                "strategy": b.get("strategy"),
                "freezing": b["plan"],
                "head units": b["params"]["head_units"],
                "learning rate": f"{b['params']['learning_rate']:.1e}",
                "trainable params": f"{b['trainable_params']:,}",
                "total params": f"{b['total_params']:,}",
                unit: f"{b['device_seconds']:.1f}",
            }
            for b in sorted(bests, key=lambda b: -b["val_accuracy"])
        ]
    )
    done = trials[trials.state == "COMPLETE"].sort_values(
        ["val_accuracy", "trainable_params"], ascending=[False, True]
    )
    comparison = pd.DataFrame(
        {
            "backbone": done.backbone,
            "trial": done.trial,
            "val accuracy": done.val_accuracy.map("{:.3f}".format),
            "strategy": done.strategy,
            "freezing": done.plan,
            "head units": done.head_units,
            "learning rate": done.learning_rate.map("{:.1e}".format),
            "trainable params (end / max)": [
                f"{e:,.0f} / {m:,.0f}"
                for e, m in zip(done.trainable_params, done.max_trainable_params)
            ],
            unit: done.device_seconds.map("{:.1f}".format),
        }
    )
    states = trials.groupby(["backbone", "state"]).size().unstack(fill_value=0)
    counts = manifest["counts"]
    split_text = ", ".join(f"{split} {sum(c.values())}" for split, c in counts.items())
    sources = "; ".join(
        f"{name}: {m['arch']}, weights `{m['weights']}`, source accuracy "
        f"{m['source_accuracy']:.3f} ({m['source_accuracy_method']}, inference mode)"
        for name, m in metas.items()
    )
    return f"""# Thaw report

Which backbone, how much of it frozen, at what cost: each backbone's best
configuration by validation accuracy, then every trial. Accuracy here is on
the validation split that the search maximised, so it is optimistic; the test
split is held out. Device time is **{unit}** of training on {devices}
{"(no GPU was used)" if unit == "CPU seconds" else ""}.

## Best configuration per backbone

{_fmt_table(best_rows)}

![validation accuracy vs trainable parameters]({PLOT})

## Strategies

Each freezing strategy's best trial per backbone. For strategies with phases
(`gradual`, `lp_ft`) the trainable count is given at the end and at its peak.

{_fmt_table(strategy_table(trials, unit))}

![validation accuracy vs freeze depth]({DEPTH_PLOT})

## All completed trials (top {min(top_n, len(comparison))} of {len(comparison)})

{_fmt_table(comparison.head(top_n))}

Every trial, with per-epoch accuracy and failures, is in `reports/trials.csv`.

## Provenance

- Dataset: `{manifest["dataset"]}` via TFDS (`{manifest["tfds_name"]}` {manifest["tfds_version"]}),
  images at {manifest["image_size"]} px; source classes {manifest["source_classes"]},
  target classes {manifest["target_classes"]}; splits: {split_text}.
- Backbones: {sources}.
- Trials by state:

{_fmt_table(states.reset_index())}
"""


def main() -> None:
    params = load_params()
    names = list(params.backbones)
    trials, bests = load_results(names)
    manifest = data.read_manifest(MANIFEST)
    metas = {n: json.loads((MODELS_DIR / n / "meta.json").read_text()) for n in names}
    REPORTS_DIR.mkdir(exist_ok=True)
    trials.to_csv(REPORTS_DIR / "trials.csv", index=False)
    (REPORTS_DIR / "metrics.json").write_text(json.dumps(metrics(bests), indent=1) + "\n")
    plot_accuracy_vs_params(trials, bests, REPORTS_DIR / PLOT)
    plot_accuracy_vs_depth(trials, REPORTS_DIR / DEPTH_PLOT)
    (REPORTS_DIR / "report.md").write_text(
        markdown(trials, bests, manifest, metas, params.report.top_n)
    )
    print(f"report: {len(trials)} trials over {len(names)} backbones -> {REPORTS_DIR}/report.md")


if __name__ == "__main__":
    run_main(main)
