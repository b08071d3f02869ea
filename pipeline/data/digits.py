"""A TFDS builder over scikit-learn's bundled 8x8 handwritten digits (1,797 images).

It makes the offline default go through the same `download_and_prepare` /
`as_dataset` path as any TFDS catalog dataset: nothing is downloaded, the data
ships inside scikit-learn.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds


class ThawDigits(tfds.core.GeneratorBasedBuilder):
    """UCI handwritten digits as shipped by `sklearn.datasets.load_digits`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "8x8 grayscale, 17 grey levels rescaled to 0-255."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 8, 1)),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://archive.ics.uci.edu/dataset/80",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # the data ships with scikit-learn
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        from sklearn.datasets import load_digits

        digits = load_digits()
        # Grey levels 0..16 -> 0..255 so every dataset reaches the model as uint8 pixels.
        images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
        for index, (image, label) in enumerate(zip(images, digits.target)):
            yield index, {"image": image, "label": int(label)}


BUILDER_NAME = ThawDigits.name  # "thaw_digits"
