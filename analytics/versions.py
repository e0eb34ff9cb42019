"""The library versions saved with every model, and the rule that a model from another scikit-learn
major.minor is refused (its estimators may compute differently)."""

from __future__ import annotations

import importlib
import platform

import numpy as np

#: import name -> the name a user knows it by
_NAMES = {"sklearn": "scikit-learn", "PIL": "Pillow"}


def library_versions(*extra: str) -> dict[str, str]:
    """python, numpy and scikit-learn, plus the ``extra`` modules (import names, e.g. ``scipy``)."""
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("sklearn", *extra):
        out[_NAMES.get(name, name)] = str(importlib.import_module(name).__version__)
    return out


def major_minor(v: str) -> str:
    return ".".join(str(v).split(".")[:2])
