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


class LimitError(DataError):
    """An input past one of pakd's resource limits (`pakd.limits`): refused before the
    work that would exhaust memory or time (a decompression bomb, a YAML alias bomb, a
    10 MB field, a model config larger than its weights)."""


# errno values that mean "this place cannot be written", not a pakd bug
_WRITE_ERRNOS = {"ENOSPC": "no space is left on the device", "EDQUOT": "the disk quota is used up",
                 "EACCES": "permission denied", "EPERM": "permission denied",
                 "EROFS": "the file system is read-only"}


def write_error(e: OSError, path: str | Path | None = None) -> PakdError | None:
    """A `PakdError` naming the path and the fix for an OSError that means the output
    location cannot be written (out of space, read-only, no permission); None for others."""
    import errno
    import os
    name = errno.errorcode.get(e.errno or 0, "")
    if name not in _WRITE_ERRNOS:
        return None
    where = path or e.filename or "the output"
    if name in ("EACCES", "EPERM") and os.path.isfile(where) and not os.access(where, os.R_OK):
        return DataError("cannot read: permission denied", file=where,     # a read, not a write
                         fix="give yourself read access (chmod u+r) or copy the file somewhere "
                             "readable")
    fix = ("free some space or point --run at another disk" if name in ("ENOSPC", "EDQUOT")
           else "point --run at a folder you can write to")
    return DataError(f"cannot write: {_WRITE_ERRNOS[name]}", file=where,
                     fix=f"{fix}; nothing half-written was left behind")
