"""Errors a store raises, split by what the writer should do about them.

Unavailable → retry with backoff and spool; Rejected → isolate the bad points and quarantine them.
"""

from __future__ import annotations


class StoreError(Exception):
    """Any failure talking to a store."""


class StoreUnavailable(StoreError):
    """The store could not take the write now (down, timeout, 429, 5xx, auth): retry later.

    ``retry_after_s`` carries the server's Retry-After when it sent one. ``unreachable`` is True
    when no answer came at all (refused, reset, timed out): the writer then probes the store's
    health endpoint on a short period, so it resumes as soon as the store is back, instead of
    after the backoff; an answer that says "not now" (429, 5xx, auth) waits out the backoff.
    """

    def __init__(
        self, message: str, retry_after_s: float | None = None, *, unreachable: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.unreachable = unreachable


class StoreRejected(StoreError):
    """The store refused some of the data itself (HTTP 400: bad point, field type conflict).

    Retrying the same data will fail again; the writer bisects the batch to find the culprits.
    """
