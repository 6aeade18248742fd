"""One self-contained HTML page per run (RUN/report.html), read from the run's JSON files.

Everything is inline - figures are matplotlib SVG, styles a <style> block, no script - so the
page opens offline, from a mail attachment or an artefact store, exactly as written. A run
that has not finished gets the sections of its finished stages and names the missing ones;
a multi-seed directory (``RUN/seeds.json``) gets the pooled figures and links to each seed's
own page.
"""
from __future__ import annotations

import html
import io
import warnings
from pathlib import Path

from ..results import (FisherAnalysis, PakdExperiment, RunTimings, TeachersReport,
                       load_result)
from ..rundir import RunDir, read_json
from .plots import style
from .tables import fmt

# (id, title): the page's sections, in order; every one is always present
SECTIONS = [("status", "Run"), ("settings", "Settings"), ("environment", "Environment"),
            ("teachers", "Teachers against peers"), ("students", "Students: retention against size"),
            ("speed", "Speed"), ("fisher", "Fisher analysis per layer and group"),
            ("damage", "Predicted against measured damage"), ("seeds", "Seeds pooled"),
            ("tune", "Tuning: the Pareto front")]

def stage_files(rd: RunDir) -> dict[str, Path]:
    """Stage -> the file (teachers: the folder) whose presence marks it finished."""
    return {"split": rd.split_json, "teachers": rd.teachers, "ensemble": rd.teachers_json,
            "fisher": rd.fisher_json, "distill": rd.pakd_json}


def finished_stages(rd: RunDir) -> dict[str, bool]:
    """Which stages left their artefacts (teachers: at least one member's weights)."""
    out = {}
    for name, path in stage_files(rd).items():
        out[name] = (any(path.glob("*.safetensors")) if name == "teachers" and path.is_dir()
                     else path.is_file())
    return out


CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1f24}
header{background:#263238;color:#fff;padding:14px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#cfd8dc}nav{padding:8px 28px;background:#eceff1;position:sticky;
top:0;z-index:1}nav a{margin-right:14px;color:#37474f;text-decoration:none;font-size:14px}
main{padding:0 28px 40px;max-width:1280px}section{border-bottom:1px solid #e0e0e0;padding:8px 0 18px}
h2{font-size:19px;margin:18px 0 8px}h3{font-size:16px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 10px}td,th{border:1px solid #cfd8dc;
padding:3px 7px;text-align:right;white-space:nowrap}th{background:#f5f7f8}td:first-child,
th:first-child{text-align:left}.scroll{overflow-x:auto}svg{max-width:100%;height:auto}
.missing{color:#8d2a00;background:#fff3e0;padding:6px 10px;border-left:4px solid #ef6c00}
.note{color:#546e7a;font-size:13px}pre{background:#f5f7f8;padding:8px;font-size:12px;
max-height:420px;overflow:auto}.ok{color:#1b5e20}.no{color:#8d2a00}
table.kv td,table.kv th{text-align:left;white-space:normal}
"""


def _e(x) -> str:
    return html.escape(str(x))


def _table(rows: list[dict], cols: list[tuple], cls: str = "") -> str:
    """An HTML table; cols: (key, header) or (key, header, digits); cells through `fmt`;
    ``cls`` "kv": a name/value table, its values left-aligned and wrapped."""
    head = "".join(f"<th>{_e(c[1])}</th>" for c in cols)
    body = "".join("<tr>" + "".join(
        f"<td>{_e(fmt(r.get(c[0]), c[2] if len(c) > 2 else 4))}</td>" for c in cols) + "</tr>"
        for r in rows)
    attr = f' class="{cls}"' if cls else ""
    return f'<div class="scroll"><table{attr}><tr>{head}</tr>{body}</table></div>'


def _missing(stage: str, rd: RunDir) -> str:
    return (f'<p class="missing">Not finished: the {stage} stage has not written its results '
            f"yet (<code>pakd {_STAGE_COMMAND.get(stage, stage)} --run {_e(rd.root)}</code>, or "
            f"<code>pakd run --run {_e(rd.root)} --resume</code>).</p>")


_STAGE_COMMAND = {"split": "data split", "teachers": "train"}


class _Figures:
    """matplotlib figures as inline SVG; each with its own id salt so that the clip paths
    of several figures on one page never share an id."""

    def __init__(self):
        import matplotlib
        matplotlib.use("Agg")
        self.n = 0

    def svg(self, fig) -> str:
        import matplotlib.pyplot as plt
        self.n += 1
        buf = io.StringIO()
        with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"pakd-fig-{self.n}"}):
            fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
        plt.close(fig)
        text = buf.getvalue()
        return f'<figure>{text[text.index("<svg"):]}</figure>'


def _ci(r: dict, m: str):
    ci = (r.get("ci95") or {}).get(m)
    return None if not ci else f"{ci[0]:.4f}–{ci[1]:.4f}"


def _teachers(rd: RunDir, figs: _Figures) -> str:
    import matplotlib.pyplot as plt
    t = load_result(rd.teachers_json, TeachersReport)
    rows = [{**m, "model": n} for n, m in t.members.items()]
    rows.append({**t.ensemble, "model": "ensemble (teacher)"})
    if t.origin_ensemble is not None:
        rows.append({**t.origin_ensemble, "model": "origin ensemble 0.4/0.4/0.2"})
    for name, b in t.baselines.items():
        if b.get("ndcg@10") is not None or b.get("rmse") is not None:
            rows.append({**b, "model": f"{name} (baseline)"})
    if rd.peers_json.is_file():
        rows += [{**m, "model": f"{n} (peer)"}
                 for n, m in read_json(rd.peers_json).get("peers", {}).items()]
    for r in rows:
        r["ndcg_ci"], r["rmse_ci"] = _ci(r, "ndcg@10"), _ci(r, "rmse")
    out = _table(rows, [("model", "model"), ("rmse", "RMSE"), ("rmse_ci", "RMSE 95% CI"),
                        ("ndcg@10", "NDCG@10"), ("ndcg_ci", "NDCG@10 95% CI"),
                        ("recall@10", "Recall@10"), ("auc", "AUC"), ("params", "params"),
                        ("train_seconds", "train s", 1)])
    # one row per model, shared by both panels (a model without the metric leaves its row
    # empty there), so the labels are written once, on the left
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.42 * len(rows) + 1.2), sharey=True)
    for ax, m, label in ((axes[0], "ndcg@10", "NDCG@10 (higher is better)"),
                         (axes[1], "rmse", "RMSE (lower is better)")):
        for y, r in enumerate(rows[::-1]):
            if r.get(m) is None:
                continue
            ci = (r.get("ci95") or {}).get(m)
            teacher = r["model"].startswith("ensemble")
            color = "tab:red" if teacher else ("tab:gray" if "peer" in r["model"] or
                                                "baseline" in r["model"] else "tab:blue")
            if ci:
                ax.errorbar(r[m], y, xerr=[[r[m] - ci[0]], [ci[1] - r[m]]], fmt="o",
                            color=color, capsize=3)
            else:
                ax.plot(r[m], y, "D", color=color, markerfacecolor="none")
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(rows)), [r["model"] for r in rows[::-1]], fontsize=8)
    axes[0].set_ylim(-0.6, len(rows) - 0.4)
    fig.suptitle("Test part; bars: 95% bootstrap intervals over test users (peers: points)",
                 fontsize=9)
    out += figs.svg(fig)
    e = t["ensemble"]
    if e.get("ranking_mix"):
        out += ('<p class="note">Ensemble weights (fitted on the valid part): rating '
                + _e(", ".join(f"{k} {v:.2f}" for k, v in e.get("rating_mix", {}).items()))
                + (f", offset {e['rating_offset']:+.2f}" if e.get("rating_offset") else "")
                + "; ranking " + _e(", ".join(f"{k} {v:.2f}" for k, v in e["ranking_mix"].items()))
                + ".</p>")
    return out


def _students(p: PakdExperiment, figs: _Figures) -> str:
    import matplotlib.pyplot as plt
    rows = p["rows"]
    for r in rows:
        d = (r.get("paired") or {}).get("teacher", {}).get("ndcg@10")
        r["dt"] = None if not d else f"{d[0]:+.4f} ({d[1]:+.4f} to {d[2]:+.4f})"
        r["ratio"] = r["budget"]
    size_col = ("params_vs_origin_pct", "% of origin members", 1) \
        if rows and "params_vs_origin_pct" in rows[0] else ("params_vs_teacher_pct", "% of teacher", 2)
    out = _table(rows, [("method", "method"), ("ratio", "budget"), ("params", "params"), size_col,
                        ("bytes_fp32", "bytes fp32"), ("bytes_int8", "bytes int8"),
                        ("rmse", "RMSE"),
                        ("rmse_retention_pct", "RMSE retention %", 1), ("ndcg@10", "NDCG@10"),
                        ("ndcg_retention_pct", "NDCG@10 retention %", 1),
                        ("dt", "Δ NDCG@10 vs teacher (95% CI)")])
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharey="row")
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for row, (key, label) in enumerate((("ndcg_retention_pct", "NDCG@10 % of teacher"),
                                        ("rmse_retention_pct", "RMSE retention % (teacher/student)"))):
        for col, (x, xlabel) in enumerate((("params", "parameters"), ("bytes_fp32", "bytes (float32 weights)"))):
            ax = axes[row][col]
            for m in methods:
                pts = sorted((r[x], r[key]) for r in rows if r["method"] == m
                             and r.get(x) and r.get(key) is not None)
                if pts:
                    st = style(m)
                    ax.plot(*zip(*pts), label=m, **st)
            ax.axhline(100, color="black", lw=0.6, alpha=0.5)
            xs = [r[x] for r in rows if r.get(x)]
            if xs and max(xs) > 5 * min(xs):
                ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    axes[0][1].legend(fontsize=7, ncol=2)
    fig.suptitle(f"Students against the teacher ({p['teacher']['model']}), test part", fontsize=10)
    fig.tight_layout()
    out += figs.svg(fig)
    b = p.get("best_student") or {}
    if b.get("rule"):
        out += f'<p class="note">Best student (chosen on the valid part): {_e(b["rule"])}.</p>'
    return out


def _speed(p: PakdExperiment, figs: _Figures) -> str:
    import matplotlib.pyplot as plt
    t = p["teacher"]
    rows = [{**t, "model": f"teacher {t['model']}"}] + [
        {**m, "model": f"member {m.get('model', m.get('method'))}"} for m in p.get("members", [])] + [
        {**r, "model": f"{r['method']} {r['budget']}"} for r in p["rows"]]
    out = _table(rows, [("model", "model"), ("params", "params"),
                        ("throughput_rows_per_s", "rows/s"), ("speedup_throughput", "× rows/s", 1),
                        ("speedup_throughput_range", "range", 1),
                        ("latency_ms_p50", "top-10 ms p50", 3), ("latency_ms_p99", "p99", 3),
                        ("speedup_latency", "× latency", 1), ("peak_rss_mb", "peak RSS MB", 0)])
    sp = [r for r in rows if r.get("speedup_throughput")]
    if sp:
        fig, ax = plt.subplots(figsize=(9, 0.3 * len(sp) + 1.2))
        for y, r in enumerate(sp[::-1]):
            lo, hi = r.get("speedup_throughput_range") or (r["speedup_throughput"],) * 2
            ax.errorbar(r["speedup_throughput"], y, xerr=[[r["speedup_throughput"] - lo],
                                                          [hi - r["speedup_throughput"]]],
                        fmt="o", color=style(r.get("method", "")).get("color", "tab:gray"),
                        capsize=3)
        ax.set_yticks(range(len(sp)), [r["model"] for r in sp[::-1]], fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("throughput against the teacher (×; median and range over rounds)")
        ax.grid(axis="x", alpha=0.3)
        out += figs.svg(fig)
    b = p.get("bench") or {}
    out += (f'<p class="note">Measured interleaved in one process, {_e(b.get("rounds"))} rounds; '
            f'{_e(p.get("threads"))} torch threads; throughput at batch '
            f'{_e(t.get("bench_batch"))}; latency: one user\'s full-catalogue top-10.</p>')
    return out


def _fisher(f: FisherAnalysis, figs: _Figures) -> str:
    import matplotlib.pyplot as plt
    import numpy as np
    rows = []
    for n, m in f["models"].items():
        v = m["validation"]
        rows.append({"member": n, "params": m["params"], "trace": m["sensitivity"]["total"],
                     "friendly": m["pruning_friendliness"], "units": v["groups_tested"],
                     "seconds": (f.get("timings", {}).get(n) or {}).get("fisher_seconds")})
    out = _table(rows, [("member", "member"), ("params", "params"), ("trace", "Fisher trace"),
                        ("friendly", "pruning friendliness", 2), ("units", "units checked"),
                        ("seconds", "Fisher pass s", 1)])
    for n, m in f["models"].items():
        cols = [(o, k) for o, block in m.get("by_objective", {}).items() for k in block]
        layers = [x["name"] for x in m["layers"]]
        grid = np.full((len(layers), len(cols)), np.nan)
        for j, (o, k) in enumerate(cols):
            imp = {x["name"]: x["importance"] for x in m["by_objective"][o][k]["layers"]}
            for i, name in enumerate(layers):
                if imp.get(name, 0) > 0:
                    grid[i, j] = np.log10(imp[name])
        groups = m.get("groups", [])
        width = max((len(g["importance_per_unit"]) for g in groups), default=1)
        gg = np.full((max(len(groups), 1), width), np.nan)
        for i, g in enumerate(groups):
            v = np.sort(np.asarray(g["importance_per_unit"], float))[::-1]
            gg[i, :len(v)] = np.log10(np.maximum(v, 1e-18))
        fig, axes = plt.subplots(1, 2, figsize=(12, 0.28 * max(len(layers), len(groups)) + 2),
                                 gridspec_kw={"width_ratios": [1, 2]})
        if cols:
            im = axes[0].imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
            axes[0].set_xticks(range(len(cols)), [f"{o} {k}" for o, k in cols], fontsize=7,
                               rotation=45, ha="right", rotation_mode="anchor")
            fig.colorbar(im, ax=axes[0], label="log10 importance")
        axes[0].set_yticks(range(len(layers)), layers, fontsize=7)
        axes[0].set_title(f"{n}: layers × objective/Fisher", fontsize=9)
        im = axes[1].imshow(gg, aspect="auto", cmap="magma", interpolation="nearest")
        axes[1].set_yticks(range(len(groups)), [f"{g['name']} ({g['kind']}, {g['units']})"
                                                for g in groups], fontsize=7)
        axes[1].set_xlabel("units of the group, most important first")
        axes[1].set_title(f"{n}: unit importance per structural group "
                          f"({m['primary']['objective']}/{m['primary']['fisher']})", fontsize=9)
        fig.colorbar(im, ax=axes[1], label="log10 estimated loss increase")
        fig.tight_layout()
        out += f"<h3>{_e(n)}</h3>" + figs.svg(fig)
    return out


def _damage(f: FisherAnalysis | None, p: PakdExperiment | None, figs: _Figures) -> str:
    import matplotlib.pyplot as plt
    from scipy.stats import rankdata
    panels = []
    if f:
        for n, m in f["models"].items():
            v = m["validation"]
            obj = v["objective"]
            pts = [q for q in v.get("points", []) if obj in q.get("measured", {})]
            series = [(lab, [q["predicted"].get(key) for q in pts])
                      for key, lab in ((f"{obj}/true", "true Fisher"),
                                       (f"{obj}/taylor", "Taylor"), ("magnitude", "magnitude"))
                      if pts and key in pts[0]["predicted"]]
            panels.append((f"teacher member {n} ({obj} objective)",
                           [q["measured"][obj] for q in pts], series))
    c = (p or {}).get("criterion_check") or {}
    if c.get("points"):
        pts = c["points"]
        series = [(lab, [q["predicted"].get(key) for q in pts])
                  for key, lab in (("fisher", "mask Fisher (balanced)"), ("fisher_raw", "raw ½F"),
                                   ("magnitude", "magnitude")) if key in pts[0]["predicted"]]
        panels.append((f"student {c.get('model', '')} (its own objective)",
                       [q["measured"]["valid"] for q in pts], series))
    if not panels:
        return ""
    rows, out = [], ""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    from scipy.stats import spearmanr
    for ax, (title, measured, series) in zip(axes[0], panels):
        mr = rankdata(measured)
        row = {"model": title, "units": len(measured)}
        for (lab, pred), (color, marker) in zip(series, (("tab:blue", "o"), ("tab:green", "^"),
                                                         ("tab:gray", "s"))):
            ax.scatter(rankdata(pred), mr, s=20, marker=marker, facecolors="none",
                       edgecolors=color, label=lab)
            with warnings.catch_warnings():     # a constant prediction has no rank order
                warnings.simplefilter("ignore")
                rho = float(spearmanr(pred, measured)[0]) if len(pred) > 2 else None
            row[lab] = None if rho is None or rho != rho else rho
        ax.plot([1, len(mr)], [1, len(mr)], color="black", lw=0.6, alpha=0.5)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("rank of predicted damage")
        ax.set_ylabel("rank of measured valid loss change")
        ax.legend(fontsize=7)
        rows.append(row)
    fig.tight_layout()
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in ("model", "units")))
    out += _table(rows, [("model", "model"), ("units", "units")] + [(k, f"Spearman: {k}", 2)
                                                                    for k in keys])
    out += figs.svg(fig)
    out += ('<p class="note">One unit removed at a time, valid part; Spearman over every unit '
            "checked (the Markdown reports give intervals and leave out units with no path to "
            "the objective).</p>")
    return out


def _seeds(s: dict, root: Path, figs: _Figures) -> str:
    import matplotlib.pyplot as plt

    def ms(e, m):
        return f"{e['mean'][m]:.4f} ± {e['sd'][m]:.4f}" if m in e.get("mean", {}) else None

    def diff(v):
        return None if not v else f"{v[0]:+.4f} ({v[1]:+.4f} to {v[2]:+.4f})"
    rows = []
    for e in s["rows"]:
        rows.append({"method": e["method"] if e["method"] != "member" else f"member {e['model']}",
                     "ratio": "–" if e["budget"] is None else e["budget"],
                     "params": e["params"], "rmse": ms(e, "rmse"), "ndcg": ms(e, "ndcg@10"),
                     "nt": 100 * e["of_teacher"]["ndcg@10"] if e["of_teacher"].get("ndcg@10") else None,
                     "rt": 100 * e["of_teacher"]["rmse"] if e["of_teacher"].get("rmse") else None,
                     "dt": diff(e.get("pooled", {}).get("teacher", {}).get("ndcg@10")),
                     "vn": (e.get("fisher_kd_is") or {}).get("ndcg@10"),
                     "vr": (e.get("fisher_kd_is") or {}).get("rmse")})
    out = (f'<p>{len(s["seeds"])} seeds ({_e(", ".join(map(str, s["seeds"])))}), each a whole run; '
           f"mean ± sd over seeds; Δ: pooled paired difference with a two-stage bootstrap "
           f"interval; fisher_kd better/worse only where Holm's correction over "
           f"{_e(s.get('family', ''))} keeps it.</p>")
    out += _table(rows, [("method", "method"), ("ratio", "budget"), ("params", "params", 0),
                         ("rmse", "RMSE"), ("ndcg", "NDCG@10"), ("nt", "NDCG@10 % of teacher", 1),
                         ("rt", "RMSE % of teacher", 1), ("dt", "Δ NDCG@10 vs teacher"),
                         ("vn", "fisher_kd on NDCG@10"), ("vr", "fisher_kd on RMSE")])
    students = [e for e in s["rows"] if e["budget"] is not None and e["per_seed"]]
    if students:
        fig, ax = plt.subplots(figsize=(9, 4))
        for m in dict.fromkeys(e["method"] for e in students):
            for e in (e for e in students if e["method"] == m):
                xs = [e["per_seed"][k]["params"] for k in e["per_seed"]]
                ys = [e["per_seed"][k]["ndcg@10"] for k in e["per_seed"]]
                ax.plot(xs, ys, linestyle="none", **{k: v for k, v in style(m, 0.8).items()
                                                     if k != "linestyle"})
            ax.plot([], [], label=m, linestyle="none", **{k: v for k, v in style(m).items()
                                                          if k != "linestyle"})
        teacher = next((e for e in s["rows"] if e["method"] == "teacher"), None)
        if teacher:
            ax.axhline(teacher["mean"]["ndcg@10"], color="black", lw=0.6, label="teacher (mean)")
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel("test NDCG@10 (one point per seed)")
        ax.legend(fontsize=7, ncol=2)
        ax.grid(alpha=0.3)
        out += figs.svg(fig)
    if s.get("fisher"):
        frows = [{"member": n, "units": f"{f['units_with_path']} / {f['units']}",
                  **{k: f"{f[k]['mean']:.2f} ± {f[k]['sd']:.2f}" if "mean" in f[k] else None
                     for k in ("true", "taylor", "magnitude")}} for n, f in s["fisher"].items()]
        out += "<h3>Damage predictors over seeds (valid part, Spearman)</h3>" + _table(
            frows, [("member", "member"), ("units", "units with a path / tested"),
                    ("true", "true Fisher"), ("taylor", "Taylor"), ("magnitude", "magnitude")])
    links = [f'<a href="seed-{x}/report.html">seed {x}</a>' for x in s["seeds"]
             if (root / f"seed-{x}" / "report.html").is_file()]
    if links:
        out += "<p>Each seed's own page: " + ", ".join(links) + ".</p>"
    return out


def _tune(rd: RunDir, figs: _Figures) -> str:
    """`pakd tune`'s study: the Pareto front on the valid part, the chosen trial, and
    --final's test comparison when it ran."""
    if not rd.tune_front_json.is_file():
        return (f'<p class="note">No tuning study: <code>pakd tune --run {_e(rd.root)} '
                "--max-params N</code> searches student settings under a size or latency cap "
                "on the valid part.</p>")
    from .tune import front_figure
    t = read_json(rd.tune_front_json)
    c = t["counts"]
    out = (f"<p>Study {_e(t['study'])} ({_e(t['storage'])}), caps "
           f"{_e(', '.join(f'{k} {v:g}' for k, v in t['caps'].items()) or 'none')}: "
           f"{c['complete']} complete trials ({c['infeasible']} over a cap), {c['pruned']} "
           f"pruned, {c['failed']} failed. Valid part only.</p>")
    rows = {r["trial"]: r for r in t["trials"]}
    front = [rows[n] for n in t["front"]]
    out += _table(front, [("trial", "trial"), ("kind", "kind"), ("method", "method"),
                          ("params", "params"), ("bytes", "bytes"), ("latency_ms", "latency ms", 3),
                          ("valid_ndcg@10", "valid NDCG@10"), ("valid_rmse", "valid RMSE")])
    out += figs.svg(front_figure(t))
    out += f'<p class="note">Chosen: {_e(t["rule"])}.</p>'
    if rd.tune_final_json.is_file():
        f = read_json(rd.tune_final_json)
        rows = [{"student": name, **{k: v for k, v in f[key].items() if k != "test"},
                 "ndcg": f[key]["test"]["ndcg@10"], "rmse": f[key]["test"]["rmse"]}
                for name, key in (("tuned", "tuned"), ("default settings", "default"))]
        out += "<h3>--final: on the test part</h3>" + _table(
            rows, [("student", "student"), ("kind", "kind"), ("method", "method"),
                   ("params", "params"), ("ndcg", "test NDCG@10"), ("rmse", "test RMSE")])
        out += "<p>" + "; ".join(
            f"{_e(m)} tuned − default {v['diff']:+.4f} ({v['low']:+.4f} to {v['high']:+.4f}): "
            f"{_e(v['verdict'])}" for m, v in f["paired"].items()) + ".</p>"
    return out


def _settings(rd: RunDir) -> str:
    if not rd.config.is_file():
        return '<p class="missing">No run.yaml: this directory has no settings of its own.</p>'
    return ("<details open><summary>RUN/run.yaml: every setting, resolved</summary><pre>"
            + _e(rd.config.read_text()) + "</pre></details>")


def _environment(rd: RunDir) -> str:
    if not rd.timings_json.is_file():
        return ('<p class="missing">No timings.json yet: the run has not reached its report '
                "stage, so its environment and stage times are not recorded.</p>")
    import json
    from .summary import environment_line
    t = load_result(rd.timings_json, RunTimings)
    env = t.environment or {}
    # the plain values one per row, the CPU, kernels and lock in a few words; the whole
    # record (every package, CPU flag and thread pool) folded below, as timings.json has it
    rows = [{"k": k, "v": v} for k, v in env.items()
            if v is not None and not isinstance(v, (dict, list))]
    cpu, build = env.get("cpu") or {}, env.get("torch_build") or {}
    if cpu.get("model"):
        rows.append({"k": "cpu", "v": f"{cpu['model']}, {cpu.get('cores', '?')} cores, "
                                      f"{build.get('cpu_capability', '?')} kernels, BLAS "
                                      f"{build.get('blas_info', '?')}"})
    if env.get("lock"):
        rows.append({"k": "lock", "v": environment_line({"lock": env["lock"]})})
    if env.get("packages"):
        rows.append({"k": "packages", "v": f"{len(env['packages'])} installed (below)"})
    out = _table(rows, [("k", "package / setting"), ("v", "value")], cls="kv")
    if env:
        out += ("<details><summary>The whole record (RUN/timings.json: environment)</summary>"
                "<pre>" + _e(json.dumps(env, indent=1, default=str)) + "</pre></details>")
    secs = t.stage_seconds()
    rss = t.peak_rss_mb
    out += _table([{"stage": k, "s": v, "rss": rss.get(k)} for k, v in secs.items()],
                  [("stage", "stage"), ("s", "seconds", 1), ("rss", "peak RSS MB", 0)])
    return out


def render(root: str | Path) -> str:
    """The page of a run directory (or of a multi-seed directory) as one HTML string."""
    rd = RunDir(root)
    figs = _Figures()
    seeds_file = rd.root / "seeds.json"
    done = finished_stages(rd)
    teachers = load_result(rd.teachers_json, TeachersReport) if done["ensemble"] else None
    if seeds_file.is_file() and not RunDir.is_run(rd.root):
        body = _pooled_body(rd, read_json(seeds_file), figs)
    else:
        body = _run_body(rd, done, teachers, figs)
    pakd = load_result(rd.pakd_json, PakdExperiment) if done["distill"] else None
    title = f"pakd run — {rd.root.name}"
    nav = "".join(f'<a href="#{k}">{_e(t)}</a>' for k, t in SECTIONS)
    sections = "".join(f'<section id="{k}"><h2>{_e(t)}</h2>{body[k]}</section>'
                       for k, t in SECTIONS)
    dataset = (teachers or pakd).dataset if (teachers or pakd) else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{_e(title)}</h1><p>{_e(rd.root)}{' — ' + _e(dataset) if dataset else ''}"
            "; test part unless said otherwise</p></header>"
            f"<nav>{nav}</nav><main>{sections}</main></body></html>\n")


def _pooled_body(rd: RunDir, s: dict, figs) -> dict[str, str]:
    """The sections of a multi-seed directory's page: the pooled table, each seed's page
    linked for the rest."""
    seed_links = ", ".join(f'<a href="seed-{x}/report.html">seed-{x}</a>' for x in s["seeds"])
    body = {"status": (f"<p>A directory of {len(s['seeds'])} runs, one per seed; this page "
                       f"pools them. Each seed's own page: {seed_links}.</p>")}
    per_seed = '<p class="note">Per seed: see each seed\'s page (linked above).</p>'
    for k in ("settings", "environment", "teachers", "students", "speed", "fisher", "damage",
              "tune"):
        body[k] = per_seed
    first = RunDir(rd.root / f"seed-{s['seeds'][0]}")
    body["settings"] = per_seed + _settings(first)
    body["environment"] = per_seed + _environment(first)
    body["seeds"] = _seeds(s, rd.root, figs)
    return body


def _run_body(rd: RunDir, done: dict, teachers: TeachersReport | None, figs) -> dict[str, str]:
    """The sections of one run's page; a stage not finished says so in its section."""
    fisher = load_result(rd.fisher_json, FisherAnalysis) if done["fisher"] else None
    pakd = load_result(rd.pakd_json, PakdExperiment) if done["distill"] else None
    seeds_file = rd.root / "seeds.json"
    body = {"status": _status(rd, done, pakd), "settings": _settings(rd),
            "environment": _environment(rd)}
    body["teachers"] = _teachers(rd, figs) if teachers else _missing("ensemble", rd)
    body["students"] = _students(pakd, figs) if pakd else _missing("distill", rd)
    body["speed"] = _speed(pakd, figs) if pakd else _missing("distill", rd)
    body["fisher"] = _fisher(fisher, figs) if fisher else _missing("fisher", rd)
    body["damage"] = (_damage(fisher, pakd, figs) or _missing("fisher", rd)) \
        if (fisher or pakd) else _missing("fisher", rd)
    body["tune"] = _tune(rd, figs)
    body["seeds"] = (_seeds(read_json(seeds_file), rd.root, figs) if seeds_file.is_file()
                     else '<p class="note">One seed: <code>pakd run --seeds 0,1,2</code> '
                          "runs several and pools them here.</p>")
    return body


def _status(rd: RunDir, done: dict, pakd: PakdExperiment | None) -> str:
    """Which stages finished, the dataset and split, and the best student in one line."""
    missing = [k for k, v in done.items() if not v]
    status = _table([{"stage": k, "state": "finished" if v else "missing"}
                     for k, v in done.items()], [("stage", "stage"), ("state", "state")])
    if missing:
        status = (f'<p class="missing">This run is not finished: missing stage'
                  f'{"s" if len(missing) > 1 else ""} {_e(", ".join(missing))}. The '
                  "sections of the finished stages are shown.</p>" + status)
    split = rd.split_summary()
    if split:
        rows = split.get("rows", {})
        status = (f"<p>Dataset {_e(split.get('dataset'))}: {fmt(split.get('users'))} users, "
                  f"{fmt(split.get('items'))} items; split {_e(split.get('method'))}, seed "
                  f"{_e(split.get('seed'))}; rows " + _e(", ".join(
                      f"{k} {fmt(v)}" for k, v in rows.items())) + ".</p>" + status)
    if pakd and pakd.best_student.get("method"):
        b = pakd.best_student
        status += (f"<p><b>Best student</b>: {_e(b['method'])} at budget "
                   f"{b['budget']}, {fmt(b.get('params'))} parameters, NDCG@10 "
                   f"{fmt(b.get('ndcg_retention_pct'), 1)}% and RMSE "
                   f"{fmt(b.get('rmse_retention_pct'), 1)}% (retention) of the teacher's, "
                   f"{fmt(b.get('speedup_throughput'), 0)}× its throughput.</p>")
    return status


def write_html(root: str | Path) -> Path:
    """Render and atomically write ROOT/report.html; returns its path."""
    rd = RunDir(root)
    return rd.write_text(rd.report_html, render(root))
