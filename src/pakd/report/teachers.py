"""Markdown table of the teachers: members, the ensemble and the simple baselines."""
from __future__ import annotations

from .tables import markdown_table

COLS = [("model", "model"), ("rmse", "RMSE"), ("rmse_ci", "RMSE 95% CI"), ("mae", "MAE"),
        ("auc", "AUC"), ("logloss", "LogLoss"), ("recall@10", "Recall@10"),
        ("ndcg@10", "NDCG@10"), ("ndcg_ci", "NDCG@10 95% CI"), ("params", "params"),
        ("train_seconds", "train s")]


def teachers_markdown(res: dict) -> str:
    e = res["ensemble"]
    rows = [{"model": n, **m} for n, m in res["members"].items()]
    rows.append({"model": "ensemble", **e})
    if "origin_ensemble" in res:
        rows.append({"model": "origin ensemble (0.4/0.4/0.2)", **res["origin_ensemble"]})
    rows += [{"model": n, **m} for n, m in res["baselines"].items()]
    for r in rows:
        ci = r.get("ci95", {})
        r.update(rmse_ci=ci.get("rmse"), ndcg_ci=ci.get("ndcg@10"))
    w = ", ".join(f"{n} {e['tasks'][n]} {e['weights'][n]:g}" for n in e["tasks"])
    mix = {k: e.get(k, e.get(k.replace("_mix", "_weights"), {}))
           for k in ("rating_mix", "ranking_mix")}
    return (f"# Teachers on {res['dataset']}\n\nTest split, {res['threads']} torch threads. "
            f"Ensemble members (task, weight): {w}.\nRating output mix: "
            f"{_fmt_w(mix['rating_mix'])}; ranking output mix: {_fmt_w(mix['ranking_mix'])}"
            f" (ranking logits standardised per member). Intervals: 95% bootstrap over "
            f"test users.\n\n"
            + markdown_table(rows, COLS) + "\n" + rerank_markdown(res.get("rerank")))


def rerank_markdown(rr: dict | None) -> str:
    """Each re-ranker of the retrieval stage's top-N, NDCG@10 with its paired difference
    from the retrieval stage alone."""
    if not rr:
        return ""
    names = list(next(iter(rr["by_n"].values())))
    lines = ["", f"## Re-ranking {rr['retrieval']}'s top-N unseen items", "",
             f"Retrieval alone: NDCG@10 {rr['retrieval_alone']['ndcg@10']:.4f}. Each cell: "
             "NDCG@10 of the composed system (Δ vs retrieval alone, 95% paired interval "
             "over test users).", "",
             "| N | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for n, row in rr["by_n"].items():
        cells = []
        for name in names:
            d, lo, hi = row[name]["vs_retrieval"]["ndcg@10"]
            cells.append(f"{row[name]['ndcg@10']:.4f} ({d:+.4f}, {lo:+.4f} to {hi:+.4f})")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt_w(w: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in w.items())
