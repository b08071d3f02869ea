"""What produced a result: package versions, for the report's provenance section."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = ("tensorflow", "keras", "tensorflow-datasets", "optuna", "pandas", "numpy", "dvc")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
