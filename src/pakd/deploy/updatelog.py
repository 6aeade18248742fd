"""The service's update log: every accepted update, durable before it is acknowledged.

One file, ``STATE/updates.log``, append-only. Each line is one record: the CRC-32 of its
JSON text (8 hex digits), a space, the JSON (one line: JSON escapes newlines), a newline.
The first record is the header: the format, a random log ID, and the *lineage* of the
student it was started for (`lineage`: the users and items it was trained with), so a log
is only ever replayed onto that student or one grown from it (`pakd update`).

Durability: `append` writes a batch of records, flushes and ``fsync``s the file before it
returns; the service acknowledges an update only after that (a batch shares one fsync).
A crash can leave the last record half written: on opening, a last line without its
newline or with a wrong checksum is that, and is cut off (it was never acknowledged). A
bad record *before* the last is damage, and is refused with its line - never skipped.
The log is locked (``flock``) while a service writes it: a second service on the same
state directory is refused.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
import uuid
import zlib
from pathlib import Path

from ..errors import PakdError
from ..runtime import log

FORMAT = 1
LOG_NAME = "updates.log"
MAX_RECORD_BYTES = 1 << 20      # a record is one request: far below the service's body cap


def lineage(user_ids: list, item_ids: list) -> str:
    """A fingerprint of a student's first users and items, in order: every student grown
    from it by updates keeps its parent's (IDs are only ever appended)."""
    h = hashlib.sha256()
    h.update(json.dumps([[str(u) for u in user_ids], [str(i) for i in item_ids]],
                        separators=(",", ":")).encode())
    return h.hexdigest()[:16]


def encode(record: dict) -> bytes:
    text = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
    return b"%08x %s\n" % (zlib.crc32(text), text)


def decode(line: bytes) -> dict | None:
    """The record of a complete line, or None when it is torn or damaged."""
    if not line.endswith(b"\n") or len(line) < 11 or line[8:9] != b" ":
        return None
    text = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(text):
            return None
        rec = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return rec if isinstance(rec, dict) else None


def read_log(path: Path) -> tuple[dict, list[dict], int, int]:
    """(header, records, bytes of the complete records, bytes of a torn last record) of a
    log file; a damaged record before the last is refused with its line."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise PakdError(f"{path}: cannot read the update log ({e.strerror or e})") from None
    lines = raw.splitlines(keepends=True)
    records, good = [], 0
    for n, line in enumerate(lines):
        rec = decode(line) if len(line) <= MAX_RECORD_BYTES + 16 else None
        if rec is None:
            if n == len(lines) - 1:             # a torn tail: never acknowledged
                return _header(path, records), records[1:], good, len(raw) - good
            raise PakdError(f"{path}, line {n + 1}: a damaged record before the end of the "
                            "update log (checksum or JSON wrong): the file was edited or the "
                            "disk damaged it. Fix: restore the log from a backup, or move it "
                            "aside to start a new one (its updates are then lost)")
        records.append(rec)
        good += len(line)
    return _header(path, records), records[1:], good, 0


def _header(path: Path, records: list[dict]) -> dict:
    head = records[0] if records else None
    if not head or head.get("type") != "header":
        raise PakdError(f"{path} is not a pakd update log (no header record); move it aside "
                        "or give another --state directory")
    if head.get("format") != FORMAT:
        raise PakdError(f"{path} was written in update-log format {head.get('format')!r}, and "
                        f"this pakd reads format {FORMAT}: use the pakd version that wrote "
                        "it, or move the log aside")
    return head


class UpdateLog:
    """An open, locked update log (`open`): its header, the records so far, `append`."""

    def __init__(self, path: Path, header: dict, records: list[dict], fd: int):
        self.path, self.header, self.records, self._fd = path, header, records, fd
        self.bytes = os.fstat(fd).st_size

    @property
    def id(self) -> str:
        return str(self.header.get("log", ""))

    @classmethod
    def open(cls, state: str | Path, *, lineage_of: str, model: str) -> "UpdateLog":
        """The log in ``state`` (made, with its header, when missing), checked to belong to
        the lineage ``lineage_of``; a torn last record is cut off."""
        state = Path(state)
        try:
            state.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise PakdError(f"--state {state}: cannot create the state directory "
                            f"({e.strerror or e}); give a directory you can write") from None
        path = state / LOG_NAME
        fresh = not path.exists()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as e:
            raise PakdError(f"{path}: cannot open the update log ({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise PakdError(f"{path} is in use by another pakd serve: stop it, or give this "
                            "one another --state directory") from None
        try:
            if fresh or os.fstat(fd).st_size == 0:
                header = {"type": "header", "format": FORMAT, "log": uuid.uuid4().hex,
                          "lineage": lineage_of, "model": model,
                          "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                os.write(fd, encode(header))
                os.fsync(fd)
                _fsync_dir(state)
                return cls(path, header, [], fd)
            header, records, good, torn = read_log(path)
            if header.get("lineage") != lineage_of:
                raise PakdError(
                    f"{path} was written for another model ({header.get('model')!r}, lineage "
                    f"{header.get('lineage')}), not {model} (lineage {lineage_of}): its users "
                    "and items are not this model's. Fix: fold it into its own model with "
                    f"pakd update --log {state}, or give this model another --state directory")
            if torn:
                log.warning("%s: the last record was cut short (%d bytes, never acknowledged); "
                            "it is removed", path, torn)
                os.ftruncate(fd, good)
                os.fsync(fd)
            return cls(path, header, records, fd)
        except BaseException:
            os.close(fd)
            raise

    def append(self, records: list[dict]) -> None:
        """Write ``records`` and fsync: when this returns they survive a crash."""
        data = b"".join(encode(r) for r in records)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        os.fsync(self._fd)
        self.records.extend(records)
        self.bytes += len(data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_state(state: str | Path) -> tuple[dict, list[dict]]:
    """(header, records) of the log in a state directory, read only (`pakd update --log`):
    a torn last record - a service may be writing it - is left out."""
    path = Path(state) / LOG_NAME
    if Path(state).is_file() and Path(state).name == LOG_NAME:
        path = Path(state)
    if not path.is_file():
        raise PakdError(f"--log {state}: no update log there ({path} not found); give the "
                        "service's --state directory")
    header, records, _, _ = read_log(path)
    return header, records
