"""`pakd serve`: a recommender HTTP service (FastAPI on uvicorn) over a deployable model.

GET  /recommend?user=ID&k=10[&model=teacher][&include_seen=true]  top-K with titles, scores
POST /score {"pairs": [[user, item], ...]}                          ratings (bounded batch)
GET  /healthz, /metadata, /users                                    liveness, model, user IDs
GET  /                                                              a page comparing models

Every request is checked before it reaches the model: unknown users and items answer 404
(or, with ``fallback="popular"``, unknown users get the most rated items), malformed
parameters 422, batches over the limit 413. Handlers are plain ``async`` functions that
compute inline: one top-K is well under a millisecond for a student, and a thread hop per
request would cost more than it saves.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from .. import __version__
from ..errors import PakdError
from .deployable import Deployable
from .graphs import Graphs

PAGE = Path(__file__).with_name("page.html")


@dataclass
class Served:
    """A deployable model with the graphs that answer for it."""
    dep: Deployable
    graphs: Graphs
    label: str

    def describe(self) -> dict:
        return {**self.dep.describe(), "backend": self.graphs.backend, "label": self.label,
                "max_k": self.graphs.k}


def _json(body: dict) -> Response:
    """A JSON response from plain Python values, serialised once by ``json`` (FastAPI's own
    encoder walks the values again and costs more than the top-K itself)."""
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


def _items(served: Served, idx: np.ndarray, scores: np.ndarray) -> list[dict]:
    dep = served.dep
    return [{"item": dep.item_ids[int(i)], "title": dep.titles[int(i)], "score": float(s)}
            for i, s in zip(idx, scores) if np.isfinite(s)]


def create_app(student: Served, teacher: Served | None = None, *, fallback: str | None = None,
               max_batch: int = 1000):
    """The FastAPI app; ``teacher`` (optional) answers ``model=teacher`` and the page's
    second column."""
    if fallback not in (None, "popular"):
        raise PakdError(f"fallback must be 'popular' or none, got {fallback!r}")
    if max_batch < 1:
        raise PakdError(f"max batch must be at least 1, got {max_batch}")
    app = FastAPI(title="pakd recommender", version=__version__,
                  docs_url="/docs", redoc_url=None)
    models = {"student": student, **({"teacher": teacher} if teacher else {})}
    started = time.time()

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse(status_code=status, content={"error": message})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        where = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}"
                          for e in exc.errors()[:5])
        return error(422, f"bad request: {where}")

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):   # pragma: no cover - a bug, logged
        from ..runtime import log
        log.exception("unhandled error on %s", request.url.path)
        return error(500, f"internal error: {type(exc).__name__}")

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "uptime_s": round(time.time() - started, 1)}

    @app.get("/metadata")
    async def metadata():
        return {name: s.describe() for name, s in models.items()} | {
            "max_batch": max_batch, "fallback": fallback, "pid": os.getpid()}

    @app.get("/users")
    async def users(limit: int = Query(1000, ge=1, le=100000)):
        return {"users": student.dep.user_ids[:limit], "total": len(student.dep.user_ids)}

    @app.get("/recommend")
    async def recommend(user: str = Query(..., min_length=1, max_length=200),
                        k: int = Query(10, ge=1, le=student.graphs.k),
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
                top = dep.popular[:k]
                return {"user": user, "model": model, "fallback": "popular",
                        "items": [{"item": dep.item_ids[int(i)], "title": dep.titles[int(i)],
                                   "score": None} for i in top]}
            return error(404, f"user {user!r} is not among the model's {len(dep.user_ids)} "
                              "users (start with --fallback popular to answer them with "
                              "popular items)")
        users_ = np.array([u], dtype=np.int64)
        seen = (np.full((1, 1), -1, np.int64) if include_seen else dep.seen_padded(users_))
        scores, idx = served.graphs.top(users_, seen, k)
        return _json({"user": dep.user_ids[u], "model": model,
                      "items": _items(served, idx[0][:k], scores[0][:k])})

    body_limit = 64 * max_batch + 4096        # ~40 bytes a pair is generous

    @app.post("/score")
    async def score(request: Request):
        """{"pairs": [[user, item], ...]} -> {"ratings": [...]}; the body is read up to a
        limit and checked by hand, so an oversized one is refused before it is parsed."""
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > body_limit:
                return error(413, f"request body over {body_limit} bytes (the limit for "
                                  f"{max_batch} pairs); split the batch")
        try:
            data = json.loads(body)
        except ValueError:
            return error(422, 'bad request: the body must be JSON: {"pairs": [[user, item], ...]}')
        pairs = data.get("pairs") if isinstance(data, dict) else None
        if not isinstance(pairs, list) or not all(
                isinstance(p, list) and len(p) == 2
                and all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in p)
                for p in pairs):
            return error(422, 'bad request: expected {"pairs": [[user, item], ...]} with IDs '
                              "as strings or integers")
        if len(pairs) > max_batch:
            return error(413, f"{len(pairs)} pairs is over the limit of {max_batch} per "
                              "request; split the batch")
        dep = student.dep
        u = [dep.user_index(p[0]) for p in pairs]
        i = [dep.item_index(p[1]) for p in pairs]
        for n, (a, b) in enumerate(zip(u, i)):
            if a is None or b is None:
                what = f"user {pairs[n][0]!r}" if a is None else f"item {pairs[n][1]!r}"
                return error(404, f"pair {n}: {what} is not known to the model")
        if not pairs:
            return {"ratings": []}
        r = student.graphs.rate(np.array(u, np.int64), np.array(i, np.int64))
        return _json({"ratings": [float(x) for x in r]})

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return PAGE.read_text()

    return app


def serve(app, host: str, port: int, *, log_level: str = "warning") -> None:
    import uvicorn
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


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
