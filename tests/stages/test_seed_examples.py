"""The seed article's recipes (examples/seed/): each params file passes Thaw's own checks
as shipped, and each runs end to end in-process (every stage's main(), in dvc.yaml's order)
with random weights at 32 px on a tiny generated folder, training exactly the layers the
recipe trains and leaving the rest bit-identical."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import config, paths
from pipeline.errors import ParamsError
from pipeline.preflight import load_params, parse_params
from tests.conftest import ROOT, write_params
from tests.image_folders import class_folder

SEED = ROOT / "examples" / "seed"
README = SEED / "README.md"
RESNET, VGG, H5 = "resnet50_gap_dense1024", "vgg16_last5", "h5_by_name"
RECIPES = (RESNET, VGG, H5)
CLASSES = {"ant": 8, "bee": 8, "cat": 8}  # 3 train, 3 val and 2 test images each

# VGG16 without top, `base.layers[-5:]`: one pooling layer, block 5's three convolutions
# and its pooling layer. Thaw counts layers WITH weights, so last_n_layers 3.
VGG_TRAINED = ("block5_conv1", "block5_conv2", "block5_conv3")


def recipe(name: str) -> dict:
    return config.read_yaml(SEED / f"{name}.yaml")


def backbone_of(raw: dict) -> tuple[str, dict]:
    (name, spec), *more = raw["backbones"].items()
    assert not more, "a recipe has one backbone"
    return name, spec


@pytest.mark.parametrize("name", RECIPES)
def test_every_key_of_a_recipe_has_a_comment(name):
    lines = (SEED / f"{name}.yaml").read_text().splitlines()
    keyed = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#") and ":" in ln]
    assert [ln for ln in keyed if "#" not in ln and not ln.rstrip().endswith(":")] == []


@pytest.mark.parametrize("name", RECIPES)
def test_a_recipe_is_a_whole_params_file_for_dvc_yaml(name):
    """Every key the default sets, so each stage finds the params keys dvc.yaml declares."""

    def keys(node: dict, prefix: str = "") -> set[str]:
        out = set()
        for key, value in node.items():
            out.add(prefix + key)
            if isinstance(value, dict) and key != "backbones":
                out |= keys(value, f"{prefix}{key}.")
        return out

    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert keys(default) <= keys(recipe(name))
    assert f"cp examples/seed/{name}.yaml params.yaml && dvc repro" in README.read_text()


@pytest.mark.parametrize(
    ("name", "file"),
    [
        (RESNET, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        (VGG, "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    ],
)
def test_an_imagenet_recipe_is_valid_offline_once_keras_has_the_file_its_readme_names(
    name, file, tmp_path, monkeypatch
):
    """`weights: imagenet` needs a network or Keras's cached file: the README names that
    file, exactly as the check looks for it, and `weights:` takes its path instead."""
    from pipeline.data import datasets
    from pipeline.models import backbones

    monkeypatch.chdir(ROOT)  # data.folder is relative to the project, as dvc runs it
    raw = recipe(name)
    key, spec = backbone_of(raw)
    arch = spec.get("arch", key)
    assert spec["weights"] == "imagenet" and file in README.read_text()
    url = backbones.ARCHITECTURES[arch].imagenet_url(1.0, raw["data"]["image_size"])
    assert url.rsplit("/", 1)[1] == file and url in README.read_text()
    params = parse_params(raw)
    assert params.search.strategies == [{RESNET: "head_only", VGG: "last_n_layers"}[name]]
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(datasets, "network_available", lambda: False)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ParamsError, match=re.escape(file)):
        load_params(path)
    (tmp_path / "keras" / "models").mkdir(parents=True)
    (tmp_path / "keras" / "models" / file).write_bytes(b"")
    load_params(path)  # Keras's cache holds the download: nothing to fetch


def readme_snippet() -> str:
    """The README's Python that saves the shipped ImageNet MobileNet as a whole .h5 model."""
    text = README.read_text()
    found = re.search(r"python - <<'EOF'\n(.*?)\nEOF\n", text, re.S)
    assert found, "examples/seed/README.md lost its snippet that makes the .h5 model"
    return found.group(1)


def test_the_by_name_recipe_fits_the_model_its_readme_makes(tmp_path, monkeypatch):
    """The README's snippet, run as written on the shipped weights, makes the file the
    recipe names; Thaw's check reads its config and finds every by_name pattern in it."""
    import keras

    from pipeline.models import model_file, weights_file
    from pipeline.models.strategies import resolve_layer_patterns

    (tmp_path / "weights").mkdir()
    shipped = "weights/mobilenet_2_5_224_tf_no_top.h5"
    (tmp_path / shipped).symlink_to(ROOT / shipped)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    exec(readme_snippet(), {})
    keras.backend.clear_session()
    raw = recipe(H5)
    key, spec = backbone_of(raw)
    assert weights_file.kind(spec["weights"]) == weights_file.MODEL  # a whole model
    layers = model_file.describe(spec["weights"]).layers
    write_params(tmp_path, raw)
    params = load_params()
    assert params.backbones[key].by_name == spec["by_name"]
    frozen = resolve_layer_patterns(layers, spec["by_name"])
    assert set(layers) - set(frozen) - {"input_layer"} == set(mobilenet_top_blocks())


def mobilenet_top_blocks() -> list[str]:
    """The layers of MobileNet's blocks 12 and 13, which the by_name recipe trains."""
    names = ["conv_pad_12"]  # block 12 has stride 2
    for block in (12, 13):
        for kind in ("dw", "pw"):
            names += [f"conv_{kind}_{block}{part}" for part in ("", "_bn", "_relu")]
    return names


# --- end to end, random weights -----------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """A backbone's weights by layer name, as written to its file, and how many of each
    layer's weights are trainable (BatchNorm's moving statistics are not)."""

    weights: dict[str, list[np.ndarray]]
    trainable: dict[str, int]

    @classmethod
    def of(cls, model) -> Snapshot:
        return cls(
            {layer.name: [w.numpy() for w in layer.weights] for layer in model.layers},
            {layer.name: sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
             for layer in model.layers},
        )  # fmt: skip

    def changed(self, backbone) -> set[str]:
        """Layers of `backbone` of which any weight differs from this snapshot's."""
        after = Snapshot.of(backbone).weights
        assert set(after) - {"image"} <= set(self.weights)  # `image`: at_size's new input
        return {
            n
            for n, ws in after.items()
            if n in self.weights
            and any(not np.array_equal(a, b) for a, b in zip(ws, self.weights[n]))
        }


def random_weights_file(arch: str, path: Path) -> Snapshot:
    """A Keras 3 `.weights.h5` of `arch` with random weights at 32 px."""
    import keras

    from pipeline.config import BackboneParams
    from pipeline.models import backbones

    model = backbones.build(arch, 32, None, BackboneParams(arch=arch))
    model.save_weights(path)
    snapshot = Snapshot.of(model)
    keras.backend.clear_session()
    return snapshot


def random_model_file(path: Path) -> Snapshot:
    """The README's model (MobileNet 0.25, no top, any input size) with random weights,
    saved whole as .h5. Its BatchNorm statistics are set on random pixels first: with the
    initial ones (mean 0, variance 1) activations vanish to 1e-14 by block 12, and Adam's
    steps on such gradients round away, so a layer that trains would not change."""
    import keras

    from pipeline.train.batchnorm import recalibrate_batchnorm

    model = keras.applications.MobileNet(
        input_shape=(None, None, 3), alpha=0.25, include_top=False, weights=None
    )
    pixels = np.random.default_rng(0).uniform(-1, 1, (64, 32, 32, 3)).astype(np.float32)
    recalibrate_batchnorm(model, pixels)
    model.save(path)
    snapshot = Snapshot.of(model)
    keras.backend.clear_session()
    return snapshot


def tiny(raw: dict, weights: Path, folder: Path) -> dict:
    """The recipe at 32 px on the tiny folder, with 2 trials of 2 epochs: every key that
    says what trains (strategy, head, last_n_layers, by_name) as shipped."""
    raw = json.loads(json.dumps(raw))
    key, _ = backbone_of(raw)
    raw["backbones"][key]["weights"] = str(weights)
    raw["data"].update(folder=str(folder), image_size=32, train_per_class=3, val_per_class=3)
    raw["search"].update(epochs=2, head_only_epochs=2, batch_size=8, augment_views=1)
    raw["sweep"].update(n_trials=2, min_trials_per_strategy=2, max_trials=4)
    raw["report"].update(seeds=2, curve_seeds=1, top_k=1)
    return raw


def run_recipe(raw: dict, folder: Path, monkeypatch) -> tuple[pd.DataFrame, object, object]:
    """Every stage of dvc.yaml up to the report, in order, in this process, in `folder`
    (the working directory): each stage's main(), as `dvc repro` runs it (all but
    `export`, whose TFLite conversions of a 25 M-parameter model would double the test,
    and which tests/stages/test_folder_e2e.py runs). The sweep's trials, and the
    rank-1 trial retrained as the final stage ran it, built as the export builds a model,
    with its backbone."""
    import keras

    from pipeline.stages import (
        backbone,
        final,
        linear_baseline,
        prepare,
        report,
        score,
        screen,
        sweep,
        weights,
    )

    write_params(folder, raw)
    (name,) = raw["backbones"]
    for stage, args in [
        (prepare, ()), (weights, ()), (backbone, (name,)), (score, (name,)), (screen, ()),
        (sweep, (name,)), (final, (name,)), (linear_baseline, ()), (report, ()),
    ]:  # fmt: skip
        monkeypatch.setattr(sys, "argv", [stage.__name__, *args])
        stage.main()
    assert (folder / "reports" / "report.md").read_text().startswith("# Thaw report")
    trials = pd.read_csv(paths.SWEEP_DIR / name / "trials.csv", dtype={"val_correct": str})
    exported = rank_one_model(name, trials)
    features = next(layer for layer in exported.layers if isinstance(layer, keras.Model))
    return trials, exported, features


def rank_one_model(name: str, trials: pd.DataFrame):
    """The rank-1 trial retrained with the final stage's first seed (retrain.retrain), as
    export.build serves it."""
    from pipeline.data import datasets
    from pipeline.evaluate import baselines, retrain
    from pipeline.models.configuration import recorded_size
    from pipeline.train.context import Contexts
    from pipeline.winner import export

    params, manifest = load_params(), datasets.read_manifest(paths.MANIFEST)
    row = retrain.trial_row(trials, params.report.top_k, None)
    ctx = Contexts(name, params, manifest, retrain.SPLITS).at(recorded_size(row))
    seed = baselines.retrain_seeds(params.seed, 1)[0]
    held = {}

    def keep(head) -> None:
        held["model"] = export.build(ctx.backbone, export.head_layers(head), ctx.meta, manifest)

    retrain.retrain(ctx, row, seed, keep)
    return held["model"]


def head_size(units: int, features: int) -> int:
    """Parameters of Thaw's head on `features` pooled channels: [Dense(units)], softmax."""
    if units == 0:
        return features * len(CLASSES) + len(CLASSES)
    return features * units + units + units * len(CLASSES) + len(CLASSES)


@pytest.fixture
def photos(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return class_folder(tmp_path / "photos", CLASSES)


@pytest.mark.slow
def test_resnet50_recipe_trains_a_gap_dense1024_head_on_a_frozen_backbone(
    tmp_path, photos, monkeypatch
):
    before = random_weights_file("resnet50", tmp_path / "resnet50.weights.h5")
    raw = tiny(recipe(RESNET), tmp_path / "resnet50.weights.h5", photos)
    trials, exported, backbone = run_recipe(raw, tmp_path, monkeypatch)
    assert set(trials.strategy) == {"head_only"} and set(trials.head_units) == {1024}
    assert (trials.cached_phases == 1).all()  # on the frozen backbone's cached features
    assert set(trials.trainable_params) == {head_size(1024, 2048)}  # ResNet50 pools 2048
    hidden = exported.get_layer("head_hidden")
    assert hidden.units == 1024 and hidden.get_config()["activation"] == "relu"
    assert before.changed(backbone) == set()  # every backbone weight bit-identical


@pytest.mark.slow
def test_vgg16_recipe_trains_exactly_block5_the_last_five_layers(tmp_path, photos, monkeypatch):
    before = random_weights_file("vgg16", tmp_path / "vgg16.weights.h5")
    raw = tiny(recipe(VGG), tmp_path / "vgg16.weights.h5", photos)
    trials, _, backbone = run_recipe(raw, tmp_path, monkeypatch)
    last_five = [layer.name for layer in backbone.layers[-5:]]
    assert last_five == ["block4_pool", *VGG_TRAINED, "block5_pool"]
    assert set(trials.strategy) == {"last_n_layers"}
    assert (trials.cached_phases == 1).all()  # block 5 trains on block4_pool's cached outputs
    assert trials.plan.str.startswith("last 3 layers with weights trainable").all()
    trained = sum(before.trainable[n] for n in VGG_TRAINED)
    assert trained == 3 * (3 * 3 * 512 * 512 + 512)  # 7.1 M of VGG16's 14.7 M
    assert list(trials.trainable_params) == [trained + head_size(u, 512) for u in trials.head_units]
    assert before.changed(backbone) == set(VGG_TRAINED)  # the rest bit-identical


@pytest.mark.slow
def test_h5_recipe_freezes_exactly_the_layers_its_by_name_patterns_name(
    tmp_path, photos, monkeypatch
):
    before = random_model_file(tmp_path / "model.h5")
    raw = tiny(recipe(H5), tmp_path / "model.h5", photos)
    trials, _, backbone = run_recipe(raw, tmp_path, monkeypatch)
    assert set(trials.strategy) == {"by_name"}
    top = mobilenet_top_blocks()
    trained = sum(before.trainable[n] for n in top)
    assert list(trials.trainable_params) == [trained + head_size(u, 256) for u in trials.head_units]
    # BatchNorm runs in inference mode: its moving statistics stay, its scale and offset train
    assert before.changed(backbone) == {n for n in top if before.trainable[n]} == {
        f"conv_{kind}_{block}{part}" for kind in ("dw", "pw") for block in (12, 13)
        for part in ("", "_bn")
    }  # fmt: skip
