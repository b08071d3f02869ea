"""The exported model's card: its configuration, test scores, input contract and
provenance, as card.json and card.md."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline import provenance


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
    return {
        "dtype": "uint8",
        "shape": [None, None, None, 3],
        "channels": "RGB",
        "inside_the_model": (
            f"{square}, resized bilinearly (antialiased) {rule_text}{size}x{size}, then the "
            f"backbone's '{preprocess}' pixel scaling"
        ),
        "grayscale_rgba_palette_16bit": (
            "Convert other modes to 8-bit RGB first (`thaw predict` does: grey copied to 3 "
            "channels, 16-bit scaled to 8 bits, transparency over white)"
        ),
        "output": "probabilities over `classes`, in that order (softmax, sums to 1)",
    }


def card(name: str, selected: dict, seeds: dict, manifest: dict, meta: dict, test: dict) -> dict:
    return {
        "name": name,
        "classes": class_names(manifest),
        "files": {
            "keras": "model.keras",
            "saved_model": "saved_model/",
            "load": "keras.models.load_model('model.keras'): built-in layers only, "
            "nothing from Thaw to import",
        },
        "configuration": selected,
        "test": {**test, "seed": selected["seed"]},
        "test_over_seeds": seeds,
        "input": input_contract(manifest, meta["preprocess"], selected.get("image_size")),
        "data": {
            "dataset": manifest["dataset"],
            "data_sha256": manifest.get("data_sha256"),
            "image_size": manifest["image_size"],
            "images_per_split": {k: sum(v.values()) for k, v in manifest["counts"].items()},
            "trained_on": "train + val",
        },
        "backbone": {
            "name": meta["name"],
            "arch": meta["arch"],
            "weights": meta["weights"],
            "sha256": meta["sha256"],
            "total_params": meta["total_params"],
        },
        "versions": provenance.package_versions(),
    }


def card_markdown(c: dict) -> str:
    conf, test, seeds = c["configuration"], c["test"], c["test_over_seeds"]
    lines = [
        f"# {c['name']}: the selected configuration, retrained on train + val",
        "",
        f"- **Classes** (output order): {', '.join(c['classes'])}",
        f"- **Configuration**: strategy `{conf['strategy']}`: {conf['plan']} "
        f"({conf['frozen_fraction']:.0%} of the backbone's parameters frozen); head "
        f"{'linear' if not conf['head_units'] else str(conf['head_units']) + ' hidden units'}; "
        f"learning rate {conf['learning_rate']:.2e}; {conf['epochs']} epoch(s); input "
        f"{conf.get('image_size', c['data']['image_size'])} px; augmentation "
        f"{conf.get('augmentation', 'none')}; search trial "
        f"{conf['trial']}, seed {conf['seed']}",
        f"- **Parameters**: {conf['trainable_params']:,} trainable of {conf['total_params']:,}",
        f"- **This model's test accuracy**: {test['accuracy']:.4f} (balanced "
        f"{test['balanced_accuracy']:.4f}) on {test['examples']} held-out test images, "
        "measured on this file",
        f"- **Over {seeds['seeds']} seeds**: {seeds['mean']:.4f} ± {seeds['sd']:.4f} "
        "(same configuration, other initialisations)",
        f"- **Input**: {c['input']['dtype']} RGB images, any size, batch of equal sizes; "
        f"inside the model: {c['input']['inside_the_model']}. "
        f"{c['input']['grayscale_rgba_palette_16bit']}.",
        f"- **Output**: {c['input']['output']}",
        f"- **Data**: `{c['data']['dataset']}`, sha256 {str(c['data']['data_sha256'])[:16]}…, "
        f"images per split {c['data']['images_per_split']}",
        f"- **Backbone**: `{c['backbone']['name']}` ({c['backbone']['arch']}, weights "
        f"{c['backbone']['weights']}), sha256 {c['backbone']['sha256'][:16]}…",
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
        f"or `thaw predict {c['name']} photo.jpg`; TF Serving reads `saved_model/`.",
        "",
    ]
    return "\n".join(lines)


def write_card(out: Path, c: dict) -> None:
    (out / "card.json").write_text(json.dumps(c, indent=1) + "\n")
    (out / "card.md").write_text(card_markdown(c))
