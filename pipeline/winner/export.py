"""The selected configuration as one self-contained model, and its card.

    models/best/<name>/model.keras      raw uint8 RGB images of any size -> class probabilities
    models/best/<name>/saved_model/     the same as a TensorFlow SavedModel (TF Serving, TFLite)
    models/best/<name>/card.json, card.md

The model is built from Keras's own layers only (Resizing, Rescaling, the
backbone's functional graph, pooling, Dense), so `keras.models.load_model` reads
it in a process that imports nothing from Thaw. Its resizing is datasets.resizer,
the rule `prepare` used; the pixel scaling is the backbone's preprocessing.
The card's test accuracy is measured on this file's model, on the test split.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline import provenance
from pipeline.data import datasets
from pipeline.models import backbones
from pipeline.train import loop

_CAFFE_MEANS = (103.939, 116.779, 123.68)  # BGR, as backbones._caffe


def scaling_layer(name: str):
    """backbones.PREPROCESSORS[name] as a built-in Keras layer (None: nothing to do)."""
    import keras

    if name == "raw":
        return None
    if name == "unit":
        return keras.layers.Rescaling(1.0 / 255.0, name="scale")
    if name == "symmetric":
        return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")
    if name == "caffe":  # RGB -> BGR and minus the channel means: a fixed 1x1 convolution
        swap = np.zeros((1, 1, 3, 3), np.float32)
        for out_channel in range(3):
            swap[0, 0, 2 - out_channel, out_channel] = 1.0
        layer = keras.layers.Conv2D(3, 1, trainable=False, name="scale")
        layer.build((None, None, None, 3))
        layer.set_weights([swap, -np.array(_CAFFE_MEANS, np.float32)])
        return layer
    raise ValueError(
        f"no exported form of preprocess {name!r}; known: {list(backbones.PREPROCESSORS)}"
    )


def build(backbone, head, meta: dict, manifest: dict):
    """uint8 images (batch, H, W, 3) -> resize -> scale -> backbone -> head -> probabilities."""
    import keras

    features = keras.models.clone_model(backbone)
    features.set_weights(backbone.get_weights())
    inputs = keras.Input((None, None, 3), dtype="uint8", name="image")
    x = keras.layers.Identity(dtype="float32", name="to_float")(inputs)
    x = datasets.resizer(manifest["image_size"], manifest.get("resize", "crop"))(x)
    size = backbone.input_shape[1]
    if size != manifest["image_size"]:  # a searched smaller size: scaled as the data was
        x = _rounded(datasets.resizer(size, "crop", "resize_searched")(_rounded(x)))
    scale = scaling_layer(meta["preprocess"])
    if scale is not None:
        x = scale(x)
    x = features(x, training=False)
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if head.hidden is not None:  # dropout is a training-time layer: nothing at inference
        hidden = keras.layers.Dense(head.hidden.units, "relu", name="head_hidden")
        x = hidden(x)
        hidden.set_weights(head.hidden.get_weights())
    logits = keras.layers.Dense(head.logits.units, "softmax", name="probabilities")
    outputs = logits(x)
    logits.set_weights(head.logits.get_weights())
    return keras.Model(inputs, outputs, name=f"thaw_{meta['name']}")


def _rounded(x):
    """To whole pixel values as `prepare` stores them (uint8), so training and serving agree."""
    import keras

    return keras.ops.clip(keras.ops.round(x), 0.0, 255.0)


def evaluate(model, images: np.ndarray, labels: np.ndarray) -> dict:
    probabilities = loop.outputs(model, images)
    found = np.argmax(probabilities, axis=-1)
    return {
        "accuracy": float(np.mean(found == labels)),
        "balanced_accuracy": loop.balanced_accuracy(found, labels),
        "examples": int(len(labels)),
    }


def save_keras(model, out: Path) -> None:
    """model.keras alone: `Background` adds saved_model/ and the test from this file."""
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")


def saved_copy_and_test(out: Path, test) -> dict:
    """Load out/model.keras as a user would, write it as saved_model/, and test it."""
    import keras

    model = keras.models.load_model(out / "model.keras")
    model.export(str(out / "saved_model"), format="tf_saved_model", verbose=False)
    return evaluate(model, test.images, test.labels)


READY, GO = "ready", "go"


class Background:
    """`saved_copy_and_test` in a process of its own, on the core the stage leaves idle.

    A stage's training runs use about one of a CPU's two cores; writing the SavedModel
    (10 s for MobileNetV2) and testing the saved file (8 s) took a quarter of
    `final@<name>`. The process starts TensorFlow and reads the test split at once,
    says `ready`, and then waits, idle, for `go()`: the stage calls it after the runs
    whose seconds the report quotes, so that none of them is measured beside it.
    """

    def __init__(self, out: Path, manifest: dict, seed: int, deterministic: bool):
        import subprocess
        import sys

        from pipeline.data import image_store

        command = [sys.executable, "-m", __name__, str(out), str(image_store.FOLDER),
                   str(seed), str(int(deterministic))]  # fmt: skip
        self.out = out
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.process.stdin.write(json.dumps(manifest) + "\n")
        self.process.stdin.flush()

    def wait_ready(self) -> None:
        """Until the process has started (or ended: `result` then says why)."""
        for line in self.process.stdout:
            if line.strip() == READY:
                return

    def go(self) -> None:
        self.process.stdin.write(GO + "\n")
        self.process.stdin.close()

    def result(self) -> dict:
        """The saved file's test scores; waits for the process."""
        from pipeline.errors import ThawError

        text = self.process.stdout.read()
        if self.process.wait() != 0 or not text.strip():
            raise ThawError(
                f"writing {self.out}/saved_model and testing the saved model failed "
                f"(exit status {self.process.returncode}; its error is above)"
            )
        return json.loads(text.strip().splitlines()[-1])

    def stop(self) -> None:
        """End the process if it still runs (a stage that failed, or never said go)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None and not stream.closed:
                stream.close()


def main() -> None:
    """python -m pipeline.winner.export OUT IMAGES_FOLDER SEED DETERMINISTIC

    stdin: the manifest as one line of JSON, then `go` (or end of input: nothing to do)."""
    import sys

    from pipeline import quiet_tf
    from pipeline.data import image_store
    from pipeline.train import devices

    out, folder, seed, deterministic = sys.argv[1:5]
    image_store.FOLDER = Path(folder)
    manifest = json.loads(sys.stdin.readline())
    quiet_tf.load()
    devices.configure(int(seed), deterministic == "1")
    import keras  # noqa: F401  (started now, not after go)

    test = datasets.load_target_splits(manifest, ("test",))["test"]
    print(READY, flush=True)
    if sys.stdin.readline().strip() != GO:
        return  # the stage ended without a model to export
    print(json.dumps(saved_copy_and_test(Path(out), test)), flush=True)


if __name__ == "__main__":
    main()


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
