"""The gate every HTTP request passes before a handler, and the one error shape.

`Guard` is a plain ASGI middleware (no per-request task or body copy): it checks, in
order, the Host header (when the service is bound to a name or to loopback), the client's
request rate, the bearer token (every endpoint but the open ones when the service has a
token; the writes - live updates, admin - always: `is_write`), and that a POST body is
declared as JSON; it adds the security headers to every response. Every 4xx and 5xx - its own, the handlers', the
framework's - has one body: ``{"error": {"code": ..., "message": ...}}`` (`error_body`).
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import time

from ..limits import MAX_NESTING
from .auth import BearerToken

CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "too_large",
         415: "unsupported_media_type", 422: "invalid", 429: "rate_limited",
         500: "internal", 503: "unavailable"}


def error_body(status: int, message: str, code: str | None = None) -> bytes:
    code = code or CODES.get(status, "bad_request" if status < 500 else "internal")
    return json.dumps({"error": {"code": code, "message": message}},
                      separators=(",", ":")).encode()


def security_headers(page_html: str = "") -> list[tuple[bytes, bytes]]:
    """Headers every response carries: a content security policy that allows only this
    service's own page (its inline script and style by hash; no other origin, no frames),
    no MIME sniffing, no framing, no referrer."""
    hashes = {"script": [], "style": []}
    for kind in hashes:
        for block in re.findall(rf"<{kind}>(.*?)</{kind}>", page_html, flags=re.S):
            digest = base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()
            hashes[kind].append(f"'sha256-{digest}'")
    csp = ("default-src 'none'; "
           f"script-src {' '.join(hashes['script']) or chr(39) + 'none' + chr(39)}; "
           f"style-src {' '.join(hashes['style']) or chr(39) + 'none' + chr(39)}; "
           "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; "
           "frame-ancestors 'none'")
    return [(b"content-security-policy", csp.encode()),
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-resource-policy", b"same-origin")]


class RateLimiter:
    """A token bucket per client address: ``rate`` requests a second on average, bursts of
    ``burst``. The table forgets clients whose bucket is full again, so it stays small."""

    def __init__(self, rate: float, burst: float | None = None, max_clients: int = 10000):
        self.rate, self.burst = float(rate), max(1.0, float(burst or 2 * rate))
        self.max_clients = max_clients
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str, now: float | None = None) -> float:
        """0 when the request may go ahead, else the seconds until it could."""
        now = time.monotonic() if now is None else now
        tokens, last = self.buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            self.buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate
        self.buckets[client] = (tokens - 1, now)
        if len(self.buckets) > self.max_clients:
            self._forget(now)
        return 0.0

    def _forget(self, now: float) -> None:
        full = [c for c, (t, last) in self.buckets.items()
                if t + (now - last) * self.rate >= self.burst]
        for c in full:
            del self.buckets[c]
        while len(self.buckets) > self.max_clients:      # all busy: drop the oldest
            del self.buckets[next(iter(self.buckets))]


def is_write(method: str, path: str) -> bool:
    """Whether a request changes the service: a POST other than /score (live updates) or
    anything under /admin/."""
    return (method == "POST" and path != "/score") or path.startswith("/admin/")


class Guard:
    """ASGI middleware: Host, rate, token and content-type checks, security headers.
    ``token`` guards every endpoint but ``open_paths``; ``write_token`` the writes
    (`is_write`), with or without ``token``."""

    def __init__(self, app, *, token: BearerToken | None = None,
                 write_token: BearerToken | None = None,
                 open_paths: tuple[str, ...] = ("/healthz", "/"),
                 allowed_hosts: set[str] | None = None, limiter: RateLimiter | None = None,
                 headers: list[tuple[bytes, bytes]] | None = None):
        self.app, self.token, self.open_paths = app, token, set(open_paths)
        self.write_token = write_token
        self.allowed_hosts = {h.lower() for h in allowed_hosts} if allowed_hosts else None
        self.limiter = limiter
        self.headers = headers if headers is not None else security_headers()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        extra = self.headers

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        refusal = self.check(scope)
        if refusal is not None:
            status, message, more = refusal
            body = error_body(status, message)
            await send_with_headers({"type": "http.response.start", "status": status,
                                     "headers": [(b"content-type", b"application/json"),
                                                 (b"content-length", str(len(body)).encode()),
                                                 *more]})
            await send_with_headers({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_with_headers)

    def check(self, scope) -> tuple[int, str, list] | None:
        """(status, message, extra headers) of a refused request, or None."""
        headers = dict(scope.get("headers") or [])
        path = scope.get("path", "")
        if self.allowed_hosts is not None:
            host = _host_name(headers.get(b"host", b""))
            if host not in self.allowed_hosts:
                return 400, (f"unknown Host header {host[:60]!r}: this service answers to "
                             f"{', '.join(sorted(self.allowed_hosts))}"), []
        if self.limiter is not None and path != "/healthz":
            client = (scope.get("client") or ("?", 0))[0]
            wait = self.limiter.take(client)
            if wait > 0:
                return 429, (f"too many requests from {client}: at most "
                             f"{self.limiter.rate:g} a second (bursts of "
                             f"{self.limiter.burst:g}); retry after {wait:.2f} s"), \
                    [(b"retry-after", str(max(1, round(wait + 0.5))).encode())]
        if self.token is not None and path not in self.open_paths:
            if not self.token.allows(headers.get(b"authorization")):
                return 401, ("this service needs a bearer token: send the header "
                             "'Authorization: Bearer <token>' with the token of its "
                             "--token-file"), [(b"www-authenticate", b'Bearer realm="pakd"')]
        if self.write_token is not None and is_write(scope.get("method", ""), path):
            if not self.write_token.allows(headers.get(b"authorization")):
                return 401, ("updates and admin requests need the service's bearer token: "
                             "send 'Authorization: Bearer <token>' with the token of its "
                             "--token-file (or, without one, of STATE/token)"), \
                    [(b"www-authenticate", b'Bearer realm="pakd"')]
        if scope.get("method") == "POST" and not path.startswith("/admin/"):   # admin: no body
            ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if not (ctype == b"application/json" or ctype.endswith(b"+json")):
                return 415, (f"the body must be JSON, sent with 'Content-Type: "
                             f"application/json' (got {ctype.decode('latin-1')[:60]!r})"), []
        return None


def _host_name(raw: bytes) -> str:
    host = raw.decode("latin-1").strip().lower()
    if host.startswith("["):                      # [::1]:8000
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


_BRACKETS = re.compile(rb'"(?:[^"\\]|\\.)*+"?|[\[\]{}]')


def json_depth_ok(body: bytes, limit: int = MAX_NESTING) -> bool:
    """Whether ``body``'s brackets nest at most ``limit`` deep, checked before parsing
    (Python's parser recurses once per level: 33,000 brackets under the body limit raised
    RecursionError). Strings are skipped whole; stops at the first level too deep."""
    depth = 0
    for m in _BRACKETS.finditer(body):
        c = m.group()
        if c in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return False
        elif c in (b"]", b"}"):
            depth -= 1
    return True
