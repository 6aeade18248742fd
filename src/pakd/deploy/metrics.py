"""``/metrics``: the service's figures in the Prometheus text format, through the standard
client library (prometheus-client), one registry per app.

pakd_requests_total{endpoint, method, status}   every answered request (the gate's
                                                refusals too)
pakd_request_seconds{endpoint}                  latency histogram, first byte in to last out
pakd_errors_total{endpoint, code}               4xx and 5xx answers by error code
pakd_updates_total{type}                        updates in effect (ratings records, items)
pakd_update_ratings_total                       ratings in effect
pakd_update_log_records, pakd_update_log_bytes  the update log's length
pakd_model_info{name, kind, version, lineage}   the served student (value 1)
pakd_model_generation                           1 at start, +1 per reload
pakd_reloads_total{result}                      reloads done and refused
pakd_users, pakd_items                          the catalogue's size, new ones included

Endpoints are labelled by route (``/users/{id}/ratings``), never by the raw path, so a
client cannot grow the label set.
"""
from __future__ import annotations

import re
import time

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge,
                               Histogram, disable_created_metrics, generate_latest)

from .guard import CODES

ROUTES = ("/recommend", "/score", "/healthz", "/metadata", "/users", "/items", "/metrics",
          "/admin/reload", "/", "/docs", "/openapi.json")
_USER_ROUTE = re.compile(r"^/users/[^/]+/ratings$")
BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


disable_created_metrics()    # no *_created series: a scrape's size stays what it counts


def route(path: str) -> str:
    if path in ROUTES:
        return path
    if _USER_ROUTE.match(path):
        return "/users/{id}/ratings"
    return "other"


class ServiceMetrics:
    """The registry and its metrics (`Counted` counts every request into them)."""

    def __init__(self):
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter("pakd_requests", "Requests answered", ["endpoint", "method",
                                                                      "status"], registry=r)
        self.latency = Histogram("pakd_request_seconds", "Request latency", ["endpoint"],
                                 buckets=BUCKETS, registry=r)
        self.errors = Counter("pakd_errors", "Error answers (4xx, 5xx) by code",
                              ["endpoint", "code"], registry=r)
        self.updates = Counter("pakd_updates", "Updates in effect", ["type"], registry=r)
        self.ratings = Counter("pakd_update_ratings", "Ratings in effect", registry=r)
        self.log_records = Gauge("pakd_update_log_records", "Records in the update log",
                                 registry=r)
        self.log_bytes = Gauge("pakd_update_log_bytes", "Bytes of the update log", registry=r)
        self.model = Gauge("pakd_model_info", "The served student",
                           ["name", "kind", "version", "lineage"], registry=r)
        self.generation = Gauge("pakd_model_generation", "1 at start, +1 per reload",
                                registry=r)
        self.reloads = Counter("pakd_reloads", "Reloads", ["result"], registry=r)
        self.users = Gauge("pakd_users", "Users the student knows", registry=r)
        self.items = Gauge("pakd_items", "Items in the catalogue", registry=r)

    def served(self, name: str, kind: str, version: str, lineage: str, generation: int) -> None:
        self.model.clear()
        self.model.labels(name, kind, version, lineage).set(1)
        self.generation.set(generation)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST



class Counted:
    """ASGI middleware (outermost): times and counts every HTTP request in ``metrics``."""

    def __init__(self, app, metrics: ServiceMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            m, endpoint, code = self.metrics, route(scope.get("path", "")), status[0]
            m.latency.labels(endpoint).observe(time.perf_counter() - t0)
            m.requests.labels(endpoint, scope.get("method", "?"), str(code)).inc()
            if code >= 400:
                m.errors.labels(endpoint, CODES.get(code, str(code))).inc()
