"""The recommended model's card: what it is, what each file scored on the test images and
costs to run, its input contract and provenance, as card.json and card.md."""

from __future__ import annotations

import json
import math
from pathlib import Path

CONFIGURATION = ("backbone", "kind", "configuration", "strategy", "plan", "image_size",
                 "augmentation", "class_weight", "head_units", "learning_rate", "epochs",
                 "frozen_fraction", "trainable_params", "total_params", "val_accuracy",
                 "trial")  # fmt: skip
FORMAT_NAMES = {"keras": "Keras (.keras)", "saved_model": "SavedModel",
                "tflite": "TFLite float32", "tflite_int8": "TFLite int8"}  # fmt: skip


def class_names(manifest: dict) -> list[str]:
    return [manifest["class_names"][c] for c in manifest["target_classes"]]


def input_contract(manifest: dict, preprocess: str, size: int | None = None) -> dict:
    stored, rule = manifest["image_size"], manifest.get("resize", "crop")
    size = size or stored
    if size != stored:  # what the data went through: stored at the largest size, then scaled
        rule_text = f"to {stored}x{stored}, then to "
    else:
        rule_text = "to "
    square = "the centre square" if rule == "crop" else "the image padded with black to a square"
    resized = f"{square}, resized bilinearly (antialiased) {rule_text}{size}x{size}"
    return {
        "dtype": "uint8",
        "shape": [None, None, None, 3],
        "channels": "RGB",
        "inside_the_model": f"{resized}, then the backbone's '{preprocess}' pixel scaling",
        "tflite": (
            f"[batch, {size}, {size}, 3] RGB pixel values 0..255 (float32 for model.tflite, "
            f"uint8 for model_int8.tflite), already {resized}: TFLite has no kernel for the "
            "antialiased resize, so it is done before (as `prepare` does); the scaling is inside"
        ),
        "grayscale_rgba_palette_16bit": (
            "Convert other modes to 8-bit RGB first (`thaw predict` does: grey copied to 3 "
            "channels, 16-bit scaled to 8 bits, transparency over white)"
        ),
        "output": "probabilities over `classes`, in that order (softmax, sums to 1); "
        "model_int8.tflite gives them as uint8 with scale 1/256",
    }


def card(pick, meta: dict, reproduced: dict, files: dict, machine: dict, manifest: dict,
         versions: dict) -> dict:  # fmt: skip
    """Everything the card says, as JSON: `pick` (recommend/chosen.Pick), the backbone's
    `meta`, `reproduced` (how the retraining's per-image test results compare with the
    final stage's run), `files` (recommend/tested, with the latency rows)."""
    row, run = pick.row, pick.run
    return {
        "name": row.backbone,
        "classes": class_names(manifest),
        "configuration": {k: _plain(row[k], k in WHOLE) for k in CONFIGURATION if k in row},
        "chosen": {
            "rule": pick.choice.rule,
            "candidates": pick.choice.candidates,
            "best": f"{pick.choice.best.backbone} {pick.choice.best.configuration}",
            "lead_images": _plain(pick.choice.gap.lead),
            "discordant_images": _plain(pick.choice.gap.discordant),
        },
        "exported_seed": int(run.seed),
        "final_stage": {
            "test_accuracy": float(run.test_accuracy),
            "test_accuracy_mean": float(row.test_accuracy_mean),
            "test_accuracy_sd": _plain(row.test_accuracy_sd),
            "seeds": int(row.seeds),
        },
        "reproduced": reproduced,
        "files": files,
        "measured_on": machine,
        "input": input_contract(manifest, meta["preprocess"], _plain(row.image_size, True)),
        "data": {
            "dataset": manifest["dataset"],
            "data_sha256": manifest.get("data_sha256"),
            "image_size": manifest["image_size"],
            "images_per_split": {k: sum(v.values()) for k, v in manifest["counts"].items()},
            "trained_on": "train + val",
        },
        "backbone": {k: meta[k] for k in ("name", "arch", "weights", "sha256", "total_params")},
        "versions": versions,
    }


WHOLE = {"image_size", "head_units", "epochs", "trainable_params", "total_params", "trial"}


def _plain(value, whole: bool = False):
    """A JSON value: numpy scalars as Python's, NaN as null, counts as integers."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and math.isnan(value):
        return None
    return int(value) if whole and isinstance(value, float) else value


def files_table(c: dict) -> list[str]:
    """The card's and the report's table: each format's file, size, test and latency."""
    lines = [
        "| format | file | size | test accuracy (on the file) | as the final stage's run | "
        "agrees with model.keras | ms/image, batch 1 | ms/image, batch 32 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, f in c["files"].items():
        label = FORMAT_NAMES.get(name, name)
        if "error" in f:
            lines.append(f"| {label} | `{f['file']}` | not written: {f['error']} | | | | | |")
            continue
        lines.append(
            f"| {label} | `{f['file']}` | {f['bytes'] / 1e6:.2f} MB | {f['test_accuracy']:.4f} "
            f"({f['correct']}/{f['examples']}) | {f['same_as_final']}/{f['examples']} | "
            f"{f['agrees_with_keras']:.1%} | {_latency(f, 1)} | {_latency(f, 32)} |"
        )
    return lines


def _latency(f: dict, batch: int) -> str:
    found = f.get(f"latency_b{batch}")
    if not found:
        return "not timed" if f["file"] != "saved_model" else "as model.keras"
    return f"{found['median_ms']:.2f} ({found['min_ms']:.2f}–{found['max_ms']:.2f})"


def machine_text(m: dict) -> str:
    return (
        f"{m['device']} ({m['kind']}, {m['cores']} cores; TensorFlow's default threads, "
        f"LiteRT {m['threads']} threads; median of the repeats, fastest–slowest in brackets)"
    )


def configuration_text(conf: dict, stored: int) -> str:
    """The configuration in words: a transferred one's freezing and head, or a baseline."""
    lr, size = conf.get("learning_rate"), conf.get("image_size") or stored
    rate = f"; learning rate {lr:.2e}" if lr is not None else ""
    if conf.get("kind") != "transfer":  # a baseline: transfer did not pay on validation
        return f"{conf['plan']} (a baseline){rate}; {conf['epochs']} epoch(s); input {size} px"
    units = conf["head_units"]
    return (
        f"strategy `{conf['strategy']}`: {conf['plan']} ({conf['frozen_fraction']:.0%} of the "
        f"backbone's parameters frozen); head {'linear' if not units else f'{units} hidden units'}"
        f"{rate}; {conf['epochs']} epoch(s); input {size} px; augmentation "
        f"{conf.get('augmentation') or 'none'}"
    )


def card_markdown(c: dict) -> str:
    conf, final, rep = c["configuration"], c["final_stage"], c["reproduced"]
    same = ("the same images right and wrong as the final stage's run"
            if rep["differing_test_images"] == 0
            else f"**{rep['differing_test_images']} of {rep['examples']} test images scored "
            "otherwise than in the final stage's run**")  # fmt: skip
    lines = [
        f"# The recommendation: `{c['name'] or 'pixels'}` {conf.get('configuration', '')}",
        "",
        f"- **Classes** (output order): {', '.join(c['classes'])}",
        f"- **Configuration**: {configuration_text(conf, c['data']['image_size'])}; chosen by "
        f"`report.selection: {c['chosen']['rule']}` among {c['chosen']['candidates']} "
        "candidates",
        f"- **Parameters**: {conf['trainable_params']:,} trainable of {conf['total_params']:,}",
        f"- **Retrained** on train + val with seed {c['exported_seed']}, as the final stage "
        f"tested it: test accuracy {final['test_accuracy']:.4f} there, and this retraining "
        f"got {same}. Over {final['seeds']} seeds: {final['test_accuracy_mean']:.4f}"
        + (f" ± {final['test_accuracy_sd']:.4f}" if final["test_accuracy_sd"] is not None else ""),
        "",
        "## The files, each tested on the held-out test images and timed",
        "",
        *files_table(c),
        "",
        f"Measured on {machine_text(c['measured_on'])}.",
        "",
        f"- **Input of model.keras and saved_model/**: {c['input']['dtype']} RGB images, any "
        f"size, a batch of equal sizes; inside the model: {c['input']['inside_the_model']}. "
        f"{c['input']['grayscale_rgba_palette_16bit']}.",
        f"- **Input of the TFLite files**: {c['input']['tflite']}.",
        f"- **Output**: {c['input']['output']}",
        f"- **Data**: `{c['data']['dataset']}`, sha256 {str(c['data']['data_sha256'])[:16]}…, "
        f"images per split {c['data']['images_per_split']}",
        f"- **Backbone**: `{c['backbone']['name']}` ({c['backbone']['arch']}, weights "
        f"{c['backbone']['weights']}), sha256 {(c['backbone']['sha256'] or '-')[:16]}…",
        f"- **Versions**: {', '.join(f'{k} {v}' for k, v in c['versions'].items())}",
        "",
        "## Use it",
        "",
        "```python",
        "import keras, numpy as np",
        "from PIL import Image",
        "",
        "model = keras.models.load_model('model.keras')  # no Thaw import needed",
        "image = np.asarray(Image.open('photo.jpg').convert('RGB'))[None]  # uint8 (1, H, W, 3)",
        "probabilities = model.predict(image)[0]",
        "```",
        "",
        "or `thaw predict photo.jpg`; TF Serving reads `saved_model/`; LiteRT "
        "(`ai_edge_litert.interpreter.Interpreter`) reads the `.tflite` files.",
        "",
    ]
    return "\n".join(lines)


def write_card(out: Path, c: dict) -> None:
    (out / "card.json").write_text(json.dumps(c, indent=1) + "\n")
    (out / "card.md").write_text(card_markdown(c))
