"""Bearer tokens for the HTTP service, and which addresses count as this machine only.

A token is read once from a file (``--token-file``) and compared in constant time with the
``Authorization: Bearer <token>`` header of each request. `pakd serve` asks for it on
every endpoint but ``/healthz`` and the page; an endpoint added later that changes state
guards itself with the same `BearerToken` (`guard.Guard` takes one, or call ``allows``).
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import stat
from pathlib import Path

from ..errors import PakdError
from ..limits import read_input

log = logging.getLogger("pakd")

MIN_TOKEN_CHARS = 16
MAX_TOKEN_FILE_BYTES = 4096
# what a header value may hold without quoting (RFC 6750's b64token, a little wider)
_TOKEN_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=")


class BearerToken:
    """One secret; ``allows(header)`` says whether an Authorization header carries it."""

    def __init__(self, token: str):
        if len(token) < MIN_TOKEN_CHARS or not set(token) <= _TOKEN_CHARS:
            raise PakdError(f"a bearer token needs at least {MIN_TOKEN_CHARS} characters of "
                            "letters, digits and -._~+/= (e.g. python -c \"import secrets; "
                            "print(secrets.token_urlsafe(32))\")")
        self._token = token.encode()

    def allows(self, authorization: str | bytes | None) -> bool:
        if not authorization:
            return False
        if isinstance(authorization, str):
            authorization = authorization.encode("latin-1", "replace")
        scheme, _, value = authorization.strip().partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(value.strip(), self._token)

    def __repr__(self) -> str:          # never print the secret
        return "BearerToken(***)"


def read_token_file(path: str | Path) -> BearerToken:
    """The token in ``path`` (one line; surrounding whitespace ignored). A file others can
    read is accepted with a warning: anyone who can read it can call the service."""
    path = Path(path)
    raw = read_input(path, limit=MAX_TOKEN_FILE_BYTES, what="token file",
                     fix="the file holds one token on one line")
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise PakdError(f"{path}: the token file is not plain ASCII; write the token on one "
                        "line (e.g. python -c \"import secrets; print(secrets.token_urlsafe"
                        "(32))\" > FILE)") from None
    if "\n" in text:
        raise PakdError(f"{path}: the token file holds more than one line; keep only the token")
    try:
        token = BearerToken(text)
    except PakdError as e:
        raise PakdError(f"{path}: {e}") from None
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("%s can be read by other users (mode %o): anyone who reads it can call "
                    "the service; chmod 600 %s", path, stat.S_IMODE(mode), path)
    return token


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only (127.0.0.0/8, ::1, localhost)."""
    h = host.strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False                     # a name: it may resolve to any interface


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def allowed_hosts(host: str) -> set[str] | None:
    """Host header values to accept when bound to ``host``: the name itself when bound to a
    name; the loopback names when bound to loopback (a page elsewhere that rebinds its own
    name to 127.0.0.1 then gets 400, not the service); None (any) for other addresses,
    where the token is what guards the service."""
    h = host.strip("[]").lower()
    if is_loopback(h):
        return set(LOOPBACK_NAMES) | {h}
    if not is_ip(h):
        return {h}
    return None
