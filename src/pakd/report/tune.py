"""`pakd tune`'s reports from its JSON: the Pareto front (table and figure) and --final's
test comparison of the tuned student with the default-settings one."""
from __future__ import annotations

from .tables import fmt

SIZE_LABEL = {"params": "parameters", "bytes": "saved bytes", "latency_ms": "latency (ms, p50)"}


def _cell(v, digits=4) -> str:
    return "-" if v is None else fmt(v, digits)


def _settings(s: dict) -> str:
    short = {k.split(".")[-1]: v for k, v in s.items() if k not in ("distill.student",)}
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in short.items())


def front_markdown(out: dict) -> str:
    """The study, its Pareto front and the chosen trial as Markdown."""
    caps = out["caps"]
    cap = ", ".join(f"{k} {v:g}" for k, v in caps.items()) or "no cap"
    c = out["counts"]
    lines = [f"# pakd tune: study {out['study']}", "",
             f"Storage {out['storage']}; {cap}; objectives on the valid part: "
             f"{', '.join(out['objectives'])}. Teacher valid NDCG@10 "
             f"{_cell(out['teacher_valid'].get('ndcg@10'))}, RMSE "
             f"{_cell(out['teacher_valid'].get('rmse'))}.", "",
             f"Trials: {c['complete']} complete ({c['infeasible']} over a cap), {c['pruned']} "
             f"pruned ({c['not_trained']} not trained: their architecture could not meet the "
             f"cap), {c['failed']} failed.", ""]
    lines += [f"## Pareto front ({len(out['front'])} trial{'s' * (len(out['front']) != 1)}; "
              f"size objective: {SIZE_LABEL[out['objectives'][2]]})", "",
              "| trial | kind | method | params | bytes | latency ms | valid NDCG@10 | valid RMSE "
              "| settings |", "|" + "---|" * 9]
    rows = {r["trial"]: r for r in out["trials"]}
    for n in out["front"]:
        r = rows[n]
        mark = (" (chosen)" if out.get("chosen") and n == out["chosen"]["trial"] else "") + \
            (" (run's settings)" if r["reference"] else "")
        lines.append(f"| {n}{mark} | {r['kind']} | {r['method']} | {_cell(r['params'])} | "
                     f"{_cell(r['bytes'])} | {_cell(r['latency_ms'], 3)} | "
                     f"{_cell(r['valid_ndcg@10'])} | {_cell(r['valid_rmse'])} | "
                     f"{_settings(r['settings'])} |")
    ch = out.get("chosen")
    lines += ["", "## Chosen", "", out["rule"][:1].upper() + out["rule"][1:] + "."]
    if ch:
        lines += ["", f"Trial {ch['trial']}: {ch['kind']} ({ch['method']}), {_cell(ch['params'])} "
                  f"parameters, {_cell(ch['bytes'])} bytes, {_cell(ch['latency_ms'], 3)} ms; valid "
                  f"NDCG@10 {_cell(ch['valid_ndcg@10'])}, RMSE {_cell(ch['valid_rmse'])}. Its "
                  f"settings: `{out['chosen_yaml']}` (`pakd distill --run RUN --config "
                  "<that file>` trains it; `pakd tune --final` trains it and reports it on the "
                  "test part)."]
    return "\n".join(lines) + "\n"


def front_figure(out: dict):
    """Valid NDCG@10 against size, coloured by valid RMSE: every feasible trial, the
    Pareto front (over all three objectives) ringed, the chosen one and the run's own
    settings marked, trials over a cap and the cap drawn in grey and red."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    size = out["objectives"][2]
    done = [r for r in out["trials"] if r["state"] == "complete" and r.get(size) is not None]
    pts = [r for r in done if r["feasible"]]
    over = [r for r in done if not r["feasible"]]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if over:
        ax.scatter([r[size] for r in over], [r["valid_ndcg@10"] for r in over], marker="x",
                   color="0.6", s=24, zorder=1, label="over the cap")
    if pts:
        sc = ax.scatter([r[size] for r in pts], [r["valid_ndcg@10"] for r in pts],
                        c=[r["valid_rmse"] for r in pts], cmap="viridis_r", s=30, zorder=2)
        fig.colorbar(sc, ax=ax, label="valid RMSE")
    rows = {r["trial"]: r for r in out["trials"]}
    front = [rows[n] for n in out["front"]]
    if front:
        ax.scatter([r[size] for r in front], [r["valid_ndcg@10"] for r in front], s=110,
                   facecolors="none", edgecolors="k", lw=1, zorder=3, label="Pareto front")
    ref = [r for r in pts if r["reference"]]
    if ref:
        ax.scatter([ref[0][size]], [ref[0]["valid_ndcg@10"]], marker="s", s=150,
                   facecolors="none", edgecolors="C3", zorder=3, label="run's settings")
    ch = out.get("chosen")
    if ch:
        ax.scatter([ch[size]], [ch["valid_ndcg@10"]], marker="*", s=260, facecolors="none",
                   edgecolors="k", zorder=4, label="chosen")
    cap = {"params": "max_params", "bytes": "max_bytes", "latency_ms": "max_latency_ms"}[size]
    if cap in out["caps"]:
        ax.axvline(out["caps"][cap], color="C3", ls="--", lw=1, label="cap")
    ax.set_xlabel(SIZE_LABEL[size])
    ax.set_ylabel("valid NDCG@10")
    ax.set_title(f"pakd tune: {len(pts)} feasible trials of {len(out['trials'])}")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def final_markdown(fin: dict) -> str:
    """--final: the tuned and the default-settings student on the test part."""
    t, d = fin["tuned"], fin["default"]
    lines = [f"# pakd tune --final: trial {fin['trial']} of study {fin['study']}", "",
             f"The chosen settings retrained once ({fin['chosen_yaml']}) and the run's own "
             f"settings (fisher_kd, {d['kind']}) at the same budget, {fin['budget']:,} "
             "parameters, both on the test part (read here for the first time).", ""]
    if d.get("note"):
        lines += [d["note"], ""]
    lines += ["| student | kind | method | params | bytes | latency ms | test NDCG@10 | test RMSE "
              "| valid NDCG@10 | valid RMSE |", "|" + "---|" * 10]
    for name, r in (("tuned", t), ("default settings", d)):
        lines.append(f"| {name} | {r['kind']} | {r['method']} | {_cell(r['params'])} | "
                     f"{_cell(r['bytes'])} | {_cell(r['latency_ms'], 3)} | "
                     f"{_cell(r['test']['ndcg@10'])} | {_cell(r['test']['rmse'])} | "
                     f"{_cell(r['valid']['ndcg@10'])} | {_cell(r['valid']['rmse'])} |")
    lines += ["", "Tuned minus default on the test part (95% paired bootstrap interval over "
              "test users):", ""]
    for m, v in fin["paired"].items():
        lines.append(f"- {m}: {v['diff']:+.4f} [{v['low']:+.4f}, {v['high']:+.4f}]: tuned "
                     f"{v['verdict']}")
    r = fin["reproduced"]
    lines += ["", f"Reproduced: the trial's valid NDCG@10 {r['trial']:.6f}, retrained "
              f"{r['retrained']:.6f} (difference {r['difference']:.2e}).",
              "", f"Saved: {t['file']} (pakd export / pakd serve take it).", ""]
    return "\n".join(lines)
