"""The one backoff every retry loop in Shopfloor uses: capped exponential growth with equal jitter.

Writer outages, connector reconnects and connector restarts all wait ``next()``; ``reset()`` after success.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays that double (by ``multiplier``) from ``initial_s`` up to ``max_s``, with equal jitter.

    The jitter rule: half of the step is fixed and half is random, ``base/2 + uniform(0, base/2)``.
    The fixed half keeps a minimum spacing (no hammering); the random half spreads reconnects of
    many clients after a shared outage. A ``retry_after_s`` hint (HTTP 429/503) is honoured up to
    four times ``max_s``.
    """

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        multiplier: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if initial_s <= 0 or max_s < initial_s or multiplier < 1.0:
            raise ValueError(
                f"backoff needs 0 < initial_s <= max_s and multiplier >= 1 "
                f"(got initial_s={initial_s}, max_s={max_s}, multiplier={multiplier})"
            )
        self.initial_s, self.max_s, self.multiplier = initial_s, max_s, multiplier
        self.rng = rng or random.Random()
        self.attempt = 0

    @property
    def base_s(self) -> float:
        """The un-jittered step the next ``next()`` draws from."""
        return min(self.max_s, self.initial_s * self.multiplier**self.attempt)

    def next(self, retry_after_s: float | None = None) -> float:
        """The delay to wait before the next attempt; each call counts one attempt."""
        base = self.base_s
        self.attempt += 1
        delay = base / 2 + self.rng.uniform(0, base / 2)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.max_s * 4))
        return delay

    def reset(self) -> None:
        """After a success: the next failure starts again from ``initial_s``."""
        self.attempt = 0
