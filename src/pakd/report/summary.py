"""The run in one table: teacher, best student, retention, speed-up, where to read more."""
from __future__ import annotations

from ..results import FisherAnalysis, PakdExperiment, RunTimings, TeachersReport
from .tables import fmt, markdown_table


def summary_markdown(rd, teachers: TeachersReport | None, fisher: FisherAnalysis | None,
                     pakd: PakdExperiment | None, timings: RunTimings | None) -> str:
    """RUN/summary.md from the run's results (each None when its stage has not run)."""
    lines = [f"# pakd run — {rd}", ""]
    rows = []
    if pakd:
        t, b = pakd.teacher, pakd.best_student
        rows.append({"what": f"teacher ({t['model']})", "params": t["params"],
                     "rmse": t["rmse"], "ndcg": t["ndcg@10"], "ndcg4": t.get("ndcg@10_rel4"),
                     "auc": t.get("auc"), "lat": t.get("latency_ms_p50")})
        if b.get("method"):
            rows.append({"what": f"best student ({b['method']} at budget {b['budget']})",
                         "params": b["params"], "rmse": b["rmse"], "ndcg": b["ndcg@10"],
                         "ndcg4": b.get("ndcg@10_rel4"), "auc": b.get("auc"), "lat": b.get("latency_ms_p50"),
                         "size": f"{b.get('params_vs_teacher_pct', float('nan')):.1f}%",
                         "ret": f"RMSE {fmt(b.get('rmse_retention_pct'), 1)}%, NDCG@10 "
                                f"{fmt(b.get('ndcg_retention_pct'), 1)}%",
                         "speed": f"{fmt(b.get('speedup_throughput'), 1)}× rows/s, "
                                  f"{fmt(b.get('speedup_latency'), 1)}× latency"})
    elif teachers:
        e = teachers.ensemble
        rows.append({"what": "teacher (ensemble)", "params": e["params"], "rmse": e["rmse"],
                     "ndcg": e["ndcg@10"], "ndcg4": e.get("ndcg@10_rel4"), "auc": e.get("auc")})
    if rows:
        lines += [markdown_table(rows, [
            ("what", "model"), ("params", "params"), ("size", "of teacher"), ("rmse", "RMSE"),
            ("ndcg", "NDCG@10"), ("ndcg4", "NDCG@10 ≥ 4 stars"), ("auc", "AUC"),
            ("ret", "retention"),
            ("lat", "top-10 ms p50", 2), ("speed", "speed-up")]), "",
            "Test part; the best student is chosen on the valid part "
            f"({pakd.best_student.get('rule', '')})." if pakd else "Test part.", ""]
    if timings:
        lines += ["Seconds per stage: " + ", ".join(
            f"{k} {v:.0f}" for k, v in timings.stage_seconds().items()), ""]
        if timings.peak_rss_mb:
            lines += ["Peak memory per stage (RSS, MB): " + ", ".join(
                f"{k} {v:,.0f}" for k, v in timings.peak_rss_mb.items()), ""]
        if timings.environment:
            lines += ["Environment: " + environment_line(timings.environment), ""]
    reports = [("page", rd.report_html), ("teachers", rd.teachers_md), ("Fisher analysis", rd.fisher_md),
               ("PAKD sweep", rd.pakd_md), ("plots", rd.plots),
               ("deployable student", rd.best_student.with_suffix(".safetensors"))]
    lines += ["Reports: " + "; ".join(f"{k} `{p}`" for k, p in reports if p.exists()), ""]
    return "\n".join(lines)


def environment_line(env: dict) -> str:
    """The record's plain values, then the CPU, its kernels and the lock in a few words (the
    full record, every package and CPU flag, stays in RUN/timings.json)."""
    parts = [f"{k} {v}" for k, v in env.items()
             if v is not None and not isinstance(v, (dict, list))]
    cpu, build, lock = env.get("cpu") or {}, env.get("torch_build") or {}, env.get("lock")
    if cpu.get("model"):
        parts.append(f"CPU {cpu['model']} ({build.get('cpu_capability', '?')} kernels, "
                     f"BLAS {build.get('blas_info', '?')})")
    if lock:
        n = len(lock.get("differs", {}))
        parts.append(f"{lock['file']} {lock['sha256'][:12]} "
                     + ("(installed exactly)" if not n else f"({n} packages differ)")
                     + ("" if lock.get("up_to_date", True) else ", out of date"))
    return ", ".join(parts)

