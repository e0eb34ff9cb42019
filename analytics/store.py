"""Saving and loading trained models: numpy arrays in one ``.npz`` with JSON metadata, no pickle.

A model is refused with a message saying what differs when its format, features or libraries do not match.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import sklearn

from analytics import modes as mmod
from analytics.features import FeatureSpec
from analytics.health import HealthModel
from analytics.pdm import Models
from analytics.rul import RulCalibration
from analytics.versions import library_versions

FORMAT = 1
_HEALTH_ARRAYS = ("centre", "scale", "precision", "frozen_ref", "spike_ref")
_MODE_ARRAYS = ("w", "cols", "ref_X", "ref_y")


class IncompatibleModel(ValueError):
    """A saved model that cannot be used here; the message names the difference and what to do."""


def versions() -> dict[str, str]:
    return library_versions()


def save(models: Models, path: Path) -> Path:
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    health = {}
    for i, (asset, hm) in enumerate(models.health.items()):
        d = {k: v for k, v in asdict(hm).items() if k not in _HEALTH_ARRAYS}
        for k in _HEALTH_ARRAYS:
            arrays[f"h{i}.{k}"] = np.asarray(getattr(hm, k))
        d["_i"] = i
        health[asset] = d
    kinds = {}
    j = 0
    for kind, km in models.kinds.items():
        ms = {}
        for mode, mm in km.modes.items():
            d = {
                "mode": mm.mode,
                "names": mm.names,
                "denom": mm.denom,
                "floor": mm.floor,
                "episodes": mm.episodes,
                "failures": mm.failures,
                "_j": j,
            }
            for k in _MODE_ARRAYS:
                arrays[f"m{j}.{k}"] = np.asarray(getattr(mm, k))
            ms[mode] = d
            j += 1
        kinds[kind] = {"modes": ms, "on": km.on, "off": km.off, "rul": asdict(km.rul)}
    meta = {
        "format": FORMAT,
        "spec": models.spec.as_dict(),
        "health": health,
        "kinds": kinds,
        "meta": {**models.meta, "versions": versions()},
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)
    return path


def load(path: Path, check_versions: bool = True) -> Models:
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
        meta: dict[str, Any] = json.loads(bytes(z["__meta__"]).decode())
    except (OSError, ValueError, KeyError) as exc:
        raise IncompatibleModel(f"{path}: not a Shopfloor analytics model ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise IncompatibleModel(
            f"{path}: model format {meta.get('format')} but this Shopfloor reads format {FORMAT}; "
            "train again with `shopfloor analytics train`"
        )
    if check_versions:
        saved = meta["meta"].get("versions", {}).get("scikit-learn", "")
        here = sklearn.__version__
        if saved.split(".")[:2] != here.split(".")[:2]:
            raise IncompatibleModel(
                f"{path}: trained with scikit-learn {saved}, this is {here}; "
                "train again with `shopfloor analytics train` (models are not carried across minor versions)"
            )
    spec = FeatureSpec.from_dict(meta["spec"])
    models = Models(spec, meta=meta["meta"])
    for asset, d in meta["health"].items():
        i = d.pop("_i")
        arrs = {k: z[f"h{i}.{k}"] for k in _HEALTH_ARRAYS}
        models.health[asset] = HealthModel(**d, **arrs)
    for kind, kd in meta["kinds"].items():
        km = mmod.KindModel(kind, on=kd["on"], off=kd["off"], rul=RulCalibration(**kd["rul"]))
        for mode, md in kd["modes"].items():
            j = md.pop("_j")
            km.modes[mode] = mmod.ModeModel(**md, **{k: z[f"m{j}.{k}"] for k in _MODE_ARRAYS})
        models.kinds[kind] = km
    return models


def check_compatible(models: Models, kind: str, feature_names: list[str]) -> None:
    """Refuse scoring an asset whose features lack what the kind's failure modes were trained on."""
    km = models.kinds.get(kind)
    if km is None:
        return
    have = set(feature_names)
    for mm in km.modes.values():
        used = [n for n, w in zip(mm.names, mm.w, strict=True) if w != 0]
        missing = [n for n in used if n not in have]
        if len(missing) > len(used) / 2:
            raise IncompatibleModel(
                f"the {kind} model's failure mode {mm.mode} uses {', '.join(missing[:5])} which this asset does "
                "not have; map the plant's signal names to these (analytics.signal_map.rename) or train on it"
            )
