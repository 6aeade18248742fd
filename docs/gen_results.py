"""Every results table in the README and on the documentation site, generated from kept runs.

No figure in the docs is typed: pages hold markers, and this script fills them from the JSON
and Markdown files of a kept run folder (benchmarks/results/<folder>, flattened: the run's
JSON files side by side) or of a live run directory (RUN/analysis_results/...).

    .venv/bin/python docs/gen_results.py readme                      # README table, in place
    .venv/bin/python docs/gen_results.py readme --run benchmarks/results/<folder>
    .venv/bin/python docs/gen_results.py show KIND FOLDER            # one block, printed

A marker is an HTML comment on a line of its own: ``<!-- gen: KIND FOLDER -->``. The site
build (docs/hooks/generated.py) replaces each marker by its block; in the README the block
sits between ``<!-- gen:start KIND FOLDER -->`` and ``<!-- gen:end -->`` and `readme`
rewrites it (a test checks that the README's table equals a fresh one).
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from pakd.distill.budgets import budget_of  # noqa: E402
from pakd.report import fmt, markdown_table  # noqa: E402
from pakd.results import (FisherAnalysis, PakdExperiment, RunTimings,  # noqa: E402
                          TeachersReport, load_result)
from pakd.rundir import RunDir  # noqa: E402

MARK = re.compile(r"^<!-- gen: (\S+) (\S+) -->$", re.M)
BLOCK = re.compile(r"(<!-- gen:start (\S+) (\S+) -->\n)(.*?)(<!-- gen:end -->)", re.S)


class Kept(RunDir):
    """A run folder as kept in benchmarks/results (its JSON files flattened into one folder)
    or a live run directory: each file is looked up where either layout puts it."""

    def _find(self, name: str, *subdirs: str) -> Path:
        for d in ("",) + subdirs:
            p = self.root / d / name
            if p.is_file():
                return p
        return self.root / (subdirs[0] if subdirs else "") / name

    teachers_json = property(lambda s: s._find("teachers.json"))
    timings_json = property(lambda s: s._find("timings.json"))
    fisher_json = property(lambda s: s._find("ensemble_fisher_analysis.json", "analysis_results"))
    pakd_json = property(lambda s: s._find("pakd_experiment.json", "analysis_results"))
    peers_json = property(lambda s: s._find("peers.json", "benchmarks"))


def _json(p: Path) -> dict:
    """A JSON file that is not a typed run result (seeds.json, peers.json, benchmarks')."""
    return json.loads(Path(p).read_text())


def _folder(folder: str) -> Path:
    p = Path(folder)
    return p if p.is_absolute() else ROOT / p


# ----------------------------------------------------------------------------- headline

PROTOCOLS = {"user_ratio": "a per-user random split",
             "user_temporal": "a per-user time split (each user's newest ratings test)",
             "temporal": "a global time split"}


def _protocol(run_yaml: Path) -> str:
    """The split a kept run used, in words (its run.yaml)."""
    import yaml
    method = (yaml.safe_load(run_yaml.read_text()) or {}).get("split", {}).get("method") \
        if run_yaml.is_file() else None
    return PROTOCOLS.get(method, f"a {method} split" if method else "its split")


def headline(folder: str) -> str:
    """The one table the README shows: the teacher, its strongest members (on NDCG@10 and on
    RMSE), and the fisher_kd student at each budget - NDCG@10, RMSE, size and speed-up. A
    multi-seed folder (seeds.json) gives means over seeds, a single run its own figures."""
    root = _folder(folder)
    if (root / "seeds.json").is_file():
        s = _json(root / "seeds.json")
        seeds = [Kept(root / f"seed-{x}") for x in s["seeds"]]
        exps = [load_result(k.pakd_json, PakdExperiment) for k in seeds]
        rows = {(r["method"], budget_of(r)): r for r in s["rows"]}
        mean = lambda r, m: r["mean"].get(m)  # noqa: E731
        n = len(s["seeds"])
        note = f"mean over {n} seed{'s' if n > 1 else ''} ({', '.join(map(str, s['seeds']))})"
    else:
        k = Kept(root)
        exps = [load_result(k.pakd_json, PakdExperiment)]
        rows = {(r["method"], budget_of(r)): {**r, "mean": r} for r in exps[0].rows}
        rows[("teacher", None)] = {**exps[0].teacher, "mean": exps[0].teacher}
        for m in exps[0].members:
            rows[("member:" + m["model"], None)] = {**m, "mean": m}
        mean = lambda r, m: r["mean"].get(m)  # noqa: E731
        note = "one seed"
    origin = exps[0].teacher.get("origin_params")

    def speed(method: str, ratio) -> float | None:
        vals = []
        for e in exps:
            pool = e.rows if ratio is not None else e.members
            for r in pool:
                name = r["method"] if ratio is not None else "member:" + r["model"]
                if name == method and (ratio is None or budget_of(r) == ratio):
                    vals.append(r.get("speedup_throughput"))
        vals = [v for v in vals if v]
        return statistics.median(vals) if vals else None

    t = rows[("teacher", None)]
    members = [(k, r) for k, r in rows.items() if k[0].startswith("member:")]
    best_ndcg = max(members, key=lambda kr: mean(kr[1], "ndcg@10") or 0, default=None)
    best_rmse = min(members, key=lambda kr: mean(kr[1], "rmse") or 9, default=None)
    out = [{"model": "teacher: ensemble of " + ", ".join(k[0][7:] for k, _ in members),
            "ndcg": mean(t, "ndcg@10"), "rmse": mean(t, "rmse"), "params": t["params"],
            "size": None, "speed": 1.0}]
    for label, kr in (("best member on NDCG@10", best_ndcg), ("best member on RMSE", best_rmse)):
        if kr:
            (name, _), r = kr
            out.append({"model": f"{label}: {name[7:]}", "ndcg": mean(r, "ndcg@10"),
                        "rmse": mean(r, "rmse"), "params": r["params"],
                        "size": 100 * r["params"] / origin if origin else None,
                        "speed": speed(name, None)})
    ratios = sorted({k[1] for k in rows if k[0] == "fisher_kd"},
                    key=lambda b: -rows[("fisher_kd", b)]["params"])
    for ratio in ratios:
        r = rows[("fisher_kd", ratio)]
        what = f"budget {ratio}" if "%" in ratio or float(ratio) >= 1 else f"pruning ratio {ratio}"
        out.append({"model": f"student: fisher_kd, {what}",
                    "ndcg": mean(r, "ndcg@10"), "rmse": mean(r, "rmse"), "params": r["params"],
                    "size": 100 * r["params"] / origin if origin else None,
                    "speed": speed("fisher_kd", ratio)})
    for r in out:
        r["ndcg_pct"] = 100 * r["ndcg"] / out[0]["ndcg"] if r["ndcg"] else None
        r["rmse_pct"] = 100 * r["rmse"] / out[0]["rmse"] if r["rmse"] else None
        r["params"] = int(round(r["params"]))
        r["speed"] = None if r["speed"] is None else f"{r['speed']:.0f}×" if r["speed"] >= 10 \
            else f"{r['speed']:.1f}×"
    table = markdown_table(out, [("model", "model"), ("ndcg", "NDCG@10"),
                                 ("ndcg_pct", "% of teacher", 1), ("rmse", "RMSE"),
                                 ("rmse_pct", "% of teacher", 1), ("params", "parameters"),
                                 ("size", "% of SVD+xDeepFM+AutoInt+", 1),
                                 ("speed", "throughput vs teacher")])
    data = exps[0].dataset
    how = "median over seeds of the" if len(exps) > 1 else "the"
    split = _protocol((seeds[0] if (root / "seeds.json").is_file() else k).root / "run.yaml")
    names = [f"{n.upper() if n == 'ease' else n}'s" for n in ("ease", "knn", "knn_interp")
             if any(k[0] == f"member:{n}" for k, _ in members)]
    square = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)
    held = f" (the teacher also holds {square} items² weights)" if square else ""
    return (table + f"\n\n{data}, test part of {split}, {note}; speed-up: {how} "
            "interleaved throughput ratio at batch 4096 (2 CPU cores). Sizes against the three "
            f"feature members the original report combined{held}.")


# ----------------------------------------------------------------------------- one run

def teachers(folder: str) -> str:
    rd = Kept(_folder(folder))
    t = load_result(rd.teachers_json, TeachersReport)
    rows = [{"model": f"pakd {n}", **m} for n, m in t.members.items()]
    rows.append({"model": "pakd ensemble (weights auto)", **t.ensemble})
    if t.origin_ensemble is not None:
        rows.append({"model": "origin ensemble (0.4/0.4/0.2)", **t.origin_ensemble})
    rows.append({"model": "MostPop", **t.baselines["mostpop"]})
    if rd.peers_json.is_file():
        rows += [{"model": f"{n} (peer)", **m} for n, m in _json(rd.peers_json)["peers"].items()
                 if n != "MostPop"]
    for r in rows:
        ci = r.get("ci95", {}).get("ndcg@10")
        r["ndcg_ci"] = f"{ci[0]:.4f}–{ci[1]:.4f}" if ci else "–"
    out = markdown_table(rows, [("model", "model"), ("rmse", "RMSE"), ("mae", "MAE"),
                                ("auc", "AUC"), ("recall@10", "Recall@10"),
                                ("ndcg@10", "NDCG@10"), ("ndcg_ci", "NDCG@10 95% CI"),
                                ("params", "params"), ("train_seconds", "train s", 0)])
    e = t.ensemble
    out += ("\n\nAuto weights: rating " + ", ".join(f"{n} {w:.2f}" for n, w in e["rating_mix"].items())
            + "; ranking " + ", ".join(f"{n} {w:.2f}" for n, w in e["ranking_mix"].items()) + ".")
    rr = t.rerank
    if rr:
        from pakd.report.teachers import rerank_cells
        ns = list(rr["by_n"])
        rows = [{"name": name, **cells} for name, cells in rerank_cells(rr).items()]
        out += (f"\n\nRe-ranking {rr['retrieval']}'s top-N (retrieval alone NDCG@10 "
                f"{rr['retrieval_alone']['ndcg@10']:.4f}; Δ and 95% paired interval vs "
                f"retrieval alone; `member + {rr['retrieval']}`: z(retrieval) + w z(member) "
                "over each user's candidates, w chosen on valid):\n\n"
                + markdown_table(rows, [("name", "re-ranker")] + [(n, f"N = {n}") for n in ns]))
    return out


def fisher(folder: str) -> str:
    f = load_result(Kept(_folder(folder)).fisher_json, FisherAnalysis)
    rows = []
    for n, m in f.models.items():
        v, t = m["validation"], f.timings[n]

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
                     "friendly": m["pruning_friendliness"]})
    return markdown_table(rows, [
        ("model", "member"), ("pass", "Fisher pass s / one epoch s"), ("units", "units"),
        ("lower", "removals lowering valid loss"),
        ("v_true", "valid: Fisher"), ("v_taylor", "valid: Taylor"),
        ("v_magnitude", "valid: magnitude"), ("t_true", "test: Fisher"),
        ("t_taylor", "test: Taylor"), ("t_magnitude", "test: magnitude"),
        ("friendly", "friendliness", 2)])


def pakd(folder: str) -> str:
    p = load_result(Kept(_folder(folder)).pakd_json, PakdExperiment)
    t = p.teacher
    rows = [{"method": f"teacher {t['model']}", "ratio": "–",
             "params": fmt(t["params"]) + (f" (origin members {t['origin_params']:,})"
                                           if t.get("origin_params") else ""),
             "rmse": fmt(t["rmse"]), "ndcg": fmt(t["ndcg@10"]), "auc": t["auc"],
             "thr": fmt(t["throughput_rows_per_s"]), "lat": fmt(t["latency_ms_p50"], 1),
             "rss": t.get("peak_rss_mb")}]
    for r in p.rows:
        d = r.get("paired", {}).get("teacher", {}).get("ndcg@10")
        rows.append({
            "method": r["method"], "ratio": budget_of(r),
            "params": f"{r['params']:,} ({r['params_vs_origin_pct']:.1f}%)"
                      if "params_vs_origin_pct" in r else
                      f"{r['params']:,} ({r['params_vs_teacher_pct']:.1f}% of teacher)",
            "rmse": f"{r['rmse']:.4f} ({r['rmse_retention_pct']:.1f}%)",
            "ndcg": f"{r['ndcg@10']:.4f} ({r['ndcg_retention_pct']:.1f}%)", "auc": r["auc"],
            "dt": f"{d[0]:+.4f} ({d[1]:+.4f} to {d[2]:+.4f})" if d else "–",
            "thr": f"{r['throughput_rows_per_s']:,.0f} ({r['speedup_throughput']:.0f}×, "
                   f"{fmt(r['speedup_throughput_range'], 0)})",
            "lat": f"{r['latency_ms_p50']:.2f} ({r['speedup_latency']:.0f}×, "
                   f"{fmt(r['speedup_latency_range'], 0)})",
            "rss": r.get("peak_rss_mb")})
    out = markdown_table(rows, [
        ("method", "method"), ("ratio", "ratio"),
        ("params", "params (% of the three origin members)"),
        ("rmse", "RMSE (retention)"), ("ndcg", "NDCG@10 (retention)"),
        ("dt", "Δ NDCG@10 vs teacher (95% CI)"), ("auc", "AUC"),
        ("thr", "rows/s (×, range)"), ("lat", "top-10 ms p50 (×, range)"),
        ("rss", "peak RSS MB", 0)])
    b = p.best_student
    return out + (f"\n\nBest student: {b.get('rule')}." if b.get("rule") else "")


def timings(folder: str) -> str:
    t = load_result(Kept(_folder(folder)).timings_json, RunTimings)
    rss = t.peak_rss_mb
    rows = [{"stage": k, "s": v, "rss": rss.get(k)} for k, v in t.stage_seconds().items()]
    out = markdown_table(rows, [("stage", "stage"), ("s", "seconds", 1), ("rss", "peak RSS MB", 0)])
    env = {k: v for k, v in (t.environment or {}).items() if k not in ("git_commit", "packages")}
    if env:     # the record in a few words, as summary.md gives it (the whole of it: timings.json)
        from pakd.report.summary import environment_line
        out += "\n\nEnvironment: " + environment_line(env) + "."
    return out


def seeds(folder: str) -> str:
    from pakd.report.seeds import seeds_markdown
    text = seeds_markdown(_json(_folder(folder) / "seeds.json"))
    return text.split("\n", 2)[2].strip()          # without its own title


FIGURES = ("rmse", "mae", "auc", "recall@10", "ndcg@10", "params")


def same(pair: str) -> str:
    """Two kept runs' figures side by side (``A,B``): every test figure of the teachers, the
    ensemble, the sweep's teacher and each student both hold (method and budget), counted
    equal or not, with the largest difference. Speed, memory and seconds are left out."""
    a, b = (Kept(_folder(x)) for x in pair.split(","))
    ta, tb = (load_result(k.teachers_json, TeachersReport) for k in (a, b))
    pa, pb = (load_result(k.pakd_json, PakdExperiment) for k in (a, b))
    blocks = {"teachers.json": [(f"member {n}", m, tb.members.get(n)) for n, m in ta.members.items()]
              + [("ensemble", ta.ensemble, tb.ensemble)]}
    rows_b = {(r["method"], budget_of(r)): r for r in pb.rows}
    blocks["pakd_experiment.json"] = [("teacher", pa.teacher, pb.teacher)] + [
        (f"{r['method']} {budget_of(r)}", r, rows_b.get((r["method"], budget_of(r))))
        for r in pa.rows]
    out, only = [], []
    for name, pairs in blocks.items():
        n = equal = 0
        worst = (0.0, "")
        for what, x, y in pairs:
            if y is None:
                only.append(what)
                continue
            for k in FIGURES:
                if x.get(k) is None or y.get(k) is None:
                    continue
                n += 1
                d = abs(float(x[k]) - float(y[k]))
                equal += d == 0
                if d > worst[0]:
                    worst = (d, f"{what} {k}")
        out.append({"file": name, "n": n, "equal": equal,
                    "worst": f"{worst[0]:.2g} ({worst[1]})" if worst[1] else "–"})
    text = markdown_table(out, [("file", "file"), ("n", "test figures in both"),
                                ("equal", "equal to the last bit"),
                                ("worst", "largest difference")])
    return text + (f"\n\nOnly in `{pair.split(',')[0]}`: {', '.join(only)}." if only else "")


def peers(paths: str) -> str:
    """The peers of `benchmarks/peers.py` (one or more peers.json files, ``A,B``), each once:
    test figures, the valid figure its settings were chosen by, the settings, any at an edge."""
    rows: dict[str, dict] = {}
    for path in paths.split(","):
        for name, m in _json(_folder(path))["peers"].items():
            chosen = ("valid RMSE", m["valid_rmse"]) if "valid_rmse" in m else \
                ("valid NDCG@10", m.get("valid_ndcg@10"))
            rows.setdefault(name, {
                "peer": name, **{k: m.get(k) for k in ("rmse", "mae", "recall@10", "ndcg@10")},
                "chosen": f"{chosen[0]} {chosen[1]:.4f}" if chosen[1] is not None else "–",
                "settings": ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}"
                                      for k, v in (m.get("settings") or {}).items()) or "–",
                "edge": ", ".join(m.get("at_edge") or {}) or "–"})
    return markdown_table(list(rows.values()), [
        ("peer", "peer"), ("rmse", "RMSE"), ("mae", "MAE"), ("recall@10", "Recall@10"),
        ("ndcg@10", "NDCG@10"), ("chosen", "chosen by"), ("settings", "settings chosen on valid"),
        ("edge", "at an edge")])


# ----------------------------------------------------------------------------- benchmarks

def include(path: str) -> str:
    """A Markdown file a benchmark wrote, as it is (minus a leading title)."""
    text = _folder(path).read_text().strip()
    return re.sub(r"\A# .*\n+", "", text)


def text(path: str) -> str:
    """A plain-text file a benchmark wrote, fenced."""
    return "```text\n" + _folder(path).read_text().rstrip() + "\n```"


def scale(path: str) -> str:
    j = _json(_folder(path))
    names = {"load": f"load ({j.get('csv_mb', 0):.0f} MB CSV)", "split": "split (user_ratio)",
             "encode": "encode", "epoch": "one student epoch (sampled softmax)",
             "eval": "full-catalogue top-10 of every test user"}
    rows = [{"stage": names.get(k, k), "s": v["seconds"], "rss": v["peak_rss_mb"]}
            for k, v in j["stages"].items()]
    sh = j["shape"]
    return (markdown_table(rows, [("stage", "stage"), ("s", "seconds", 1),
                                  ("rss", "peak RSS MB", 0)])
            + f"\n\nSynthetic table of {sh['users']:,} users, {sh['items']:,} items, "
              f"{sh['ratings']:,} ratings (time and memory only, never accuracy); "
              f"--max-memory-gb {j.get('max_memory_gb')}.")


def ml1m(path: str) -> str:
    j = _json(_folder(path))
    st = j["stages"]
    rows = [{"stage": k, "s": v, "rss": st["peak_rss_mb"].get(k)} for k, v in st.items()
            if isinstance(v, (int, float))]
    sh = j["shape_written"]
    return (markdown_table(rows, [("stage", "stage"), ("s", "seconds", 0),
                                  ("rss", "peak RSS MB", 0)])
            + f"\n\nWhole command {j['wall_seconds']:,.0f} s with start-up; synthetic ML-1M-shaped "
              f"files ({sh['ratings']:,} ratings, {sh['users']:,} users, {sh['items']:,} items; "
              f"time and memory only); {j.get('cpus')} CPUs, torch {j.get('torch')}.")


def torchrun(path: str) -> str:
    j = _json(_folder(path))
    rows = [{"run": f"{v['processes']} process(es)", "epoch": v["epoch_seconds"][0],
             "cmd": v["command_seconds"], "mb": v["allreduce_bytes_per_step"] / 1e6,
             "rmse": v["test"]["rmse"], "ndcg": v["test"]["ndcg@10"]}
            for v in (j["one"], j["many"])]
    return (markdown_table(rows, [("run", "run"), ("epoch", "one epoch s", 1),
                                  ("cmd", "whole command s", 0), ("mb", "all-reduce MB/step", 2),
                                  ("rmse", "test RMSE", 5), ("ndcg", "test NDCG@10")])
            + f"\n\nOne {j['member']} epoch ({j['steps_per_epoch']} steps); speed-up "
              f"{j['speedup']:.2f}×. {j.get('arithmetic', '')}")


def catalogue_head(path: str) -> str:
    j = _json(_folder(path))
    rows = []
    for k, h in j["heads"].items():
        st = h["students"]
        rows.append({"k": int(k), "mass": 100 * h["head_mass_mean"],
                     "cos": " / ".join(f"{v['grad_cosine']:.4f}" for v in st.values()),
                     "err": " / ".join(f"{100 * v['loss_rel_error']:.1f}%" for v in st.values())})
    names = " / ".join(next(iter(j["heads"].values()))["students"])
    return markdown_table(rows, [("k", "kept items"), ("mass", "teacher mass kept %", 0),
                                 ("cos", f"gradient cosine ({names})"),
                                 ("err", "loss value error")])


def kill_resume(path: str) -> str:
    j = _json(_folder(path))
    rows = [{"point": p["point"], "killed": p["killed_after_s"], "resume": p["resume_seconds"],
             "equal": p["equal"]} for p in j["points"]]
    return (markdown_table(rows, [("point", "killed during"), ("killed", "killed after s", 1),
                                  ("resume", "resume s", 1), ("equal", "figures equal")])
            + f"\n\n{j['equal']} of {j['of']} resumed runs equal the uninterrupted one "
              f"({j['reference_seconds']:.1f} s); a second uninterrupted run: "
              f"{len(j['rerun_differences'])} differences.")


def fuzz(path: str) -> str:
    j = _json(_folder(path))
    rows = [{"p": k, **v} for k, v in j["properties"].items()]
    return (markdown_table(rows, [("p", "property"), ("passing", "passing"),
                                  ("failing", "failing"), ("invalid", "rejected by the generator")])
            + f"\n\n{j['inputs_total']:,} generated inputs in {j['seconds']:.0f} s, "
              f"{j['failing_total']} failing.")


def tune(path: str) -> str:
    """`benchmarks/tune_seeds.py`: per seed the study's size and choice, the tuned and the
    default-settings student on the test part; the pooled paired difference."""
    j = _json(_folder(path) / "tune_seeds.json")
    rows = []
    for s in j["seeds"]:
        fr, fi = s["front"], s["final"]
        c = fr["chosen"]
        rows.append({"seed": Path(s["run"]).name,
                     "trials": f"{len(fr['trials']):,} ({len(fr['front'])} on the front)",
                     "chosen": "the run's own settings" if c.get("reference") else
                               f"trial {c['trial']}: {c['kind']}, {c['method']}",
                     "params": fi["tuned"]["params"],
                     "tn": fi["tuned"]["test"]["ndcg@10"], "dn": fi["default"]["test"]["ndcg@10"],
                     "tr": fi["tuned"]["test"]["rmse"], "dr": fi["default"]["test"]["rmse"]})
    table = markdown_table(rows, [("seed", "seed"), ("trials", "trials"), ("chosen", "chosen"),
                                  ("params", "parameters"), ("tn", "tuned NDCG@10"),
                                  ("dn", "default NDCG@10"), ("tr", "tuned RMSE"),
                                  ("dr", "default RMSE")])
    pooled = "; ".join(f"{m} {d:+.4f} ({lo:+.4f} to {hi:+.4f})"
                       for m, (d, lo, hi, *_rest) in j["pooled"].items())
    return (table + f"\n\n{j['timeout_s'] / 60:.0f}-minute studies, at most "
            f"{j['max_params']:,} parameters; tuned minus default-settings student, pooled "
            f"over the seeds (test part, two-stage bootstrap 95%): {pooled}.")


KINDS = {"headline": headline, "teachers": teachers, "fisher": fisher, "pakd": pakd,
         "timings": timings, "seeds": seeds, "same": same, "peers": peers, "include": include,
         "text": text, "scale": scale, "ml1m": ml1m, "tune": tune,
         "torchrun": torchrun, "catalogue_head": catalogue_head, "kill_resume": kill_resume,
         "fuzz": fuzz}


def generate(kind: str, folder: str) -> str:
    if kind not in KINDS:
        raise SystemExit(f"unknown block kind {kind!r}; one of {', '.join(KINDS)}")
    return KINDS[kind](folder)


def fill_markers(text: str) -> str:
    """Each ``<!-- gen: KIND FOLDER -->`` line replaced by its block, with the source named."""
    return MARK.sub(lambda m: generate(m.group(1), m.group(2))
                    + f"\n\n<small>Generated from `{m.group(2)}`.</small>", text)


def fill_blocks(text: str, run: str | None = None) -> str:
    """The README's start/end blocks regenerated (``run``: another kept folder for them)."""
    def one(m):
        folder = run or m.group(3)
        return (f"<!-- gen:start {m.group(2)} {folder} -->\n"
                + generate(m.group(2), folder) + "\n" + m.group(5))
    return BLOCK.sub(one, text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("readme", help="regenerate the README's table in place")
    r.add_argument("--run", help="kept run folder (default: the one the README names)")
    r.add_argument("--check", action="store_true", help="exit 1 if the README is not current")
    s = sub.add_parser("show", help="print one block")
    s.add_argument("kind", choices=sorted(KINDS))
    s.add_argument("folder")
    a = ap.parse_args(argv)
    if a.cmd == "show":
        print(generate(a.kind, a.folder))
        return 0
    readme = ROOT / "README.md"
    old = readme.read_text()
    new = fill_blocks(old, a.run)
    if a.check:
        return 0 if new == old else 1
    readme.write_text(new)
    print(f"README.md: {'updated' if new != old else 'already current'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
