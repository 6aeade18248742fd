"""The README's Results tables, printed from a run's JSON (so no figure is typed by hand).

    .venv/bin/python benchmarks/readme_tables.py --run runs/default

Reads RUN/teachers.json, RUN/benchmarks/peers.json (if benchmarks/peers.py ran),
RUN/analysis_results/ensemble_fisher_analysis.json, pakd_experiment.json and timings.json.
"""
from __future__ import annotations

import argparse
import sys

from pakd.report import fmt, markdown_table
from pakd.report.summary import stage_seconds
from pakd.rundir import RunDir, read_json


def teachers(rd: RunDir) -> str:
    t = read_json(rd.teachers_json)
    rows = [{"model": f"pakd {n}", **m} for n, m in t["members"].items()]
    rows.append({"model": "pakd ensemble (weights auto)", **t["ensemble"]})
    if "origin_ensemble" in t:
        rows.append({"model": "origin ensemble (0.4/0.4/0.2)", **t["origin_ensemble"]})
    rows.append({"model": "MostPop", **t["baselines"]["mostpop"]})
    if rd.peers_json.is_file():
        rows += [{"model": f"{n} (peer)", **m} for n, m in read_json(rd.peers_json)["peers"].items()
                 if n != "MostPop"]
    for r in rows:
        ci = r.get("ci95", {}).get("ndcg@10")
        r["ndcg_ci"] = f"{ci[0]:.4f}–{ci[1]:.4f}" if ci else "–"
    out = markdown_table(rows, [("model", "model"), ("rmse", "RMSE"), ("mae", "MAE"),
                                ("auc", "AUC"), ("recall@10", "Recall@10"),
                                ("ndcg@10", "NDCG@10"), ("ndcg_ci", "NDCG@10 95% CI"),
                                ("params", "params"), ("train_seconds", "train s", 0)])
    e = t["ensemble"]
    out += ("\nAuto weights: rating " + ", ".join(f"{n} {w:.2f}" for n, w in e["rating_mix"].items())
            + "; ranking " + ", ".join(f"{n} {w:.2f}" for n, w in e["ranking_mix"].items()) + ".\n")
    rr = t.get("rerank")
    if rr:
        from pakd.report.teachers import rerank_cells
        ns = list(rr["by_n"])
        rows = [{"name": name, **cells} for name, cells in rerank_cells(rr).items()]
        out += (f"\nRe-ranking {rr['retrieval']}'s top-N (retrieval alone NDCG@10 "
                f"{rr['retrieval_alone']['ndcg@10']:.4f}; Δ and 95% paired interval vs "
                f"retrieval alone; `member + {rr['retrieval']}`: z(retrieval) + w z(member) "
                "over each user's candidates, w chosen on valid):\n\n"
                + markdown_table(rows, [("name", "re-ranker")] + [(n, f"N = {n}") for n in ns]))
    return out


def fisher(rd: RunDir) -> str:
    f = read_json(rd.fisher_json)
    rows = []
    for n, m in f["models"].items():
        v, t = m["validation"], f["timings"][n]

        def cell(block, k):
            c = block.get("by_objective", {}).get(v["objective"], {})
            if f"spearman_{k}" not in c:
                return "–"
            ci = c.get(f"spearman_{k}_ci95")
            return f"{c[f'spearman_{k}']:.2f}" + (f" ({ci[0]:.2f}–{ci[1]:.2f})" if ci else "")
        valid, test = {"by_objective": v["by_objective"]}, v.get("test_part", {})
        rows.append({"model": n, "pass": f"{t['fisher_seconds']:.1f} / {fmt(t['epoch_seconds'], 1)}",
                     "units": v["groups_tested"],
                     "lower": f"{100 * v['share_lowering_valid_loss']:.0f}%",
                     **{f"{p}_{k}": cell(b, k) for p, b in (("v", valid), ("t", test))
                        for k in ("true", "taylor", "magnitude")},
                     "beats": _beats(v.get("beats", {}).get("taylor_vs_magnitude")),
                     "friendly": m["pruning_friendliness"]})
    return markdown_table(rows, [
        ("model", "member"), ("pass", "Fisher pass s / one epoch s"), ("units", "units"),
        ("lower", "removals lowering valid loss"),
        ("t_true", "test: Fisher"), ("t_taylor", "test: Taylor"),
        ("t_magnitude", "test: magnitude"), ("beats", "test: Taylor − magnitude (95%)"),
        ("v_true", "valid: Fisher"), ("v_taylor", "valid: Taylor (in-sample)"),
        ("v_magnitude", "valid: magnitude"), ("friendly", "friendliness", 2)])


def _beats(d) -> str:
    """Taylor's Spearman minus magnitude's, paired bootstrap interval over units."""
    return "–" if not d else f"{d[0]:+.2f} ({d[1]:+.2f}–{d[2]:+.2f})"


def pakd(rd: RunDir) -> str:
    p = read_json(rd.pakd_json)
    t = p["teacher"]
    rows = [{"method": f"teacher {t['model']}", "ratio": "–",
             "params": fmt(t["params"]) + (f" (origin members {t['origin_params']:,})"
                                           if t.get("origin_params") else ""),
             "rmse": fmt(t["rmse"]), "ndcg": fmt(t["ndcg@10"]), "auc": t["auc"],
             "thr": fmt(t["throughput_rows_per_s"]), "lat": fmt(t["latency_ms_p50"], 1),
             "rss": t.get("peak_rss_mb")}]
    for r in p["rows"]:
        rows.append({
            "method": r["method"], "ratio": f"{r['pruning_ratio']:.2f}",
            "params": f"{r['params']:,} ({r['params_vs_origin_pct']:.1f}%)"
                      if "params_vs_origin_pct" in r else
                      f"{r['params']:,} ({r['params_vs_teacher_pct']:.1f}% of teacher)",
            "rmse": f"{r['rmse']:.4f} ({r['rmse_retention_pct']:.1f}%)",
            "ndcg": f"{r['ndcg@10']:.4f} ({r['ndcg_retention_pct']:.1f}%)", "auc": r["auc"],
            "dt": _paired(r, "teacher"), "dm": _paired(r, "mf_labels"),
            "thr": f"{r['throughput_rows_per_s']:,.0f} ({r['speedup_throughput']:.0f}×, "
                   f"{fmt(r['speedup_throughput_range'], 0)})",
            "lat": f"{r['latency_ms_p50']:.2f} ({r['speedup_latency']:.0f}×, "
                   f"{fmt(r['speedup_latency_range'], 0)})",
            "rss": r.get("peak_rss_mb")})
    return markdown_table(rows, [
        ("method", "method"), ("ratio", "ratio"),
        ("params", "params (% of the three origin members)"),
        ("rmse", "RMSE (retention)"), ("ndcg", "NDCG@10 (retention)"),
        ("dt", "Δ NDCG@10 vs teacher (95% CI)"), ("auc", "AUC"),
        ("thr", "rows/s (×, range)"), ("lat", "top-10 ms p50 (×, range)"),
        ("rss", "peak RSS MB", 0)])


def _paired(r: dict, ref: str) -> str:
    d = r.get("paired", {}).get(ref, {}).get("ndcg@10")
    return f"{d[0]:+.4f} ({d[1]:+.4f} to {d[2]:+.4f})" if d else "–"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True)
    rd = RunDir(ap.parse_args(argv).run)
    print("## Teachers\n\n" + teachers(rd) + "\n")
    if rd.fisher_json.is_file():
        print("## Fisher\n\n" + fisher(rd) + "\n")
    print("## PAKD\n\n" + pakd(rd) + "\n")
    p = read_json(rd.pakd_json)
    print("Best student:", p["best_student"].get("rule"))
    if rd.timings_json.is_file():
        t = read_json(rd.timings_json)
        print("Seconds per stage:", ", ".join(f"{k} {v:.0f}"
                                              for k, v in stage_seconds(t).items()))
        if t.get("peak_rss_mb"):
            print("Peak RSS per stage (MB):", ", ".join(f"{k} {v:,.0f}" for k, v in
                                                       t["peak_rss_mb"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
