"""`pakd serve`: a recommender HTTP service (FastAPI on uvicorn) over a deployable model.

GET  /recommend?user=ID&k=10[&model=teacher][&include_seen=true]  top-K with titles, scores
POST /score {"pairs": [[user, item], ...]}                          ratings (bounded batch)
GET  /healthz, /metadata, /users                                    liveness, model, user IDs
GET  /users/{id}/ratings, /items?q=TEXT                             a user's ratings, search
POST /users/{id}/ratings {"ratings": [{"item", "rating"}, ...]}     live update (token)
POST /items {"item", "title", "features"}                           a new item (token)
POST /admin/reload                                                  hot reload (token)
GET  /metrics                                                       Prometheus text format
GET  /                                                              a page comparing models
GET  /docs, /openapi.json                                           only with docs=True

Every request passes `guard.Guard` first (Host, rate limit, bearer token, JSON content
type, security headers), then is checked before it reaches the model: unknown users and
items answer 404 (or, with ``fallback="popular"``, unknown users get the most rated
items), malformed parameters 422, batches over the limit 413. Every error has the body
``{"error": {"code", "message"}}``. The student computes inline: one top-K is well under a
millisecond, and a thread hop per request would cost more than it saves. The teacher (an
ensemble: tens of milliseconds a user) computes in a worker thread, so the event loop -
and ``/healthz`` - keeps answering while it works. Live updates and reloads go through an
`Updater` (`pakd.deploy.live`): durable in the update log before they are answered.
"""
from __future__ import annotations

import asyncio
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import PakdError
from ..limits import MAX_NESTING, short
from .auth import BearerToken
from .deployable import Deployable
from .graphs import Graphs
from .guard import Guard, RateLimiter, error_body, json_depth_ok, security_headers
from .metrics import Counted, ServiceMetrics
from .live import Updater
from .updates import ITEM_BODY_BYTES, item_record, ratings_record

PAGE = Path(__file__).with_name("page.html")


@dataclass
class Served:
    """A deployable model with the graphs that answer for it."""
    dep: Deployable
    graphs: Graphs
    label: str

    def describe(self) -> dict:
        """What /metadata tells a client: no file system path, no process ID."""
        d = self.dep
        return {"name": d.name, "kind": d.kind, "params": int(d.model.n_params()),
                "size_bytes": int(d.size_bytes), "users": len(d.user_ids),
                "items": len(d.item_ids), "metrics": d.metrics,
                "backend": self.graphs.backend, "label": self.label, "max_k": self.graphs.k}


def _json(body: dict) -> Response:
    """A JSON response from plain Python values, serialised once by ``json`` (FastAPI's own
    encoder walks the values again and costs more than the top-K itself)."""
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


def error(status: int, message: str, code: str | None = None,
          headers: dict | None = None) -> Response:
    """The one error body of the service: ``{"error": {"code", "message"}}``."""
    return Response(error_body(status, message, code), status_code=status,
                    media_type="application/json", headers=headers)


def _items(served: Served, idx: np.ndarray, scores: np.ndarray) -> list[dict]:
    dep = served.dep
    return [{"item": dep.item_ids[int(i)], "title": dep.titles[int(i)], "score": float(s)}
            for i, s in zip(idx, scores) if np.isfinite(s)]


@dataclass
class _Shared:
    """What the routes of one app share: the served models (the student is swapped by a
    reload), the metrics, the updater, the limits and the teacher's thread pool. One object
    passed to each route group, so the groups stay small functions of their own."""
    models: dict
    metrics: ServiceMetrics
    updater: Updater | None
    fallback: str | None
    max_batch: int
    pool: ThreadPoolExecutor
    page_html: str
    started: float = field(default_factory=time.time)

    @property
    def body_limit(self) -> int:
        return 64 * self.max_batch + 4096        # ~40 bytes a pair is generous

    def served_now(self) -> None:
        """The gauges that describe the served student, set again after a swap."""
        s, metrics, updater = self.models["student"].dep, self.metrics, self.updater
        metrics.users.set(len(s.user_ids))
        metrics.items.set(len(s.item_ids))
        if updater is not None:
            metrics.served(s.name, s.kind, updater.version, updater.state.lineage,
                           updater.generation)
            metrics.log_records.set(len(updater.log.records))
            metrics.log_bytes.set(updater.log.bytes)
        else:
            metrics.served(s.name, s.kind, "", "", 1)

    async def reload_logged(self) -> dict | None:
        """A reload (/admin/reload or SIGHUP), counted and logged when refused."""
        from ..runtime import log
        try:
            out = await self.updater.reload()
            self.metrics.reloads.labels("done").inc()
            self.served_now()
            return out
        except PakdError as e:
            self.metrics.reloads.labels("refused").inc()
            log.error("reload refused: %s", e)
            raise


def _check_options(fallback, max_batch: int, rate_limit: float) -> None:
    if fallback not in (None, "popular"):
        raise PakdError(f"fallback must be 'popular' or none, got {fallback!r}")
    if max_batch < 1:
        raise PakdError(f"max batch must be at least 1, got {max_batch}")
    if rate_limit < 0:
        raise PakdError(f"the rate limit must be 0 (none) or positive, got {rate_limit}")


def create_app(student: Served | None, teacher: Served | None = None, *,
               fallback: str | None = None, max_batch: int = 1000,
               token: BearerToken | None = None, allowed_hosts: set[str] | None = None,
               rate_limit: float = 0, docs: bool = False, workers: int = 1,
               updater: Updater | None = None, write_token: BearerToken | None = None):
    """The FastAPI app; ``teacher`` (optional) answers ``model=teacher`` and the page's
    second column. ``token``: required on every endpoint but /healthz and the page;
    ``allowed_hosts``: Host header values accepted (None: any); ``rate_limit``: requests a
    second per client address (0: none); ``docs``: serve /docs and /openapi.json;
    ``workers``: threads that compute the teacher's answers. ``updater`` (`Updater`):
    live updates and reloads - the student is its state then - which need ``write_token``
    (or ``token``)."""
    _check_options(fallback, max_batch, rate_limit)
    write_token = write_token or token
    if updater is not None and write_token is None:
        raise PakdError("live updates need a bearer token: give --token-file, or a --state "
                        "directory (a token is made there)")
    if updater is not None:
        student = Served(updater.state, updater.state.graphs, "student")
    app = FastAPI(title="pakd recommender", version=__version__, docs_url=None,
                  redoc_url=None, openapi_url="/openapi.json" if docs else None)
    shared = _Shared(models={"student": student, **({"teacher": teacher} if teacher else {})},
                     metrics=ServiceMetrics(), updater=updater, fallback=fallback,
                     max_batch=max_batch, page_html=PAGE.read_text(),
                     pool=ThreadPoolExecutor(max_workers=max(1, workers),
                                             thread_name_prefix="pakd-teacher"))
    app.add_middleware(Guard, token=token, write_token=write_token,
                       allowed_hosts=allowed_hosts,
                       limiter=RateLimiter(rate_limit) if rate_limit else None,
                       headers=security_headers(shared.page_html))
    app.add_middleware(Counted, metrics=shared.metrics)
    app.router.on_shutdown.append(lambda: shared.pool.shutdown(wait=False))
    if updater is not None:
        _follow_updater(app, shared)
    shared.served_now()
    _error_handlers(app)
    _read_routes(app, shared)
    _recommend_route(app, shared, student.graphs.k)
    _score_route(app, shared)
    _catalogue_routes(app, shared)
    _write_routes(app, shared)
    _admin_routes(app, shared)
    _page_routes(app, shared, docs)
    return app


def _follow_updater(app: FastAPI, shared: _Shared) -> None:
    """A reload swaps the served student; SIGHUP reloads; shutdown closes the log."""
    updater = shared.updater

    def swapped(state):
        shared.models["student"] = Served(state, state.graphs, "student")
    updater.on_swap = swapped
    app.router.on_shutdown.append(updater.close)

    async def sighup():
        import signal
        try:
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGHUP, lambda: asyncio.ensure_future(shared.reload_logged()))
        except (ValueError, RuntimeError, NotImplementedError):   # not the main thread
            pass
    app.router.on_startup.append(sighup)


def _error_handlers(app: FastAPI) -> None:
    """Every error, FastAPI's own included, answers with the service's one error body."""
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        where = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}"
                          for e in exc.errors()[:5])
        return error(422, f"bad request: {where}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        message = {404: f"no such endpoint: {request.url.path[:100]}",
                   405: f"{request.method} is not allowed on {request.url.path[:100]}"}.get(
            exc.status_code, str(exc.detail))
        return error(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):   # pragma: no cover - a bug, logged
        from ..runtime import log
        log.error("unhandled error on %s: %s: %s", request.url.path, type(exc).__name__,
                  str(exc)[:200])
        log.debug("traceback", exc_info=exc)
        return error(500, f"internal error: {type(exc).__name__}")


def _read_routes(app: FastAPI, shared: _Shared) -> None:
    """What a monitor or a client asks about the service: liveness, the models, metrics,
    the user IDs."""
    models, updater = shared.models, shared.updater

    @app.get("/healthz")
    async def healthz():
        return _json({"status": "ok", "uptime_s": round(time.time() - shared.started, 1)})

    @app.get("/metadata")
    async def metadata():
        out = {name: s.describe() for name, s in models.items()} | {
            "max_batch": shared.max_batch, "fallback": shared.fallback,
            "version": __version__, "live_updates": updater is not None}
        if updater is not None:
            out["student"] |= {"model_version": updater.version,
                               "generation": updater.generation,
                               "update_log_records": len(updater.log.records)}
        return _json(out)

    @app.get("/metrics")
    async def prometheus():
        if updater is not None:
            shared.metrics.log_records.set(len(updater.log.records))
            shared.metrics.log_bytes.set(updater.log.bytes)
        body, ctype = shared.metrics.render()
        return Response(body, media_type=ctype)

    @app.get("/users")
    async def users(limit: int = Query(1000, ge=1, le=100000)):
        dep = models["student"].dep
        return _json({"users": dep.user_ids[:limit], "total": len(dep.user_ids)})


def _recommend_route(app: FastAPI, shared: _Shared, max_k: int) -> None:
    """/recommend: the student inline (well under a millisecond), the teacher in the pool
    (tens of milliseconds: the event loop keeps answering meanwhile)."""
    models, fallback = shared.models, shared.fallback

    @app.get("/recommend")
    async def recommend(user: str = Query(..., min_length=1, max_length=200),
                        k: int = Query(10, ge=1, le=max_k),
                        model: str = Query("student", pattern="^(student|teacher)$"),
                        include_seen: bool = False):
        served = models.get(model)
        if served is None:
            return error(404, "no teacher is loaded; start the service with --teacher RUN")
        if k > served.graphs.k:
            return error(422, f"k must be at most {served.graphs.k} for the {model}")
        dep = served.dep
        u = dep.user_index(user)
        if u is None:
            if fallback == "popular":
                return _json({"user": user, "model": model, "fallback": "popular",
                              "items": [{"item": dep.item_ids[int(i)],
                                         "title": dep.titles[int(i)], "score": None}
                                        for i in dep.popular[:k]]})
            return error(404, f"user {short(user)} is not among the model's "
                              f"{len(dep.user_ids)} users (start with --fallback popular to "
                              "answer them with popular items)")
        users_ = np.array([u], dtype=np.int64)
        seen = (np.full((1, 1), -1, np.int64) if include_seen else dep.seen_padded(users_))
        if model == "student":
            scores, idx = served.graphs.top(users_, seen, k)
        else:             # slow: off the event loop, so /healthz and the student keep going
            scores, idx = await asyncio.get_running_loop().run_in_executor(
                shared.pool, served.graphs.top, users_, seen, k)
        return _json({"user": dep.user_ids[u], "model": model,
                      "items": _items(served, idx[0][:k], scores[0][:k])})


async def _read_json(request: Request, limit: int, shape: str):
    """(parsed body, None) or (None, error response): read up to ``limit`` bytes, so an
    oversized body is refused before it is parsed; depth checked before parsing."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None, error(413, f"request body over {limit} bytes; split it")
    if not json_depth_ok(body):
        return None, error(422, f"bad request: JSON nested deeper than {MAX_NESTING} "
                                f"levels; expected {shape}")
    try:
        return json.loads(body), None
    except (ValueError, RecursionError):
        return None, error(422, f"bad request: the body must be JSON: {shape}")


def _pairs_of(data) -> list | None:
    """The ``pairs`` of a /score body when they are [[user, item], ...] of strings or
    integers, else None."""
    pairs = data.get("pairs") if isinstance(data, dict) else None
    if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2
            and all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in p)
            for p in pairs):
        return None
    return pairs


def _score_route(app: FastAPI, shared: _Shared) -> None:
    """/score: ratings of a bounded batch of (user, item) pairs."""
    models, max_batch, body_limit = shared.models, shared.max_batch, shared.body_limit

    @app.post("/score")
    async def score(request: Request):
        """{"pairs": [[user, item], ...]} -> {"ratings": [...]}; the body is read up to a
        limit and checked by hand, so an oversized one is refused before it is parsed."""
        data, bad = await _read_json(request, body_limit, '{"pairs": [[user, item], ...]}')
        if bad is not None:
            if bad.status_code == 413:
                return error(413, f"request body over {body_limit} bytes (the limit for "
                                  f"{max_batch} pairs); split the batch")
            return bad
        pairs = _pairs_of(data)
        if pairs is None:
            return error(422, 'bad request: expected {"pairs": [[user, item], ...]} with IDs '
                              "as strings or integers")
        if len(pairs) > max_batch:
            return error(413, f"{len(pairs)} pairs is over the limit of {max_batch} per "
                              "request; split the batch")
        served = models["student"]
        dep = served.dep
        u = [dep.user_index(p[0]) for p in pairs]
        i = [dep.item_index(p[1]) for p in pairs]
        for n, (a, b) in enumerate(zip(u, i)):
            if a is None or b is None:
                what = (f"user {short(pairs[n][0])}" if a is None
                        else f"item {short(pairs[n][1])}")
                return error(404, f"pair {n}: {what} is not known to the model")
        if not pairs:
            return _json({"ratings": []})
        r = served.graphs.rate(np.array(u, np.int64), np.array(i, np.int64))
        return _json({"ratings": [float(x) for x in r]})


def _catalogue_routes(app: FastAPI, shared: _Shared) -> None:
    """What the page reads besides recommendations: a user's ratings, a title search."""
    models = shared.models

    @app.get("/users/{user}/ratings")
    async def user_ratings(user: str, limit: int = Query(10, ge=1, le=10000)):
        """The user's ratings, highest first (train and valid ones, and every update)."""
        dep = models["student"].dep
        u = dep.user_index(user)
        if u is None:
            return error(404, f"user {short(user)} is not among the model's "
                              f"{len(dep.user_ids)} users")
        if not hasattr(dep, "ratings_of"):
            return error(409, "this service keeps no ratings (it serves an export); start it "
                              "on a saved student for live updates")
        items, ratings = dep.ratings_of(u)
        order = np.lexsort((np.arange(len(items))[::-1], -np.nan_to_num(ratings, nan=-1.0)))
        return _json({"user": dep.user_ids[u], "total": int(len(items)),
                      "ratings": [{"item": dep.item_ids[int(items[j])],
                                   "title": dep.titles[int(items[j])],
                                   "rating": None if np.isnan(ratings[j]) else float(ratings[j])}
                                  for j in order[:limit]]})

    @app.get("/items")
    async def items(q: str = Query("", max_length=200), limit: int = Query(20, ge=1, le=200)):
        """Items whose title holds ``q`` (case-insensitive; every word when several)."""
        dep = models["student"].dep
        words = q.lower().split()
        out = []
        for i, title in enumerate(dep.titles):
            low = title.lower()
            if all(w in low for w in words):
                out.append({"item": dep.item_ids[i], "title": title})
                if len(out) >= limit:
                    break
        return _json({"query": q, "items": out})


def _no_updates() -> Response:
    return error(409, "this service takes no live updates: start pakd serve on a saved "
                      "student with a --state directory (not --onnx, not --read-only)")


def _refused(e: PakdError) -> Response:
    return error(getattr(e, "status", 422), str(e))


def _write_routes(app: FastAPI, shared: _Shared) -> None:
    """Live updates (token): a user's ratings and a new item, answered once durable in the
    update log and in effect (`Updater.submit`)."""
    updater, metrics = shared.updater, shared.metrics

    @app.post("/users/{user}/ratings")
    async def rate(user: str, request: Request):
        """{"ratings": [{"item": ID, "rating": X}, ...]}: in effect once answered."""
        if updater is None:
            return _no_updates()
        data, bad = await _read_json(request, shared.body_limit,
                                     '{"ratings": [{"item": ID, "rating": X}, ...]}')
        if bad is not None:
            return bad
        try:
            known = updater.state.user_index(user) is not None
            rec = await updater.submit(ratings_record(user, data, max_ratings=shared.max_batch))
        except PakdError as e:
            return _refused(e)
        metrics.updates.labels("ratings").inc()
        metrics.ratings.inc(len(rec["ratings"]))
        if not known:
            metrics.users.set(len(updater.state.user_ids))
        return _json({"user": rec["user"], "new_user": not known,
                      "ratings": len(rec["ratings"]), "seq": rec["seq"]})

    @app.post("/items")
    async def add_item(request: Request):
        """{"item": ID, "title": TEXT, "features": {field: value}}: a new item, placed by
        its side fields."""
        if updater is None:
            return _no_updates()
        data, bad = await _read_json(request, ITEM_BODY_BYTES,
                                     '{"item": ID, "title": TEXT, "features": {...}}')
        if bad is not None:
            return bad
        try:
            rec = await updater.submit(item_record(data))
        except PakdError as e:
            return _refused(e)
        metrics.updates.labels("item").inc()
        metrics.items.set(len(updater.state.item_ids))
        return _json({"item": rec["item"], "title": rec["title"], "tokens": rec["tokens"],
                      "unknown_features": rec["unknown"], "seq": rec["seq"]})


def _admin_routes(app: FastAPI, shared: _Shared) -> None:
    """/admin/reload (token): a newly saved student swapped in without dropping a request."""
    @app.post("/admin/reload")
    async def reload():
        """Load the saved student again, re-apply the update log, swap it in."""
        if shared.updater is None:
            return _no_updates()
        try:
            return _json(await shared.reload_logged())
        except PakdError as e:
            return _refused(e)


def _page_routes(app: FastAPI, shared: _Shared, docs: bool) -> None:
    """The page comparing the models, and (``docs``) the API described in plain HTML."""
    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(shared.page_html)

    if docs:
        @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
        async def api_docs():
            return HTMLResponse(docs_page(app.openapi()))


def docs_page(spec: dict) -> str:
    """The API described in plain HTML from the OpenAPI document: no script, no style
    sheet from a CDN (FastAPI's own /docs loads Swagger UI from one)."""
    from html import escape
    rows = []
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            params = ", ".join(f"{p['name']}{'' if p.get('required') else '?'}"
                               for p in op.get("parameters", []))
            rows.append(f"<tr><td>{escape(method.upper())}</td><td><code>{escape(path)}"
                        f"</code></td><td>{escape(params)}</td><td>"
                        f"{escape(op.get('summary') or op.get('description') or '')}</td></tr>")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>pakd API"
            "</title></head><body><h1>pakd recommender API</h1><p>The OpenAPI document is at "
            "<a href=\"/openapi.json\">/openapi.json</a>. Errors answer "
            "<code>{\"error\": {\"code\", \"message\"}}</code>.</p><table><tr><th>method"
            "</th><th>path</th><th>parameters</th><th>what</th></tr>" + "".join(rows) +
            "</table></body></html>")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), or a `PakdError` saying why
    not - before anything is printed or loaded."""
    import errno
    if not 0 <= port <= 65535:
        raise PakdError(f"--port {port} is not a TCP port: give 1-65535, or 0 for a free one")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                   proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise PakdError(f"--host {host[:80]!r}: not an address or a name this machine can "
                        f"resolve ({e}); give e.g. 127.0.0.1, 0.0.0.0 or localhost") from None
    family, kind, proto, _, addr = infos[0]
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are
    # TCP; without it every response waited ~40 ms for the client's delayed ACK
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
        return sock
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise PakdError(f"port {port} on {host} is in use (another server?): stop it, "
                            "choose another --port, or give --port 0 for a free one") from None
        if e.errno in (errno.EACCES, errno.EPERM):
            raise PakdError(f"no permission to listen on port {port} (ports below 1024 need "
                            "privileges): choose a --port from 1024 up") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise PakdError(f"--host {host}: no interface of this machine has that address; "
                            "give 127.0.0.1, 0.0.0.0 or one of its own addresses") from None
        raise PakdError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def serve(app, sock: socket.socket, *, log_level: str = "warning") -> None:
    """Run uvicorn on an already bound socket (`bind`), without its Server header."""
    import uvicorn
    config = uvicorn.Config(app, log_level=log_level, access_log=False, server_header=False)
    uvicorn.Server(config).run(sockets=[sock])


def default_onnx_dir(stem: Path) -> Path:
    """Where `pakd export` writes by default: beside the model, ``<stem>_onnx/``."""
    return stem.with_name(stem.name + "_onnx")


def load_served(model: str | Path, *, onnx: str | Path | None = None, int8: bool = False,
                k: int = 100, threads: int = 1, run_dir: str | Path | None = None,
                label: str = "student", quiet: bool = True) -> Served:
    """A model ready for `create_app`: PyTorch graphs, or the ONNX graphs in ``onnx``
    (``"auto"``: the default export directory, exported now when it is missing)."""
    from .deployable import load_deployable
    from .graphs import TorchGraphs
    dep = load_deployable(model, run_dir=run_dir)
    if onnx is None:
        if int8:
            raise PakdError("--int8 serves the quantised ONNX graphs: add --onnx")
        return Served(dep, TorchGraphs(dep.model, k), label)
    from .onnx_export import export, open_onnx, read_metadata
    out = default_onnx_dir(dep.path) if str(onnx) == "auto" else Path(onnx)
    if str(onnx) == "auto" and not (out / "metadata.json").is_file():
        export(dep, out, k=k, int8=int8, threads=threads, quiet=quiet)
    meta = read_metadata(out)
    if meta["model"]["params"] != dep.model.n_params() or meta["model"]["kind"] != dep.kind:
        raise PakdError(f"{out} holds an export of another model ({meta['model']['name']}, "
                        f"{meta['model']['params']:,} parameters); export {dep.path} again")
    return Served(dep, open_onnx(out, int8=int8, threads=threads), label)


def load_live(model: str | Path, *, k: int = 100, run_dir: str | Path | None = None,
              fields=None):
    """A `LiveState` over the saved student at ``model`` (its item fields' vocabularies
    from its catalogue, else ``fields`` when they fit, else its run)."""
    from .deployable import load_deployable
    from .features import ItemFields, item_fields_of
    from .live import LiveState
    dep = load_deployable(model, run_dir=run_dir)
    vocab = dep.catalog.get("fields")
    if vocab is None and isinstance(fields, ItemFields):
        try:
            fields = ItemFields(fields.vocab, dep.model.schema)
        except PakdError:
            fields = None
    else:
        fields = None
    return LiveState(dep, fields or item_fields_of(dep, vocab), k=k)


def write_token(state: Path) -> tuple[BearerToken, Path]:
    """The token of a service started without --token-file: ``STATE/token`` (made, mode
    600, when missing), so that updates and admin requests are never open."""
    import os
    import secrets
    from .auth import read_token_file
    path = Path(state) / "token"
    if not path.exists():
        Path(state).mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
    return read_token_file(path), path


def open_updater(model: str | Path, state_dir: str | Path, *, k: int = 100,
                 run_dir: str | Path | None = None) -> Updater:
    """The student at ``model`` with the update log of ``state_dir`` replayed onto it, and
    the `Updater` that keeps both (reloads read ``model`` again)."""
    from .updatelog import UpdateLog
    from .live import replay
    state = load_live(model, k=k, run_dir=run_dir)
    updates = UpdateLog.open(state_dir, lineage_of=state.lineage, model=state.name)
    try:
        replay(state, updates.records, log_id=updates.id)
    except BaseException:
        updates.close()
        raise
    holder: dict = {}

    def load():
        return load_live(model, k=k, run_dir=run_dir, fields=holder["u"].state.fields)
    holder["u"] = updater = Updater(state, updates, load)
    return updater
