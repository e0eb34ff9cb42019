"""Connector plugins: discovery through the entry-point group ``shopfloor.connectors``.

Only the names a config uses are imported. Duplicate names and API-version mismatches are refused
with an error that names the distribution; built-in connectors are registered the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from shopfloor.connector import API_VERSION, ConnectorSpec

GROUP = "shopfloor.connectors"


class PluginError(Exception):
    """A connector plugin is unknown, ambiguous, broken or built for another API version."""


@dataclass(frozen=True)
class PluginInfo:
    name: str
    target: str  # module:attribute
    distribution: str
    version: str

    def __str__(self) -> str:
        return f"{self.distribution} {self.version} ({self.target})"


def _info(ep: EntryPoint) -> PluginInfo:
    dist = ep.dist
    return PluginInfo(ep.name, ep.value, dist.name if dist else "?", dist.version if dist else "?")


def _entry_points() -> list[EntryPoint]:
    return list(entry_points(group=GROUP))


def available() -> list[PluginInfo]:
    """Every registered connector, not imported, sorted by name."""
    return sorted((_info(ep) for ep in _entry_points()), key=lambda i: (i.name, i.distribution))


def load(name: str) -> Any:
    """Import and check the connector class registered as ``name``."""

    eps = [ep for ep in _entry_points() if ep.name == name]
    if not eps:
        installed = ", ".join(sorted({ep.name for ep in _entry_points()})) or "none"
        raise PluginError(
            f"unknown connector {name!r} (installed: {installed}); connectors are found through the "
            f"entry-point group '{GROUP}' of installed distributions"
        )
    if len(eps) > 1:
        claims = "; ".join(str(_info(ep)) for ep in eps)
        raise PluginError(f"connector name {name!r} is registered by more than one distribution: {claims}")
    ep = eps[0]
    info = _info(ep)
    try:
        cls = ep.load()
    except Exception as exc:  # any import failure becomes a located config error
        raise PluginError(
            f"connector {name!r} from {info} failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    spec = getattr(cls, "spec", None)
    if not isinstance(spec, ConnectorSpec):
        raise PluginError(f"connector {name!r} from {info} has no ConnectorSpec 'spec' attribute")
    if spec.api_version != API_VERSION:
        raise PluginError(
            f"connector {name!r} from {info} was built for connector API {spec.api_version}; "
            f"this Shopfloor speaks API {API_VERSION}"
        )
    if spec.name != name:
        raise PluginError(f"connector {name!r} from {info} declares spec.name {spec.name!r}")
    return cls
