"""Markdown summary and plots of a Fisher analysis."""
from __future__ import annotations

from pathlib import Path

from ..fisher.analysis import RESAMPLES as SPEARMAN_RESAMPLES
from ..stats import p_text
from .plots import save_figure
from .tables import fmt, markdown_table


def _rho(c: dict, k: str) -> str:
    if c.get(f"spearman_{k}") is None:
        return "–"
    ci = c.get(f"spearman_{k}_ci95")
    return f"{c[f'spearman_{k}']:.2f}" + (f" ({ci[0]:.2f} to {ci[1]:.2f})" if ci else "")


def fisher_markdown(res: dict, experiment: dict | None = None) -> str:
    lines = [f"# Fisher information analysis — {res['teacher']} on {res['dataset']}", ""]
    if experiment:
        lines += _setting_lines(experiment)
    lines += [f"Objectives: {', '.join(res['focus_tasks'])}; Fisher: {', '.join(res['fisher'])}.",
              f"Criterion: {res['criterion']}.", ""]
    t = _tables(res)
    lines += ["## Per member", "", markdown_table(t["rows"], [
        ("model", "model"), ("params", "params"), ("objective", "objective/Fisher"),
        ("trace", "Fisher trace"), ("per_param", "per parameter"),
        ("friendliness", "pruning friendliness"), ("tested", "units tested"),
        ("lowering", "share lowering valid loss")], digits=4), ""]
    lines += _damage_lines(t)
    lines += [f"- {x}" for x in t["no_path"]] + ([""] if t["no_path"] else [])
    timings = res.get("timings", {})
    if timings:
        trow = [{"model": n, **v} for n, v in timings.items()]
        lines += ["## Cost", "", markdown_table(trow, [
            ("model", "pass"), ("fisher_seconds", "Fisher s"), ("examples", "examples"),
            ("epoch_seconds", "train epoch s"), ("epoch_examples", "epoch examples")]), ""]
    for n, m in res["models"].items():
        lines += _member_lines(n, m)
    return "\n".join(lines) + "\n"


def _setting_lines(experiment: dict) -> list[str]:
    """The split and the settings the analysis ran with."""
    sp = experiment.get("split", {})
    rows = sp.get("rows", {})
    return [f"Split: {sp.get('method')}, seed {experiment.get('seed')}; rows "
            + ", ".join(f"{k} {fmt(v)}" for k, v in rows.items())
            + f"; {experiment['threads']} torch threads.",
            "Settings: " + "; ".join(f"{k} {fmt(v)}" for k, v in
                                     experiment["settings"].items()), ""]


def _tables(res: dict) -> dict[str, list]:
    """The rows of every table, gathered member by member: the summary, the damage
    correlations per part, the comparisons with magnitude, per group kind, and the notes
    on units without a path to the objective."""
    t: dict[str, list] = {"rows": [], "damage": [], "by_kind": [], "no_path": [], "beats": []}
    for n, m in res["models"].items():
        v = m["validation"]
        t["rows"].append({"model": n, "params": m["params"],
                          "objective": f"{m['primary']['objective']}/{m['primary']['fisher']}",
                          "trace": m["sensitivity"]["total"],
                          "per_param": m["sensitivity"]["normalised"],
                          "friendliness": m["pruning_friendliness"],
                          "tested": v["groups_tested"],
                          "lowering": v.get("share_lowering_valid_loss")})
        t["damage"] += _damage_rows(n, v)
        for key, got in (v.get("beats") or {}).items():
            if got:
                d, lo, hi, p = got
                t["beats"].append({"model": n, "which": key.replace("_vs_", " − "),
                                   "d": f"{d:+.2f} ({lo:+.2f} to {hi:+.2f})",
                                   "p": p_text(p, SPEARMAN_RESAMPLES),
                                   "verdict": "better" if lo > 0 else "worse" if hi < 0
                                   else "tie"})
        for kind, c in (v.get("by_kind") or {}).items():
            if c:
                t["by_kind"].append({"model": n, "kind": kind, "units": c.get("units"),
                                     **{k: _rho(c, k) for k in ("true", "taylor", "magnitude")}})
        gone = (v.get("units_without_path") or {}).get(v["objective"])
        if gone:
            t["no_path"].append(f"{n}: {gone} of {v['groups_tested']} units have no path to "
                                f"the {v['objective']} objective (left out of the correlations)")
    return t


def _damage_rows(n: str, v: dict) -> list[dict]:
    """One member's Spearman (interval) and Kendall per criterion, per part measured on."""
    out = []
    for part, block in (("test (out of sample)", v.get("test_part", {})),
                        ("valid (Taylor's own)", {"by_objective": v.get("by_objective", {})}),
                        ("Fisher train sample", v.get("train_sample", {}))):
        c = block.get("by_objective", {}).get(v["objective"], {})
        if not c:
            continue
        row = {"model": n, "part": part}
        for k in ("empirical", "true", "taylor", "magnitude"):
            if f"spearman_{k}" in c:
                ci = c.get(f"spearman_{k}_ci95")
                row[k] = (f"{c[f'spearman_{k}']:.2f}" + (f" ({ci[0]:.2f} to {ci[1]:.2f})"
                                                         if ci else "")
                          + (f", τ {c[f'kendall_{k}']:.2f}" if f"kendall_{k}" in c else ""))
        out.append(row)
    return out


def _damage_lines(t: dict) -> list[str]:
    """Predicted against measured damage: the correlations, the comparisons with
    magnitude, and per group kind."""
    lines = [
        "## Predicted against measured damage", "",
        "One unit removed at a time; Spearman's rho (95% bootstrap interval over units) and "
        "Kendall's tau between each criterion's prediction and the measured loss change. "
        "empirical / true: 1/2 F theta^2 (never negative); taylor: the valid-loss gradient "
        "term plus 1/2 F theta^2 (it can predict that a removal lowers the loss); magnitude: "
        "sum theta^2. The test part is held out from every prediction and gives the "
        "headline figures; the valid part also gives the Taylor gradient, so Taylor's "
        "figure there is in-sample; the Fisher train sample is what the Fisher was "
        "estimated on.", "",
        markdown_table(t["damage"], [("model", "model"), ("part", "measured on"),
                                     ("empirical", "empirical"), ("true", "true"),
                                     ("taylor", "taylor"), ("magnitude", "magnitude")]), ""]
    if t["beats"]:
        lines += ["Does a predictor rank the measured damage better than magnitude? Δρ: its "
                  "Spearman minus magnitude's on the headline part, with a paired 95% "
                  "bootstrap interval over units (the same units resampled for both) and the "
                  "bootstrap p of no difference.", "",
                  markdown_table(t["beats"], [("model", "model"),
                                              ("which", "predictor − baseline"),
                                              ("d", "Δρ (95% interval)"), ("p", "p"),
                                              ("verdict", "verdict")]), ""]
    if t["by_kind"]:
        lines += ["Per group kind (headline part, each member's objective; Spearman with its "
                  "95% bootstrap interval): units of one kind have the same size, so these do "
                  "not measure size.", "",
                  markdown_table(t["by_kind"], [("model", "model"), ("kind", "kind"),
                                                ("units", "units"), ("true", "true Fisher"),
                                                ("taylor", "taylor"), ("magnitude", "magnitude")]),
                  ""]
    return lines


def _member_lines(n: str, m: dict) -> list[str]:
    """One member's most important layers and its pruning plan."""
    p = m["plan"]
    return [f"## {n}", "", "Most important layers:", "", markdown_table(m["layers"][:8], [
        ("name", "layer"), ("params", "params"), ("importance", "importance"),
        ("share", "share"), ("normalised", "normalised")]), "",
        f"Plan for {p['target_ratio']:.0%} fewer parameters: removes "
        f"{p['params_removed']:,} ({p['removed_ratio']:.1%}); predicted loss increase "
        f"{fmt(p['predicted_loss_increase'], 5)}; measured "
        f"{fmt(p['measured_loss_increase'], 5)}.",
        f"RMSE {fmt(p['rmse_before'])} → {fmt(p['rmse_after'])} (predicted "
        f"{fmt(p.get('rmse_predicted'))}); NDCG@10 {fmt(p['ndcg@10_before'])} → "
        f"{fmt(p['ndcg@10_after'])} on {p['ndcg_users']} users.", "",
        markdown_table(p["groups"], [("group", "group"), ("kind", "kind"),
                                     ("units", "units"), ("kept", "kept")]), ""]


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

    from scipy.stats import rankdata
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4), squeeze=False)
    for ax, (name, m) in zip(axes[0], models.items()):
        v = m["validation"]
        obj = v["objective"]
        pts = v["points"]
        meas = rankdata([p.get("measured_test", p["measured"])[obj] for p in pts])
        for key, color, marker in ((f"{obj}/true", "tab:blue", "x"),
                                   (f"{obj}/taylor", "tab:green", "^"),
                                   ("magnitude", "tab:gray", "s")):
            if pts and key in pts[0]["predicted"]:
                pred = rankdata([p["predicted"][key] for p in pts])
                hollow = {"facecolors": "none", "edgecolors": color} if marker != "x" \
                    else {"color": color}
                ax.scatter(pred, meas, s=22, alpha=0.8, marker=marker,
                           label=key.split("/")[-1], **hollow)
        if pts:
            ax.plot([1, len(pts)], [1, len(pts)], color="black", lw=0.6, alpha=0.5)
        ax.set_xlabel("rank of predicted change")
        ax.set_ylabel(f"rank of measured {obj} loss change (test part)")
        ax.set_title(f"{name}: predicted vs measured")
        ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(save_figure(fig, rd.plot("fisher_predicted_vs_measured")))
    return paths
