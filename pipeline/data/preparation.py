"""The prepare stage's work: the dataset built with TFDS (a folder read and stored
first), its splits drawn, and the manifest that records them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.config import DataParams, out_of_range, range_problem
from pipeline.data import datasets, image_store
from pipeline.paths import DATA_DIR


def prepare(params: DataParams, seed: int, data_dir: Path = DATA_DIR) -> dict:
    layout = folder = None
    if params.dataset == datasets.FOLDER:
        layout, folder = _store_folder(params, data_dir)
    builder = datasets.prepare_builder(params.dataset, data_dir)
    # streamed into the image file later stages read (never whole in memory), hashed
    labels, digest = datasets.write_arrays(
        builder, params.stored_size, params.resize, image_store.folder()
    )
    num_classes = builder.info.features["label"].num_classes
    for key in ("source_classes", "target_classes"):  # params.yaml checked them unless
        bad = out_of_range(getattr(params, key), num_classes)  # the metadata was not there
        if bad:
            raise datasets.DatasetError(
                f"data.{key} = {getattr(params, key)}: ids {bad} out of range; "
                + range_problem(params.dataset, bad, num_classes)
            )
    splits = datasets.split_indices(
        labels,
        seed=seed,
        source_classes=params.source_classes,
        target_classes=params.target_classes,
        train_per_class=params.train_per_class,
        val_per_class=params.val_per_class,
        source_val_fraction=params.source_val_fraction,
        given_test=None if folder is None else np.asarray(folder.given_test),
        given_val=None
        if folder is None or not any(folder.given_val)
        else np.asarray(folder.given_val),
        names=builder.info.features["label"].names,
    )
    manifest = datasets.make_manifest(
        params.dataset,
        str(data_dir),
        builder,
        labels,
        params.stored_size,
        params.source_classes,
        params.target_classes,
        splits,
        params.resize,
        digest,
    )
    manifest["image_sizes"] = params.sizes  # searched; smaller ones are scaled from the stored
    if folder is not None:
        manifest["folder"] = _folder_record(params, layout, folder, splits)
    return manifest


def _store_folder(params: DataParams, data_dir: Path):
    """Read every file of data.folder (nothing written if a check fails), then store it."""
    from pipeline.data import folder_dataset

    layout = folder_dataset.scan(params.folder)
    import tensorflow as tf

    # traced once per input shape: eager Keras calls cost more than the resize itself
    resize = tf.function(datasets.resizer(params.stored_size, params.resize), reduce_retracing=True)
    read = folder_dataset.read_all(
        layout, lambda px: datasets.to_uint8(resize(px.astype("float32"))), params.stored_size
    )
    folder_dataset.report_skipped(read.skipped, layout.root)
    folder_dataset.warn(
        f"image(s) more than {folder_dataset.SMALL}x smaller than {params.stored_size} px",
        [f"{s['path']}: {s['size']}" for s in read.small],
        "used, upscaled; check they are the photos you meant",
    )
    # least images a class needs (a fraction or "all" needs one); split_indices checks the rest
    least = {k: v if isinstance(v, int) else 1 for k, v in
             (("train", params.train_per_class), ("val", params.val_per_class))}  # fmt: skip
    needs = {c: least["train"] + least["val"] + 1 for c in params.target_classes}
    if layout.given_splits:  # the test images are given: train and val come from train/
        needs = {c: n - 1 for c, n in needs.items()}
    needs.update({c: 2 for c in params.source_classes})
    folder_dataset.check_counts(read, layout, needs)
    folder_dataset.store(read, layout, params.stored_size, data_dir)
    return layout, read


def _folder_record(params: DataParams, layout, read, splits: dict[str, list[int]]) -> dict:
    from pipeline.data import folder_dataset

    split_of = {i: name for name, ix in splits.items() for i in ix}
    conflicts = folder_dataset.label_conflicts(read, layout.classes)
    folder_dataset.warn(
        "image(s) with the same bytes under more than one class",
        [", ".join(c["paths"]) for c in conflicts],
        "a label conflict: one of the labels is wrong; remove the copy that is",
    )
    leaks = folder_dataset.leaks(read, split_of)
    folder_dataset.warn(
        "image(s) with the same bytes in more than one split",
        [f"{', '.join(x['paths'])}: {', '.join(x['splits'])}" for x in leaks],
        "leakage: a test image the model also trained on inflates accuracy",
    )
    return {
        "path": str(params.folder),
        "layout": _layout_text(layout),
        "images": len(read.paths),
        "skipped": [{"path": s.path, "reason": s.reason} for s in read.skipped],
        "duplicates_across_splits": leaks,
        "label_conflicts": conflicts,
        "small_images": read.small,
        "unused": len(read.paths) - len(split_of),
    }


def _layout_text(layout) -> str:
    """The manifest's words for the folder's layout: the split folders it used."""
    if not layout.given_splits:
        return "<class>/<image>"
    if layout.val_dir:
        return f"train/, {layout.val_dir}/ and test/"
    return "train/ and test/"
