"""Secrets (passwords, tokens) read from an environment variable or a file, never from argv.

Values are returned to the caller only; nothing here logs or prints them.
"""

from __future__ import annotations

import os
from pathlib import Path


class SecretError(ValueError):
    """A configured secret could not be read; the message names where it was looked for."""


def read_secret(env: str | None, file: str | Path | None, what: str) -> str | None:
    """The secret from ``env`` (a variable name) or ``file`` (a path); None if neither is configured."""
    if env:
        value = os.environ.get(env)
        if value is None:
            raise SecretError(f"{what}: environment variable {env} is not set")
        return value
    if file:
        try:
            return Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretError(f"{what}: cannot read {file}: {exc.strerror}") from None
    return None
