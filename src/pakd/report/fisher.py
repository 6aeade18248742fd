"""Markdown summary and plots of a Fisher analysis."""
from __future__ import annotations

from pathlib import Path

from .plots import save_figure
from .tables import fmt, markdown_table


def fisher_markdown(res: dict, experiment: dict | None = None) -> str:
    lines = [f"# Fisher information analysis — {res['teacher']} on {res['dataset']}", ""]
    if experiment:
        sp = experiment.get("split", {})
        rows = sp.get("rows", {})
        lines += [f"Split: {sp.get('method')}, seed {experiment.get('seed')}; rows "
                  + ", ".join(f"{k} {fmt(v)}" for k, v in rows.items())
                  + f"; {experiment['threads']} torch threads.",
                  "Settings: " + "; ".join(f"{k} {fmt(v)}" for k, v in
                                           experiment["settings"].items()), ""]
    lines += [f"Objectives: {', '.join(res['focus_tasks'])}; Fisher: {', '.join(res['fisher'])}.",
              f"Criterion: {res['criterion']}.", ""]
    rows = []
    for n, m in res["models"].items():
        v = m["validation"]
        rows.append({"model": n, "params": m["params"],
                     "objective": f"{m['primary']['objective']}/{m['primary']['fisher']}",
                     "trace": m["sensitivity"]["total"], "per_param": m["sensitivity"]["normalised"],
                     "friendliness": m["pruning_friendliness"],
                     "sp_emp": v["spearman_empirical"], "sp_true": v["spearman_true"],
                     "sp_mag": v["spearman_magnitude"], "tested": v["groups_tested"],
                     "lowering": v.get("share_lowering_valid_loss")})
        tr = v.get("train_sample", {}).get("by_objective", {}).get(v["objective"], {})
        rows[-1].update({"tr_emp": tr.get("spearman_empirical"), "tr_mag": tr.get("spearman_magnitude")})
    lines += ["## Per member", "", markdown_table(rows, [
        ("model", "model"), ("params", "params"), ("objective", "objective/Fisher"),
        ("trace", "Fisher trace"), ("per_param", "per parameter"),
        ("friendliness", "pruning friendliness"), ("sp_emp", "Spearman empirical"),
        ("sp_true", "Spearman true"), ("sp_mag", "Spearman magnitude"),
        ("tested", "units tested"), ("lowering", "share lowering valid loss"),
        ("tr_emp", "train-sample Spearman empirical"), ("tr_mag", "train-sample Spearman magnitude")],
        digits=4), "",
        "Spearman: rank correlation between the predicted and the measured validation-loss "
        "increase when one unit is removed. The train-sample columns measure the increase on "
        "the examples the Fisher was estimated from; a Fisher estimate is never negative, so "
        "units whose removal lowers the valid loss (an overfit model shrinking towards the "
        "mean) are beyond what it can predict.", ""]
    t = res.get("timings", {})
    if t:
        trow = [{"model": n, **v} for n, v in t.items()]
        lines += ["## Cost", "", markdown_table(trow, [
            ("model", "pass"), ("fisher_seconds", "Fisher s"), ("examples", "examples"),
            ("epoch_seconds", "train epoch s"), ("epoch_examples", "epoch examples")]), ""]
    for n, m in res["models"].items():
        lines += [f"## {n}", "", "Most important layers:", "", markdown_table(m["layers"][:8], [
            ("name", "layer"), ("params", "params"), ("importance", "importance"),
            ("share", "share"), ("normalised", "normalised")]), ""]
        p = m["plan"]
        lines += [f"Plan for {p['target_ratio']:.0%} fewer parameters: removes "
                  f"{p['params_removed']:,} ({p['removed_ratio']:.1%}); predicted loss increase "
                  f"{fmt(p['predicted_loss_increase'], 5)}; measured "
                  f"{fmt(p['measured_loss_increase'], 5)}.",
                  f"RMSE {fmt(p['rmse_before'])} → {fmt(p['rmse_after'])} (predicted "
                  f"{fmt(p.get('rmse_predicted'))}); NDCG@10 {fmt(p['ndcg@10_before'])} → "
                  f"{fmt(p['ndcg@10_after'])} on {p['ndcg_users']} users.", "",
                  markdown_table(p["groups"], [("group", "group"), ("kind", "kind"),
                                               ("units", "units"), ("kept", "kept")]), ""]
    return "\n".join(lines) + "\n"


def fisher_plots(res: dict, rd) -> list[Path]:
    """Figures of a Fisher analysis into ``rd`` (a `RunDir`)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    models = res["models"]
    paths = []
    n = len(models)
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4), squeeze=False)
    for ax, (name, m) in zip(axes[0], models.items()):
        ls = m["layers"][:10][::-1]
        ax.barh([x["name"] for x in ls], [x["normalised"] for x in ls], color="tab:blue")
        ax.set_title(f"{name}: layer importance")
        ax.set_xlabel("importance / top layer")
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    paths.append(save_figure(fig, rd.plot("fisher_layer_importance")))

    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4), squeeze=False)
    for ax, (name, m) in zip(axes[0], models.items()):
        data, labels = [], []
        for g in m["groups"]:
            v = np.asarray(g["importance_per_unit"], float)
            data.append(np.log10(np.maximum(v, 1e-18)))
            labels.append(g["name"])
        if data:
            ax.boxplot(data, orientation="horizontal")
            ax.set_yticks(range(1, len(labels) + 1), labels, fontsize=7)
        ax.set_title(f"{name}: unit importance")
        ax.set_xlabel("log10 estimated loss increase")
    fig.tight_layout()
    paths.append(save_figure(fig, rd.plot("fisher_group_importance")))

    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4), squeeze=False)
    for ax, (name, m) in zip(axes[0], models.items()):
        v = m["validation"]
        obj = v["objective"]
        pts = v["points"]
        meas = np.array([p["measured"][obj] for p in pts])
        for key, color, marker in ((f"{obj}/empirical", "tab:orange", "o"),
                                   (f"{obj}/true", "tab:blue", "x"),
                                   ("magnitude", "tab:gray", "s")):
            if pts and key in pts[0]["predicted"]:
                pred = np.array([p["predicted"][key] for p in pts])
                scale = np.median(meas[meas > 0]) / max(np.median(pred[pred > 0]), 1e-30) \
                    if (meas > 0).any() and (pred > 0).any() else 1.0
                hollow = {"facecolors": "none", "edgecolors": color} if marker != "x" \
                    else {"color": color}
                ax.scatter(np.maximum(pred * scale, 1e-12), np.maximum(meas, 1e-12), s=22,
                           alpha=0.8, marker=marker, label=key.split("/")[-1], **hollow)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("predicted (scaled to measured median)")
        ax.set_ylabel(f"measured {obj} loss increase")
        ax.set_title(f"{name}: predicted vs measured")
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(save_figure(fig, rd.plot("fisher_predicted_vs_measured")))
    return paths
