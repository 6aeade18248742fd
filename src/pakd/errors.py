"""Errors a user can act on.

Every error pakd raises on purpose is a `PakdError`; the CLI prints its message and exits
with status 2 instead of a traceback. `DataError` always names the file, the line (when
there is one) and what to do about it.
"""
from __future__ import annotations

from pathlib import Path


class PakdError(Exception):
    """An error with a message written for the user."""


class ConfigError(PakdError):
    """A setting is unknown or invalid."""


class DataError(PakdError):
    """Input data is missing or malformed.

    The message reads ``<file>, line <n>: <problem>. Fix: <fix>`` so the user can go
    straight to the offending row.
    """

    def __init__(self, problem: str, *, file: str | Path | None = None,
                 line: int | None = None, fix: str | None = None):
        self.problem, self.file, self.line, self.fix = problem, file, line, fix
        where = ""
        if file is not None:
            where = f"{file}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        msg = where + problem
        if fix:
            msg += f"\nFix: {fix}"
        super().__init__(msg)
