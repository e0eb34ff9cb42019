"""Alerts with hysteresis and minimum persistence: raised once per episode, cleared only when it is over.

The same tracker runs window by window offline (evaluation) and online (``shopfloor analytics run``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AlertRule:
    """Raise when the level is >= ``on`` for ``persist`` windows; clear when < ``off`` for ``clear`` windows."""

    on: float
    off: float
    persist: int = 3
    clear: int = 12

    def __post_init__(self) -> None:
        if not self.off < self.on:
            raise ValueError(f"alert rule: off ({self.off}) must be below on ({self.on})")
        if self.persist < 1 or self.clear < 1:
            raise ValueError("alert rule: persist and clear are whole numbers of windows >= 1")


@dataclass
class Tracker:
    """One alert's state for one (asset, subject): ``update`` says 'raise', 'clear' or None."""

    rule: AlertRule
    active: bool = False
    above: int = 0
    below: int = 0
    raised_at: int | None = None
    history: list[tuple[int, str]] = field(default_factory=list)

    def update(self, t_ns: int, level: float) -> str | None:
        if not self.active:
            self.above = self.above + 1 if level >= self.rule.on else 0
            if self.above >= self.rule.persist:
                self.active, self.below, self.raised_at = True, 0, t_ns
                self.history.append((t_ns, "raise"))
                return "raise"
            return None
        self.below = self.below + 1 if level < self.rule.off else 0
        if self.below >= self.rule.clear:
            self.active, self.above, self.raised_at = False, 0, None
            self.history.append((t_ns, "clear"))
            return "clear"
        return None

    def reset(self) -> None:
        """The component was renewed (repair logged): forget the episode without a clear."""
        self.active, self.above, self.below, self.raised_at = False, 0, 0, None

    def as_dict(self) -> dict:
        return {"active": self.active, "above": self.above, "below": self.below, "raised_at": self.raised_at}

    def restore(self, d: dict) -> None:
        self.active, self.above, self.below = bool(d["active"]), int(d["above"]), int(d["below"])
        self.raised_at = d.get("raised_at")
