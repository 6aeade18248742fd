"""Markdown summary and plots of a PAKD sweep."""
from __future__ import annotations

from pathlib import Path

from .plots import METHOD_STYLE, save_figure, style
from .tables import fmt, markdown_table

COLS = [("method", "method"), ("model", "model"), ("budget", "budget"),
        ("pruning_ratio", "removed"), ("rmse", "RMSE"), ("mae", "MAE"), ("auc", "AUC"),
        ("recall@10", "Recall@10"), ("ndcg@10", "NDCG@10"), ("ndcg_ci", "NDCG@10 95% CI"),
        ("ndcg@10_rel4", "NDCG@10 ≥ 4 stars"),
        ("ndcg_vs_teacher", "Δ NDCG@10 vs teacher (95% CI)"), ("rmse_retention_pct", "RMSE ret. %"),
        ("ndcg_retention_pct", "NDCG ret. %"), ("params", "params"),
        ("params_vs_origin_pct", "% of origin"), ("bytes_fp32", "bytes fp32"),
        ("bytes_int8", "bytes int8"), ("file_bytes", "file bytes"),
        ("throughput_rows_per_s", "rows/s"), ("latency_ms_p50", "top-10 ms p50"),
        ("latency_ms_p99", "p99"), ("peak_rss_mb", "peak RSS MB"),
        ("speedup_throughput", "× rows/s", 1), ("speedup_throughput_range", "range", 1),
        ("speedup_latency", "× latency", 1), ("speedup_latency_range", "range", 1)]


def compare(name_a: str, a: float, name_b: str, b: float, lower_is_better: bool) -> str:
    """``a`` against ``b`` with the difference, never a verdict the shown digits contradict:
    equal at 4 decimals reads as a tie."""
    d = a - b
    if round(a, 4) == round(b, 4):
        verdict = "tie at 4 decimals"
    else:
        verdict = "better" if (d < 0) == lower_is_better else "worse"
    return f"{name_a} {a:.4f} vs {name_b} {b:.4f} (Δ {d:+.4f}, {verdict})"


def pakd_markdown(res: dict) -> str:
    t = res["teacher"]
    rows = [dict(r, **_ci_cells(r)) for r in [t] + res["members"] + res["rows"]]
    b = res.get("bench", {})
    lines = [f"# PAKD experiment — {res['dataset']}", "",
             f"Teacher: {t['model']}; {res['threads']} torch threads; throughput at batch "
             f"{t.get('bench_batch')}; latency = one user's full-catalogue top-10. Retention: "
             "RMSE teacher/student, NDCG@10 student/teacher (test part).", "",
             f"Speed: teacher, members and students measured interleaved in one process, "
             f"{b.get('rounds')} rounds in rotating order; each speed-up is the median of the "
             f"per-round ratios to the teacher, with its range over rounds. Load average "
             f"(1, 5, 15 min) before {_load(b.get('load_average_before'))}, after "
             f"{_load(b.get('load_average_after'))}, {b.get('cpus')} CPUs.", "",
             markdown_table(rows, COLS, digits=4), ""]
    best = res["best_student"]
    lines += ["## Best student", "", best.get("rule", best.get("reason", "")), ""]
    if best.get("saved"):
        lines += [f"Saved: `{best['saved']}` ({fmt(best.get('params'))} parameters, test RMSE "
                  f"{fmt(best.get('rmse'))}, NDCG@10 {fmt(best.get('ndcg@10'))}, "
                  f"{fmt(best.get('speedup_throughput'), 1)}× throughput, "
                  f"{fmt(best.get('speedup_latency'), 1)}× lower latency).", ""]
    lines += _check_lines(res.get("criterion_check"))
    lines += ["## Targets", ""]
    tg = res["targets"]
    for k, v in tg.items():
        if k == "fisher_kd_vs_baselines":
            continue
        lines.append(f"- {k}: " + ", ".join(f"{kk} {fmt(vv)}" for kk, vv in v.items()))
    cmp = tg.get("fisher_kd_vs_baselines", {})
    if cmp:
        lines += ["", "fisher_kd against each baseline (test part; Δ = fisher_kd minus the "
                  "baseline, 95% paired bootstrap interval over users; better or worse only "
                  "when the interval excludes 0):", ""]
    for k, v in cmp.items():
        base, budget = k.split("@")
        parts = []
        for i, (m, label, lower) in enumerate((("rmse", "RMSE", True),
                                               ("ndcg@10", "NDCG@10", False))):
            a, b = v["fisher_kd"][i], v["baseline"][i]
            if f"diff_{m}" in v:
                d, lo, hi = v[f"diff_{m}"]
                parts.append(f"{label} {a:.4f} vs {b:.4f}, Δ {_signed(d)} ({_signed(lo)} to "
                             f"{_signed(hi)}): {v[f'verdict_{m}']}")
            else:
                parts.append(label + " " + compare("fisher_kd", a, base, b, lower))
        lines.append(f"- budget {budget}, vs {base}: " + "; ".join(parts))
    return "\n".join(lines) + "\n"


def _check_lines(c: dict | None) -> list[str]:
    """The criterion check (`pakd.distill.check`) as a table: pooled and per group kind."""
    if not c or not c.get("pooled"):
        return []

    def rho(block, part, crit):
        v = block.get(f"{part}_spearman_{crit}")
        ci = block.get(f"{part}_spearman_{crit}_ci95")
        return "–" if v is None else f"{v:.2f}" + (f" ({ci[0]:.2f} to {ci[1]:.2f})" if ci else "")
    rows = [("pooled", c["pooled"])] + [(k, v) for k, v in c["by_kind"].items() if v]
    lines = ["## Does the pruning criterion foresee the damage?", "",
             f"The dense_kd student ({c['params']:,} parameters): {c['units_tested']} units "
             f"removed one at a time ({c['units_without_path']} with no path to the objective, "
             f"left out). Predicted: the mask Fisher PAKD prunes with (balanced as in pruning, "
             f"and raw 1/2 F) from {c['steps']} train steps of its objective ({c['objective']}), "
             "and magnitude. Measured: the change of that objective on the same steps (train) "
             "and of the label loss on the valid and the test part (test only reports). "
             "Spearman (95% bootstrap interval over units).", ""]
    parts = [p for p in ("train", "valid", "test") if f"{p}_spearman_fisher" in c["pooled"]]
    lines += ["| units | n | " + " | ".join(f"{p}: {n}" for p in parts for n in
                                            ("Fisher", "raw Fisher", "magnitude")) + " |",
              "|---|---|" + "---|" * (3 * len(parts))]
    for name, b in rows:
        lines.append(f"| {name} | {b['units']} | " + " | ".join(
            rho(b, part, crit) for part in parts
            for crit in ("fisher", "fisher_raw", "magnitude")) + " |")
    share = c.get("share_lowering_valid_loss")
    if share is not None:
        lines += ["", f"Removals that lower the valid label loss: {share:.0%}."]
    return lines + [""]


def _signed(x: float) -> str:
    """A signed difference, in scientific notation when 4 decimals would show zero."""
    return f"{x:+.2e}" if x and abs(x) < 5e-5 else f"{x:+.4f}"


def _ci_cells(r: dict) -> dict:
    out = {}
    if "ci95" in r:
        out["ndcg_ci"] = r["ci95"]["ndcg@10"]
    d = r.get("paired", {}).get("teacher", {}).get("ndcg@10")
    if d is not None:
        out["ndcg_vs_teacher"] = f"{_signed(d[0])} ({_signed(d[1])} to {_signed(d[2])})"
    return out


def _load(v) -> str:
    return " / ".join(f"{x:.2f}" for x in v) if v else "–"


def pakd_plots(res: dict, rd) -> list[Path]:
    """Figures of a PAKD sweep into ``rd`` (a `RunDir`)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = res["teacher"]
    paths = []
    for r in [t] + res["members"]:
        r.setdefault("bytes_fp32", 4 * r["params"])
    for xkey, xlabel, fname in (("params", "parameters", "pakd_accuracy_vs_params"),
                                ("bytes_fp32", "bytes (float32 weights)",
                                 "pakd_accuracy_vs_bytes"),
                                ("latency_ms_p50", "top-10 latency p50 (ms)",
                                 "pakd_accuracy_vs_latency")):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, ykey, ylabel in ((axes[0], "ndcg@10", "NDCG@10 (higher is better)"),
                                 (axes[1], "rmse", "RMSE (lower is better)")):
            _accuracy_axis(ax, res, xkey, ykey)
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        paths.append(save_figure(fig, rd.plot(fname)))
    paths.append(_curves_figure(res, rd, plt))
    if any("paired" in r for r in res["rows"]):
        paths.append(forest_plot(res, rd))
    return paths


def _accuracy_axis(ax, res: dict, xkey: str, ykey: str) -> None:
    """One accuracy-against-cost panel: a line per method, the teacher as a star and a
    dashed level, the peers as dotted levels, the members in grays."""
    t = res["teacher"]
    for m in sorted({r["method"] for r in res["rows"]}):
        rs = sorted([r for r in res["rows"] if r["method"] == m and r.get(xkey)],
                    key=lambda r: r[xkey])
        ax.plot([r[xkey] for r in rs], [r[ykey] for r in rs], label=m, **style(m))
    if t.get(xkey):
        ax.scatter([t[xkey]], [t[ykey]], marker="*", s=150, color="black",
                   label="teacher", zorder=5)
    ax.axhline(t[ykey], color="black", lw=0.8, ls="--", alpha=0.6)   # teacher level
    for name, ref in res.get("references", {}).items():              # peers
        if ref.get(ykey) is not None:
            ax.axhline(ref[ykey], color="0.5", lw=0.8, ls=":")
            ax.annotate(name, (1, ref[ykey]), xycoords=("axes fraction", "data"),
                        ha="right", va="bottom", fontsize=6, color="0.35")
    for k, r in enumerate(res["members"]):    # members in grays, apart from methods
        if ykey == "rmse" and "rating" not in r.get("outputs", ["rating"]):
            continue                           # ranking only: no rating to show
        if r.get(xkey):
            ax.scatter([r[xkey]], [r[ykey]], marker="PXhs"[k % 4], s=60,
                       color=("0.15", "0.4", "0.6", "0.3")[k % 4],
                       label=f"member {r['model']}")


def _curves_figure(res: dict, rd, plt) -> Path:
    """Valid NDCG@10 and RMSE per epoch of every student, later budgets fainter."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    budgets = list(dict.fromkeys(c["budget"] for c in res["curves"]))
    for c in res["curves"]:
        h = c["history"]
        lab = f"{c['method']}@{c['budget']}"
        st = style(c["method"], alpha=1.0 - 0.6 * budgets.index(c["budget"])
                   / max(1, len(budgets) - 1))
        axes[0].plot([x["epoch"] for x in h], [x["valid_ndcg@10"] for x in h], label=lab, **st)
        axes[1].plot([x["epoch"] for x in h], [x["valid_rmse"] for x in h], label=lab, **st)
    axes[0].set_ylabel("valid NDCG@10")
    axes[1].set_ylabel("valid RMSE")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return save_figure(fig, rd.plot("pakd_training_curves"))


def forest_plot(res: dict, rd) -> Path:
    """Paired differences (95% intervals over users) of every student from the teacher and
    from fisher_kd at its budget, NDCG@10 and RMSE side by side."""
    import matplotlib.pyplot as plt
    rows = res["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(rows) + 1.5), sharey=True)
    labels = [f"{r['method']}@{r['budget']}" for r in rows]
    y = list(range(len(rows)))[::-1]
    for ax, metric, title in ((axes[0], "ndcg@10", "Δ NDCG@10"), (axes[1], "rmse", "Δ RMSE")):
        labelled = set()
        for ref, off, color in (("teacher", -0.15, "black"), ("fisher_kd", 0.15, "tab:blue")):
            for yi, r in zip(y, rows):
                d = r.get("paired", {}).get(ref, {}).get(metric)
                if d is None:
                    continue
                ax.errorbar([d[0]], [yi + off], xerr=[[d[0] - d[1]], [d[2] - d[0]]], fmt="o",
                            color=color, ms=4, capsize=2,
                            label=None if ref in labelled else f"student minus {ref}")
                labelled.add(ref)
        ax.axvline(0, color="gray", lw=0.8)
        ax.set_title(f"{title} (95% paired interval over users)", fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(y, labels, fontsize=8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, rd.plot("pakd_paired_differences"))


def references(rd) -> dict:
    """Levels the retention plot draws as lines: MostPop and the origin ensemble (from the
    ensemble stage) and the peers of `benchmarks/peers.py` when they ran on this split."""
    from ..results import TeachersReport, load_result
    from ..rundir import read_json
    out = {}
    if rd.teachers_json.is_file():
        t = load_result(rd.teachers_json, TeachersReport)
        out["MostPop"] = {"ndcg@10": t.baselines["mostpop"]["ndcg@10"]}
        if t.origin_ensemble is not None:
            o = t.origin_ensemble
            out["origin ensemble"] = {"ndcg@10": o["ndcg@10"], "rmse": o["rmse"]}
    if rd.peers_json.is_file():
        for n, m in read_json(rd.peers_json)["peers"].items():
            if n != "MostPop":
                out[n] = {k: m[k] for k in ("ndcg@10", "rmse") if m.get(k) is not None}
    return out


__all__ = ["pakd_markdown", "pakd_plots", "compare", "references", "METHOD_STYLE"]
