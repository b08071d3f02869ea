"""Stage `prepare`: build the dataset with TFDS and write the split manifest.

    python -m pipeline.prepare

Reads `seed` and `data` from params.yaml; writes the TFDS data_dir `data/tfds/`
and `data/manifest.json` (split indices and per-class counts).
"""

from __future__ import annotations

from pathlib import Path

from pipeline import data
from pipeline.config import DataParams, load_params, out_of_range, range_problem
from pipeline.errors import run_main

DATA_DIR = Path("data/tfds")
MANIFEST = Path("data/manifest.json")


def prepare(params: DataParams, seed: int, data_dir: Path = DATA_DIR) -> dict:
    builder = data.prepare_builder(params.dataset, data_dir)
    _, labels = data.load_examples(builder, params.image_size)
    num_classes = builder.info.features["label"].num_classes
    for key in ("source_classes", "target_classes"):  # params.yaml checked them unless
        bad = out_of_range(getattr(params, key), num_classes)  # the metadata was not there
        if bad:
            raise data.DatasetError(
                f"data.{key} = {getattr(params, key)}: ids {bad} out of range; "
                + range_problem(params.dataset, bad, num_classes)
            )
    splits = data.split_indices(
        labels,
        seed=seed,
        source_classes=params.source_classes,
        target_classes=params.target_classes,
        train_per_class=params.train_per_class,
        val_per_class=params.val_per_class,
        source_val_fraction=params.source_val_fraction,
    )
    return data.make_manifest(
        params.dataset,
        str(data_dir),
        builder,
        labels,
        params.image_size,
        params.source_classes,
        params.target_classes,
        splits,
    )


def main() -> None:
    params = load_params()
    manifest = prepare(params.data, params.seed)
    data.write_manifest(manifest, MANIFEST)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in manifest["splits"].items())
    print(f"prepare: {manifest['dataset']} ({manifest['num_examples']} examples) -> {sizes}")


if __name__ == "__main__":
    run_main(main)
