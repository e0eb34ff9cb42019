"""The one door from a Modbus source to its sink: every batch and event the source emits goes through here.
Owns the counting of what was emitted (samples by quality, events), so health and describe() agree with the sink.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shopfloor.batch import SampleBatch
from shopfloor.connector import Sink
from shopfloor.health import HealthTracker
from shopfloor.model import Event, Quality


class Output:
    """Hands batches and events to the sink and counts them; never blocks (the sink never does).

    ``health().samples`` counts every sample emitted, of any quality, as the OPC UA connector counts
    them; ``by_quality`` splits the same total into good, uncertain and bad. Only a batch with a Good
    sample is a good read (``health().last_good_ns``): a Bad-only batch (a refused range, a timeout,
    the once-per-outage mark) says the device gave nothing usable.
    """

    def __init__(self, tracker: HealthTracker) -> None:
        self.tracker = tracker
        self.sink: Sink | None = None
        self.by_quality = np.zeros(len(Quality), dtype=np.int64)  # samples emitted, by Quality value
        self.batches = 0
        self.events_emitted = 0

    def samples(self, batch: SampleBatch) -> None:
        if self.sink is None or not len(batch):
            return
        self.sink.emit(batch)
        self.batches += 1
        counts = np.bincount(batch.quality, minlength=len(Quality))
        self.by_quality += counts[: len(Quality)]
        self.tracker.on_samples(len(batch), int(batch.ts.max()), good=int(counts[Quality.GOOD]))

    def events(self, events: Sequence[Event]) -> None:
        if self.sink is not None and events:
            self.sink.emit_events(events)
            self.events_emitted += len(events)

    def quality_counts(self) -> dict[str, int]:
        return {q.name.lower(): int(self.by_quality[q]) for q in Quality}
