"""What every run over one backbone needs and no run changes: built once per stage.

The sweep and the final stage both train many configurations of one backbone.
The backbone is loaded once; each run starts by restoring its original weights
(`restore`), which is cheaper than reading the file again and keeps the
activation cache's prefixes valid.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import json
from dataclasses import dataclass

import numpy as np

from pipeline.config import Params, SearchParams
from pipeline.data import augment, datasets, image_store
from pipeline.data.image_store import MB, Rows
from pipeline.models import backbones, flops, strategies
from pipeline.paths import CACHE_DIR, MODELS_DIR
from pipeline.train import activations, devices, loop
from pipeline.train.loop import Views
from pipeline.train.pool import Pool


@dataclass(frozen=True)
class RunContext:
    backbone: object
    meta: dict  # models/<name>/meta.json
    pristine: list[np.ndarray]
    cache: activations.ActivationCache
    pool: Pool
    info: strategies.BackboneInfo
    splits: dict[str, tuple[object, np.ndarray]]  # name -> (images as a tf.Tensor, labels)
    num_classes: int
    search: SearchParams
    layer_costs: list[flops.LayerCost]  # forward FLOPs per example of each backbone layer
    feature_dims: tuple[int, ...]  # the backbone's output, the head's input
    seed: int
    size: int  # input pixels per side
    raw: dict[str, Rows]  # training splits as uint8 pixels on disk: what augmentation draws from
    streamed: bool = False  # splits read from disk a batch at a time (too big to hold)

    @property
    def train(self) -> tuple[object, np.ndarray]:
        return self.splits["train"]

    @property
    def val(self) -> tuple[object, np.ndarray]:
        return self.splits["val"]

    def training(self, split: str, level: str, seed: int) -> tuple[object, np.ndarray]:
        """A training split as a phase trains on it: as it is for augmentation `none`, else
        `Views`: K fixed views (drawn once per context from the run's seed, and cached
        through frozen prefixes like any split) plus fresh draws seeded by `seed` for phases
        that train from the input. Memory: K x the split's images at this size, as float32
        (streamed: on disk as uint8)."""
        images, labels = self.splits[split]
        if level == augment.NONE:
            return images, labels
        names = tuple(f"{split}~{level}~{k}" for k in range(self.search.augment_views))
        if names[0] not in self.cache.inputs:
            self.cache.add_inputs(dict(zip(names, self._fixed_views(split, level, len(names)))))
        fixed = tuple(self.cache.inputs[n] for n in names)
        fresh: list[augment.Augmenter] = []  # built on first use: a cached plan never draws

        def draw(pixels: np.ndarray) -> np.ndarray:
            if not fresh:
                fresh.append(augment.Augmenter(level, seed))
            return self._scaled(fresh[0](pixels))

        if self.streamed:  # fresh draws a batch at a time, as the loop reads them
            online = image_store.Mapped(self.raw[split], draw)
            return Views(fixed, names, lambda _epoch: online), labels
        return Views(fixed, names, lambda _epoch: draw(self.raw[split])), labels

    def _fixed_views(self, split: str, level: str, k: int) -> list:
        """K augmented views of a training split, drawn from the context's seed: in memory
        as float32, or when the split is streamed, written to disk as uint8 pixels (a
        quarter of the bytes) and scaled as they are read."""
        import tensorflow as tf

        if not self.streamed:
            drawn = augment.views(self.raw[split], level, k, self.seed)
            return [tf.convert_to_tensor(self._scaled(v)) for v in drawn]
        draw, rows = augment.Augmenter(level, self.seed), self.raw[split]
        key = hashlib.sha256(f"{rows.digest()}|{level}|{self.seed}".encode()).hexdigest()[:32]
        views = []
        for j in range(k):  # view j of image i is the j-th draw, as augment.views draws
            # a folder of their own: the cache's room-making deletes its own .npy files
            path = self.cache.folder / "views" / f"{key}_{j}.npy"
            if not path.is_file():
                chunks = (datasets.to_uint8(draw(b)) for b in rows.batches(draw.BATCH))
                image_store.write(path, rows.row_shape, np.uint8, chunks)
            views.append(image_store.Mapped(image_store.Rows(path), self._scaled))
        return views

    def _scaled(self, pixels: np.ndarray) -> np.ndarray:
        return backbones.preprocess(self.meta["preprocess"], pixels)

    def class_weights(self, choice: str, split: str) -> np.ndarray | None:
        """The loss weight of each class for training on `split` (loop.class_weights)."""
        return loop.class_weights(choice, self.splits[split][1], self.num_classes)

    def restore(self) -> None:
        """The backbone's original weights, as loaded."""
        for variable, value in zip(self.backbone.weights, self.pristine):
            variable.assign(value)


def effective_search(params: Params, name: str) -> SearchParams:
    """The search space for one backbone: its own `by_name` list replaces the shared one."""
    own = params.backbones[name].by_name
    return params.search.model_copy(update={"by_name": own}) if own else params.search


TRAINING_SPLITS = ("train", datasets.TRAINVAL)  # the splits augmentation draws from


def load_context(
    name: str,
    params: Params,
    manifest: dict,
    split_names: tuple[str, ...] = ("train", "val"),
    size: int | None = None,
    share: int = 1,
    loaded=None,
) -> RunContext:
    """One backbone at one input size (default: as stored); `share`: how many contexts
    split the activation cache's budgets (each keeps its own traced models: a re-trace
    costs seconds, a kept model little memory); `loaded`: another size's backbone with
    the weights read from models/<name>/backbone.keras, to clone instead of reading the
    file again."""
    folder = MODELS_DIR / name
    meta = json.loads((folder / "meta.json").read_text())
    import keras

    devices.configure(params.seed, params.deterministic)
    size = size or manifest["image_size"]
    if loaded is None:
        loaded = keras.models.load_model(folder / "backbone.keras", compile=False)
    backbone = backbones.at_size(loaded, size)
    search = effective_search(params, name)
    info = strategies.backbone_info(backbone, search)
    loaded_splits = datasets.load_target_splits(manifest, split_names, size)
    raw = {s: loaded_splits[s].images for s in TRAINING_SPLITS if s in loaded_splits}
    # sweep.cache.memory_mb bounds the images held as well as the activations: splits that
    # would take more as float32 are read from disk and scaled a batch at a time
    budget = int(params.sweep.cache.memory_mb * MB / share)
    scale = functools.partial(backbones.preprocess, meta["preprocess"])
    # held: on the device once, one copy that the cache and the phases share
    inputs, streamed = image_store.held_or_streamed(
        {s: x.images for s, x in loaded_splits.items()}, scale, budget
    )
    cache = _activation_cache(name, backbone, meta, info, inputs, budget, params, share)
    splits = {s: (x, loaded_splits[s].labels) for s, x in inputs.items()}
    num_classes = len(manifest["target_classes"])
    ctx = RunContext(
        backbone=backbone,
        meta=meta,
        pristine=[np.array(w.numpy(), copy=True) for w in backbone.weights],
        cache=cache,
        pool=Pool(backbone, num_classes, cache, params.sweep.cache.traced_models),
        info=info,
        splits=splits,
        num_classes=num_classes,
        search=search,
        layer_costs=flops.model_costs(backbone),
        feature_dims=tuple(backbone.output_shape[1:]),
        seed=params.seed,
        size=size,
        raw=raw,
        streamed=streamed,
    )
    gc.collect()
    gc.freeze()  # later collections skip the libraries, backbone and data: ~0.2 s less per run
    return ctx


def _activation_cache(name, backbone, meta, info, inputs, budget: int, params: Params, share: int):
    """The cache of frozen prefixes' outputs at every candidate cut, within this context's
    share of sweep.cache's memory (`budget`, bytes) and disk budgets."""
    return activations.ActivationCache(
        backbone,
        meta["sha256"],
        dict(inputs),
        [d.n_frozen_layers for d in info.depths] + [len(backbone.layers)],  # + head only
        memory_bytes=budget,
        disk_bytes=int(params.sweep.cache.disk_mb * MB / share),
        folder=CACHE_DIR / name,
    )


def manifest_sizes(manifest: dict) -> list[int]:
    """The input sizes prepared, smallest first."""
    return manifest.get("image_sizes") or [manifest["image_size"]]


class Contexts:
    """A RunContext per searched input size, loaded when a run first asks for its size."""

    def __init__(
        self,
        name: str,
        params: Params,
        manifest: dict,
        split_names=("train", "val"),
        sizes: tuple[int, ...] | None = None,
    ):
        """`sizes`: the manifest's sizes a run may ask for (the screen's kept ones); None:
        all of them."""
        self.name, self.params, self.manifest, self.split_names = (
            name,
            params,
            manifest,
            split_names,
        )
        self.sizes: list[int] = list(sizes or manifest_sizes(manifest))
        self._loaded: dict[int, RunContext] = {}

    def __getitem__(self, size: int) -> RunContext:
        if size not in self._loaded:
            # one read of the file serves every size: another size's context clones its
            # backbone, restored first to the weights as loaded (every run restores anyway)
            first = next(iter(self._loaded.values()), None)
            if first is not None:
                first.restore()
            loaded = None if first is None else first.backbone
            self._loaded[size] = load_context(
                self.name, self.params, self.manifest, self.split_names, size,
                len(self.sizes), loaded,
            )  # fmt: skip
        return self._loaded[size]

    def at(self, size: int | None) -> RunContext:
        """The context at `size`; None (a trial from before sizes were searched): `first`."""
        return self.first if size is None else self[size]

    @property
    def first(self) -> RunContext:
        """The context of the largest size: what one-size callers and old trials use."""
        return self[self.sizes[-1]]

    def loaded(self) -> list[RunContext]:
        return list(self._loaded.values())
