"""Datasets through TFDS: builders, splits and the manifest, bundled digits, image folders."""
