"""Runs tracked in MLflow: ``pakd run --track mlflow[=URI]``.

One MLflow run per pakd run (experiment ``pakd``, named after the run directory) and one
nested run per stage, logged as each stage finishes: the stage's settings as params, its
figures as metrics (per member, method and budget), its reports and the saved best student
as artifacts; the run's seed, profile and environment as tags. The default store is the
local file store ``mlruns/`` *beside* the run directory (``runs/a`` -> ``runs/mlruns``), so
every run under one folder lands in one store and can be compared there
(``mlflow ui --backend-store-uri runs/mlruns``).

Tracking never stops a run: a store that cannot be reached or refuses a write gives one
warning, tracking is switched off, and the run goes on writing its own files as always.
Teachers' weights are not uploaded (EASE's alone is hundreds of MB); their configs are.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import PakdError
from ..results import FisherAnalysis, PakdExperiment, TeachersReport, load_result
from ..rundir import RunDir, read_json

INSTALL = "pip install 'pakd[track]'"
EXPERIMENT = "pakd"

# stage -> the settings sections logged as its params
STAGE_SECTIONS = {"split": ("data", "split"),
                  "teachers": ("train", "svd", "xdeepfm", "autoint", "ease", "als", "lightgcn",
                               "sasrec", "knn", "uknn", "knn_interp"),
                  "ensemble": ("ensemble", "eval"), "fisher": ("fisher",),
                  "distill": ("distill", "student", "lightweight", "bench"), "report": ()}
METRICS = ("rmse", "mae", "auc", "logloss", "recall@10", "ndcg@10", "params")
STUDENT_METRICS = METRICS + ("bytes_fp32", "bytes_int8", "rmse_retention_pct", "ndcg_retention_pct",
                             "params_vs_origin_pct", "throughput_rows_per_s",
                             "speedup_throughput", "latency_ms_p50", "speedup_latency",
                             "peak_rss_mb", "train_seconds")


def parse(spec: str) -> str | None:
    """``mlflow`` or ``mlflow=URI`` -> the URI (None: the default store). Anything else is
    refused with the accepted forms."""
    kind, _, uri = spec.partition("=")
    if kind.strip().lower() != "mlflow" or (_ and not uri.strip()):
        raise PakdError(f"--track {spec!r}: the tracker is given as mlflow or mlflow=URI "
                        "(e.g. --track mlflow=http://127.0.0.1:5000, or --track mlflow for "
                        "the file store mlruns/ beside the run directory)")
    return uri.strip() or None


def require() -> None:
    """Stop before any work when MLflow is not installed, naming the install command."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise PakdError(f"--track mlflow needs MLflow, which is not installed: {INSTALL} "
                        "(or pip install mlflow), then run the command again") from None


def default_uri(rd: RunDir) -> str:
    """The local file store beside the run directory."""
    return (rd.root.resolve().parent / "mlruns").as_uri()


def metric_key(*parts) -> str:
    """An MLflow metric or param name: dots between parts; '@' spelled 'at'; anything
    MLflow refuses replaced by '_'."""
    key = ".".join(str(p) for p in parts if p not in (None, ""))
    return re.sub(r"[^\w.\-/ ]", "_", key.replace("@", "_at_"))


def _flat(prefix: str, obj, out: dict) -> dict:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[metric_key(prefix)] = obj
    return out


def _num(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if v == v and abs(v) != float("inf") else None


def stage_metrics(name: str, rd: RunDir, stats: dict | None = None) -> dict[str, float]:
    """The figures a finished stage wrote, flattened to MLflow metric names."""
    out: dict[str, float] = {}

    def put(prefix, block, keys):
        for k in keys:
            v = _num((block or {}).get(k))
            if v is not None:
                out[metric_key(prefix, k)] = v
    for k, v in (stats or {}).items():
        if _num(v) is not None:
            out[metric_key("stage", k)] = _num(v)
    if name == "split" and rd.split_json.is_file():
        s = read_json(rd.split_json)
        put("rows", s.get("rows"), ("train", "valid", "test"))
        put("", s, ("users", "items"))
        put("cold_dropped", s.get("cold_dropped"), ("valid", "test"))
    elif name == "teachers":
        for f in sorted(rd.teachers.glob("*.json")) if rd.teachers.is_dir() else []:
            if f.stem == "ensemble" or f.name.endswith(".catalog.json"):
                continue
            m = read_json(f)
            put(f"member.{f.stem}", m.get("test"), METRICS)
            put(f"member.{f.stem}", {**(m.get("fit") or {}), "params": m.get("params")},
                ("params", "train_seconds", "best_epoch", "epochs_run"))
    elif name == "ensemble" and rd.teachers_json.is_file():
        t = load_result(rd.teachers_json, TeachersReport)
        for n, m in t.members.items():
            put(f"member.{n}", m, METRICS)
        put("ensemble", t.ensemble, METRICS)
        put("origin_ensemble", t.origin_ensemble, METRICS)
        for n, b in t.baselines.items():
            put(f"baseline.{n}", b, METRICS)
    elif name == "fisher" and rd.fisher_json.is_file():
        f = load_result(rd.fisher_json, FisherAnalysis)
        for n, m in f.models.items():
            v = m.get("validation", {})
            c = v.get("by_objective", {}).get(v.get("objective"), {})
            put(f"member.{n}", {"friendliness": m.get("pruning_friendliness"),
                                "fisher_trace": m.get("sensitivity", {}).get("total"),
                                **{f"spearman_{k}": c.get(f"spearman_{k}")
                                   for k in ("true", "taylor", "magnitude")}},
                ("friendliness", "fisher_trace", "spearman_true", "spearman_taylor",
                 "spearman_magnitude"))
            put(f"member.{n}", f.timings.get(n), ("fisher_seconds",))
    elif name == "distill" and rd.pakd_json.is_file():
        p = load_result(rd.pakd_json, PakdExperiment)
        put("teacher", p.teacher, STUDENT_METRICS)
        for r in p.rows:
            put(f"{r['method']}.{str(r.get('budget')).replace('%', 'pct')}", r, STUDENT_METRICS)
        b = p.best_student
        if b.get("method"):
            put("best_student", b, STUDENT_METRICS + ("pruning_ratio",))
    return out


def stage_artifacts(name: str, rd: RunDir) -> list[Path]:
    """The reports (and, for distill, the saved best student) a stage leaves."""
    files = {"split": [rd.split_json],
             "teachers": [f for f in sorted(rd.teachers.glob("*.json"))
                          if not f.name.endswith(".catalog.json")] if rd.teachers.is_dir() else [],
             "ensemble": [rd.teachers_json, rd.teachers_md, rd.ensemble],
             "fisher": [rd.fisher_json, rd.fisher_md, rd.fisher_experiment_json],
             "distill": [rd.pakd_json, rd.pakd_md]
             + sorted(rd.best_student.parent.glob(rd.best_student.name + ".*"))
             if rd.best_student.parent.is_dir() else [rd.pakd_json, rd.pakd_md],
             "report": [rd.report_html, rd.summary_md, rd.timings_json, rd.config]
             + (sorted(rd.plots.glob("*.png")) if rd.plots.is_dir() else [])}
    return [f for f in files.get(name, []) if Path(f).is_file()]


class Tracker:
    """One pakd run as an MLflow run with a nested run per stage. Every call is guarded: the
    first failure warns once and switches tracking off for the rest of the run."""

    def __init__(self, uri: str | None, cfg, rd: RunDir):
        require()
        self.rd, self.cfg = rd, cfg
        self.uri = uri or default_uri(rd)
        self.client = self.parent = None
        if "://" not in self.uri or self.uri.startswith("file:"):
            # MLflow 3 keeps its file store only on request; it is pakd's default store
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        else:    # an unreachable server answers in seconds, not after minutes of retries
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        self._guard(self._start)

    @property
    def active(self) -> bool:
        return self.client is not None and self.parent is not None

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except Exception as e:   # any failure of the store: warn once (no call follows), go on
            first = str(e).splitlines()[0][:200] if str(e) else ""
            from ..runtime import log
            log.warning("MLflow tracking at %s failed (%s: %s); the run goes on untracked and "
                        "keeps all its files in %s", self.uri, type(e).__name__, first,
                        self.rd.root)
            self.client = None
            return None

    def _start(self):
        from mlflow.tracking import MlflowClient
        from ..runtime import environment
        client = MlflowClient(self.uri)
        exp = client.get_experiment_by_name(EXPERIMENT)
        exp_id = exp.experiment_id if exp else client.create_experiment(EXPERIMENT)
        tags = {"pakd.run_dir": str(self.rd.root.resolve()), "seed": str(self.cfg.seed),
                "profile": self.cfg.profile,
                **{metric_key("env", k): str(v) for k, v in environment().items()}}
        self.client, self.exp_id = client, exp_id
        self.parent = client.create_run(exp_id, run_name=self.rd.root.name, tags=tags)
        self._params(self.parent.info.run_id, {"seed": self.cfg.seed, "threads": self.cfg.threads,
                                               "profile": self.cfg.profile})

    def _params(self, run_id: str, params: dict) -> None:
        from mlflow.entities import Param
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i:i + 100])

    def _metrics(self, run_id: str, metrics: dict) -> None:
        import time
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        for i in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[i:i + 500])

    def stage(self, name: str, stats: dict | None = None) -> None:
        """Log a finished stage as a nested run (settings, figures, reports)."""
        if self.active:
            self._guard(self._stage, name, stats)

    def _stage(self, name: str, stats: dict | None) -> None:
        parent = self.parent.info.run_id
        run = self.client.create_run(self.exp_id, run_name=name, tags={
            "mlflow.parentRunId": parent, "pakd.stage": name, "seed": str(self.cfg.seed)})
        rid = run.info.run_id
        params: dict = {}
        dump = self.cfg.model_dump(mode="json")
        for sec in STAGE_SECTIONS.get(name, ()):
            _flat(sec, dump.get(sec, {}), params)
        self._params(rid, params)
        metrics = stage_metrics(name, self.rd, stats)
        self._metrics(rid, metrics)
        for f in stage_artifacts(name, self.rd):
            sub = f.parent.relative_to(self.rd.root).as_posix() if f.parent != self.rd.root \
                else None
            self.client.log_artifact(rid, str(f), sub if sub not in (".", "") else None)
        if name == "distill":     # the headline figures on the pakd run itself too
            self._metrics(parent, {k: v for k, v in metrics.items()
                                   if k.startswith(("best_student.", "teacher."))})
        if name == "report":
            for f in (self.rd.report_html, self.rd.summary_md, self.rd.config):
                if f.is_file():
                    self.client.log_artifact(parent, str(f))
        self.client.set_terminated(rid, "FINISHED")

    def finish(self, failed: bool = False) -> None:
        if self.active:
            self._guard(self.client.set_terminated, self.parent.info.run_id,
                        "FAILED" if failed else "FINISHED")
