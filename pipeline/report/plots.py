"""The report's figures as PNG files: accuracy against cost with Pareto fronts, the
freeze-depth curve, and parameter importances. Each takes a table from tables.py."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.evaluate.ranking import LINEAR_PIXELS, SCRATCH, TRANSFER
from pipeline.report.blocks import curve_seeds
from pipeline.report.tables import Tables

FIGURES = {  # report.md embeds them by these names
    "params": "accuracy_vs_trainable_params.png",
    "time": "accuracy_vs_device_time.png",
    "latency": "accuracy_vs_latency.png",
    "depth": "accuracy_vs_freeze_depth.png",
    "importances": "importances.png",
}


def draw(tables: Tables, folder: Path) -> None:
    """Every figure of the report into `folder`, named as in FIGURES."""
    table = tables.headline
    accuracy_vs_cost(
        table, "trainable_params", "params", "trainable parameters", folder / FIGURES["params"]
    )
    accuracy_vs_cost(
        table, "device_seconds", "time", f"{tables.unit} per run", folder / FIGURES["time"]
    )
    card = tables.results.card
    if card is not None and table.latency_b1_ms.notna().any():
        on = card["measured_on"]["device"]
        label = f"ms per image at batch 1 on {on} (served Keras model)"
        accuracy_vs_cost(table, "latency_b1_ms", "latency", label, folder / FIGURES["latency"])
    else:
        _placeholder(
            "latency not measured yet: run `dvc repro export`", folder / FIGURES["latency"]
        )
    depth_curve(tables.depth_curve, folder / FIGURES["depth"])
    importances(tables.results.importances, folder / FIGURES["importances"])


MARKERS = {TRANSFER: "o", SCRATCH: "X", LINEAR_PIXELS: "s"}
KIND_NAMES = {
    TRANSFER: "transferred (top-k, each strategy's best)",
    SCRATCH: "from scratch",
    LINEAR_PIXELS: "linear",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(names) -> dict[str, str]:
    cycle = _pyplot().rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {name: cycle[i % len(cycle)] for i, name in enumerate(n for n in names if n)}
    colors[""] = "dimgray"  # the linear baseline belongs to no backbone
    return colors


def _front_line(ax, points: pd.DataFrame, cost: str, **style) -> None:
    """The front as a staircase: from the cheapest point up to the most accurate one."""
    points = points.sort_values(cost)
    ax.step(points[cost], points.test_accuracy_mean, where="post", **style)


def _log_x(ax) -> None:
    """Log scale labelled at 1, 2 and 5 per decade: one label per decade is too few to read
    off a cost that spans under two decades."""
    from matplotlib import ticker

    ax.set_xscale("log")
    axis = ax.xaxis
    axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def accuracy_vs_cost(table: pd.DataFrame, cost: str, short: str, x_label: str, path: Path):
    plt = _pyplot()
    colors = _colors(table.backbone.unique())
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for (backbone, kind), group in table.groupby(["backbone", "kind"], sort=False):
        ax.errorbar(
            group[cost],
            group.test_accuracy_mean,
            yerr=group.test_accuracy_sd,
            fmt=MARKERS[kind],
            color=colors[backbone],
            ms=7,
            capsize=3,
            label=f"{backbone or 'pixels'}: {KIND_NAMES[kind]}",
        )
    for backbone, group in table[table[f"front_{short}_backbone"]].groupby("backbone"):
        _front_line(ax, group, cost, color=colors[backbone], lw=1, alpha=0.6)
    overall = table[table[f"front_{short}_overall"]]
    _front_line(ax, overall, cost, color="black", lw=1.8, ls="--", label="Pareto front, overall")
    _log_x(ax)
    ax.set_xlabel(f"{x_label} (log scale)")
    ax.set_ylabel("test accuracy (mean ± sd over seeds)")
    ax.set_title(f"Test accuracy vs {x_label.split(' (')[0]}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _placeholder(text: str, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 1.5), dpi=120)
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    fig.savefig(path)
    plt.close(fig)


MODE_LINES = {"fine-tuned": "-", "frozen": "--", "one segment fine-tuned": ":"}
MODE_MARKERS = {"fine-tuned": "o", "frozen": "^", "one segment fine-tuned": "s"}


def depth_curve(curve: pd.DataFrame, path: Path) -> None:
    """Yosinski-style: accuracy against share frozen, frozen features vs fine-tuned above."""
    plt = _pyplot()
    colors = _colors(curve.backbone.unique())
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for (backbone, mode), group in curve.groupby(["backbone", "mode"], sort=False):
        group = group.sort_values("frozen_fraction")
        ax.errorbar(
            100 * group.frozen_fraction,
            group.val_accuracy_mean,
            yerr=group.val_accuracy_sd,
            color=colors[backbone],
            ls=MODE_LINES.get(mode, "-"),
            marker=MODE_MARKERS.get(mode, "o"),
            capsize=3,
            label=_curve_label(backbone, mode, group.iloc[0]),
        )
    ax.set_xlabel("backbone parameters frozen below the cut (%)")
    ax.set_ylabel(f"validation accuracy ({curve_seeds(curve)})")
    ax.set_xlim(-5, 105)
    ax.set_title("Freeze depth: frozen features only vs layers above the cut fine-tuned")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _curve_label(backbone: str, mode: str, row) -> str:
    decay, fraction = row.get("lr_decay"), row.get("backbone_lr_fraction")
    rates = "" if fraction is None or pd.isna(fraction) else f", backbone {fraction:.2g}x"
    rates += "" if pd.isna(decay) else f", rate /{decay:.2f} per segment down"
    settings = f"trial {row.settings_trial}: head {row.head_units}, lr {row.learning_rate:.1e}"
    return f"{backbone}: {mode} ({settings}{rates})"


def importances(table: pd.DataFrame, path: Path) -> None:
    plt = _pyplot()
    names = list(table.backbone.unique()) or ["(none)"]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), dpi=120)
    axes = [axes] if len(names) == 1 else list(axes)
    colors = _colors(names)
    for ax, name in zip(axes, names):
        part = table[table.backbone == name].sort_values("importance")
        ax.barh(part.parameter, part.importance, color=colors.get(name, "gray"))
        ax.set_title(name)
        ax.set_xlabel("fANOVA importance (share of variance)")
        ax.set_xlim(0, 1)
        ax.grid(True, axis="x", alpha=0.3)
        if part.empty:
            ax.text(0.5, 0.5, "too few completed trials", ha="center", transform=ax.transAxes)
    fig.suptitle("Which search parameters mattered (validation accuracy)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
