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
            + markdown_table(rows, COLS) + "\n")


def _fmt_w(w: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in w.items())
