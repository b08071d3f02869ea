"""What every run over one backbone needs and no run changes: built once per stage.

The sweep and the final stage both train many configurations of one backbone.
The backbone is loaded once; each run starts by restoring its original weights
(`restore`), which is cheaper than reading the file again and keeps the
activation cache's prefixes valid.
"""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass

import numpy as np

from pipeline.config import Params, SearchParams
from pipeline.data import datasets
from pipeline.models import backbones, flops, strategies
from pipeline.paths import CACHE_DIR, MODELS_DIR
from pipeline.train import activations, devices
from pipeline.train.pool import Pool

MB = 1 << 20


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

    @property
    def train(self) -> tuple[object, np.ndarray]:
        return self.splits["train"]

    @property
    def val(self) -> tuple[object, np.ndarray]:
        return self.splits["val"]

    def restore(self) -> None:
        """The backbone's original weights, as loaded."""
        for variable, value in zip(self.backbone.weights, self.pristine):
            variable.assign(value)


def effective_search(params: Params, name: str) -> SearchParams:
    """The search space for one backbone: its own `by_name` list replaces the shared one."""
    own = params.backbones[name].by_name
    return params.search.model_copy(update={"by_name": own}) if own else params.search


def load_context(
    name: str, params: Params, manifest: dict, split_names: tuple[str, ...] = ("train", "val")
) -> RunContext:
    folder = MODELS_DIR / name
    meta = json.loads((folder / "meta.json").read_text())
    import keras
    import tensorflow as tf

    devices.configure(params.seed, params.deterministic)
    backbone = keras.models.load_model(folder / "backbone.keras", compile=False)
    search = effective_search(params, name)
    info = strategies.backbone_info(backbone, search)
    arrays = {
        split: (backbones.preprocess(meta["preprocess"], s.images), s.labels)
        for split, s in datasets.load_target_splits(manifest, split_names).items()
    }
    cache = activations.ActivationCache(
        backbone,
        meta["sha256"],
        {split: x for split, (x, _) in arrays.items()},
        [d.n_frozen_layers for d in info.depths] + [len(backbone.layers)],  # + head only
        memory_bytes=int(params.sweep.cache.memory_mb * MB),
        disk_bytes=int(params.sweep.cache.disk_mb * MB),
        folder=CACHE_DIR / name,
    )
    num_classes = len(manifest["target_classes"])
    ctx = RunContext(
        backbone=backbone,
        meta=meta,
        pristine=[np.array(w.numpy(), copy=True) for w in backbone.weights],
        cache=cache,
        pool=Pool(backbone, num_classes, cache, params.sweep.cache.traced_models),
        info=info,
        # on the device, once: not copied again per phase
        splits={s: (tf.convert_to_tensor(x), y) for s, (x, y) in arrays.items()},
        num_classes=num_classes,
        search=search,
        layer_costs=flops.model_costs(backbone),
        feature_dims=tuple(backbone.output_shape[1:]),
        seed=params.seed,
    )
    gc.collect()
    gc.freeze()  # later collections skip the libraries, backbone and data: ~0.2 s less per run
    return ctx
