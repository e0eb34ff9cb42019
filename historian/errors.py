"""Errors a store raises, split by what the writer should do about them.

Unavailable → retry with backoff and spool; Rejected → isolate the bad points and quarantine them.
"""

from __future__ import annotations


class StoreError(Exception):
    """Any failure talking to a store."""


class StoreUnavailable(StoreError):
    """The store could not take the write now (down, timeout, 429, 5xx, auth): retry later.

    ``retry_after_s`` carries the server's Retry-After when it sent one.
    """

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StoreRejected(StoreError):
    """The store refused some of the data itself (HTTP 400: bad point, field type conflict).

    Retrying the same data will fail again; the writer bisects the batch to find the culprits.
    """
