"""Markdown summary and plots of a PAKD sweep."""
from __future__ import annotations

from pathlib import Path

from .fisher import _save
from .tables import fmt, markdown_table

COLS = [("method", "method"), ("model", "model"), ("pruning_ratio", "ratio"),
        ("removed_ratio", "removed"), ("rmse", "RMSE"), ("mae", "MAE"), ("auc", "AUC"),
        ("recall@10", "Recall@10"), ("ndcg@10", "NDCG@10"), ("rmse_retention_pct", "RMSE ret. %"),
        ("ndcg_retention_pct", "NDCG ret. %"), ("params", "params"), ("size_bytes", "bytes"),
        ("throughput_rows_per_s", "rows/s"), ("latency_ms_p50", "top-10 ms p50"),
        ("latency_ms_p99", "p99"), ("peak_rss_mb", "peak RSS MB"),
        ("speedup_throughput", "× rows/s"), ("speedup_latency", "× latency")]


def pakd_markdown(res: dict) -> str:
    t = res["teacher"]
    rows = [t] + res["members"] + res["rows"]
    lines = [f"# PAKD experiment — {res['dataset']}", "",
             f"Teacher: {t['model']}; {res['threads']} torch threads; throughput at batch "
             f"{t['bench_batch']}; latency = one user's full-catalogue top-10. Retention: "
             "RMSE teacher/student, NDCG@10 student/teacher.", "",
             markdown_table(rows, COLS, digits=4), ""]
    b = res["best_student"]
    lines += ["## Best student", "", b.get("reason", ""), ""]
    if b.get("saved"):
        lines += [f"Saved: `{b['saved']}` ({fmt(b.get('params'))} parameters, RMSE "
                  f"{fmt(b.get('rmse'))}, NDCG@10 {fmt(b.get('ndcg@10'))}, "
                  f"{fmt(b.get('speedup_throughput'), 1)}× throughput, "
                  f"{fmt(b.get('speedup_latency'), 1)}× lower latency).", ""]
    lines += ["## Targets", ""]
    tg = res["targets"]
    for k, v in tg.items():
        if k == "fisher_kd_vs_baselines":
            continue
        lines.append(f"- {k}: " + ", ".join(f"{kk} {fmt(vv)}" for kk, vv in v.items()))
    for k, v in tg.get("fisher_kd_vs_baselines", {}).items():
        lines.append(f"- fisher_kd vs {k}: RMSE {fmt(v['fisher_kd'][0])} vs {fmt(v['baseline'][0])} "
                     f"({'ok' if v['rmse_at_least_as_good'] else 'worse'}), NDCG@10 "
                     f"{fmt(v['fisher_kd'][1])} vs {fmt(v['baseline'][1])} "
                     f"({'ok' if v['ndcg_at_least_as_good'] else 'worse'})")
    return "\n".join(lines) + "\n"


def pakd_plots(res: dict, out_dir: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out_dir.mkdir(parents=True, exist_ok=True)
    t = res["teacher"]
    methods = sorted({r["method"] for r in res["rows"]})
    paths = []
    for xkey, xlabel, fname in (("params", "parameters", "pakd_accuracy_vs_params.png"),
                                ("latency_ms_p50", "top-10 latency p50 (ms)",
                                 "pakd_accuracy_vs_latency.png")):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, ykey, ylabel in ((axes[0], "ndcg@10", "NDCG@10 (higher is better)"),
                                 (axes[1], "rmse", "RMSE (lower is better)")):
            for m in methods:
                rs = sorted([r for r in res["rows"] if r["method"] == m], key=lambda r: r[xkey])
                ax.plot([r[xkey] for r in rs], [r[ykey] for r in rs], "o-", label=m)
            ax.scatter([t[xkey]], [t[ykey]], marker="*", s=150, color="black", label="teacher")
            for r in res["members"]:
                ax.scatter([r[xkey]], [r[ykey]], marker="x", s=50, label=r["model"])
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        paths.append(_save(fig, out_dir / fname))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for c in res["curves"]:
        h = c["history"]
        lab = f"{c['method']}@{c['pruning_ratio']:g}"
        axes[0].plot([x["epoch"] for x in h], [x["valid_ndcg@10"] for x in h], label=lab)
        axes[1].plot([x["epoch"] for x in h], [x["valid_rmse"] for x in h], label=lab)
    axes[0].set_ylabel("valid NDCG@10")
    axes[1].set_ylabel("valid RMSE")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    paths.append(_save(fig, out_dir / "pakd_training_curves.png"))
    return paths
