"""Secrets (passwords, tokens) read from an environment variable or a file, never from argv.

Values are returned to the caller only; nothing here logs or prints them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

# Keys that name a secret's value. Written literally in a config they are refused, wherever they appear
# (the historian block, any source's settings): a secret comes from ``<key>_env`` or ``<key>_file``.
SECRET_KEYS = frozenset({"password", "token", "secret", "api_key", "private_key"})


def literal_secret_message(key: str) -> str:
    """The one explanation given wherever a config holds a secret's value."""
    return (
        f"secrets may not be written in the config: use {key}_env (an environment variable name) "
        f"or {key}_file (a file path)"
    )


def refuse_literal_secrets(data: object, keys: Iterable[str]) -> None:
    """ValueError (``literal_secret_message``) if the mapping ``data`` holds one of ``keys``: a config
    model's ``mode="before"`` check, so the value never reaches a field, a repr or an error message."""
    if isinstance(data, dict):
        for key in keys:
            if key in data:
                raise ValueError(literal_secret_message(key))


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
