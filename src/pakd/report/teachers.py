"""Markdown table of the teachers: members, the ensemble and the simple baselines."""
from __future__ import annotations

from .tables import markdown_table

COLS = [("model", "model"), ("rmse", "RMSE"), ("rmse_ci", "RMSE 95% CI"), ("mae", "MAE"),
        ("auc", "AUC"), ("logloss", "LogLoss"), ("recall@10", "Recall@10"),
        ("ndcg@10", "NDCG@10"), ("ndcg_ci", "NDCG@10 95% CI"),
        ("ndcg@10_rel4", "NDCG@10 ≥ 4 stars"), ("params", "params"),
        ("train_seconds", "train s"), ("score_seconds", "catalogue score s")]


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
            f"{_fmt_w(mix['rating_mix'])}{_offset(e.get('rating_offset'))}; ranking output "
            f"mix: {_fmt_w(mix['ranking_mix'])}"
            f" (ranking logits standardised per member). Intervals: 95% bootstrap over "
            f"test users. NDCG@10: the held-out items --relevant-min-rating counts as "
            f"relevant (default: all); NDCG@10 ≥ 4 stars: only those rated 4 or more "
            f"(docs/metrics.md).\n\n"
            + markdown_table(rows, COLS) + "\n" + rerank_markdown(res.get("rerank")))


def rerank_markdown(rr: dict | None) -> str:
    """Each re-ranker of the retrieval stage's top-N, NDCG@10 with its paired difference
    from the retrieval stage alone."""
    if not rr:
        return ""
    ns = list(rr["by_n"])
    lines = ["", f"## Re-ranking {rr['retrieval']}'s top-N unseen items", "",
             f"Retrieval alone: NDCG@10 {rr['retrieval_alone']['ndcg@10']:.4f}. Each cell: "
             "NDCG@10 of the composed system (Δ vs retrieval alone, 95% paired interval "
             f"over test users). `member + {rr['retrieval']}`: the member re-ranks with the "
             "retrieval score as an input, z(retrieval) + w z(member) over each user's "
             "candidates, w chosen on the valid part.", "",
             "| re-ranker | " + " | ".join(f"N = {n}" for n in ns) + " |",
             "|---" * (len(ns) + 1) + "|"]
    for name, cells in rerank_cells(rr).items():
        lines.append(f"| {name} | " + " | ".join(cells[n] for n in ns) + " |")
    return "\n".join(lines) + "\n"


def rerank_cells(rr: dict) -> dict[str, dict[str, str]]:
    """{re-ranker: {N: "NDCG@10 (Δ, interval)[, w]"}} of a run's re-ranking table."""
    out: dict[str, dict[str, str]] = {}
    for n, row in rr["by_n"].items():
        for name, got in row.items():
            d, lo, hi = got["vs_retrieval"]["ndcg@10"]
            w = f", w {got['weight']:g}" if "weight" in got else ""
            out.setdefault(name, {})[n] = (f"{got['ndcg@10']:.4f} ({d:+.4f}, {lo:+.4f} to "
                                           f"{hi:+.4f}{w})")
    return out


def _fmt_w(w: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in w.items())


def _offset(value) -> str:
    """The rating mix's fitted constant, when there is one."""
    return f", offset {value:+.3f}" if value else ""
