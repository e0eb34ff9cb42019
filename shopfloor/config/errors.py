"""Configuration errors that name the file, line, column and key of every problem.

One ConfigError carries all issues found, so a user fixes them in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass


def format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    file: str
    line: int | None
    column: int | None
    loc: tuple[int | str, ...]
    message: str

    @property
    def key(self) -> str:
        return format_loc(self.loc)

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        key = f" {self.key}:" if self.loc else ""
        return f"{where}:{key} {self.message}"


class ConfigError(ValueError):
    """Invalid configuration; ``issues`` lists every problem with its location."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))
