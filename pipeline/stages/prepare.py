"""Stage `prepare`: build the dataset with TFDS and write the split manifest.

    python -m pipeline.stages.prepare

Reads `seed` and `data` from params.yaml; writes the TFDS data_dir `data/tfds/`
and `data/manifest.json` (split indices, images per class and split, and for an
image folder the files skipped with their reasons and any duplicate images
across splits).
"""

from __future__ import annotations

from pipeline.data import datasets, preparation
from pipeline.errors import run_main
from pipeline.paths import MANIFEST
from pipeline.preflight import load_params


def main() -> None:
    params = load_params()
    manifest = preparation.prepare(params.data, params.seed)
    datasets.write_manifest(manifest, MANIFEST)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in manifest["splits"].items() if v)
    folder = manifest.get("folder")
    extra = f"; {len(folder['skipped'])} file(s) skipped" if folder else ""
    print(
        f"prepare: {manifest['dataset']} ({manifest['num_examples']} examples, "
        f"{len(manifest['class_names'])} classes) -> {sizes}{extra}"
    )


if __name__ == "__main__":
    run_main(main)
