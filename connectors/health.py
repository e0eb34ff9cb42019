"""Compatibility name of the source-health vocabulary, which now lives in the kernel as ``shopfloor.health``.

Plugins written against ``connectors.health`` keep working; new code imports ``shopfloor.health``.
"""

from shopfloor.health import HealthTracker, SourceHealth, SourceState

__all__ = ["HealthTracker", "SourceHealth", "SourceState"]
