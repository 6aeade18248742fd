"""Several seeds of one experiment, pooled.

One seed's run can rank methods only within its own noise: a second seed of the same
configuration moves NDCG@10 by about 0.004 on ml-latest-small, as much as many gaps between
methods. ``pakd run --seeds 0,1,2`` therefore runs the whole experiment once per seed (its
own split, initialisation and negatives) in ``RUN/seed-<s>``, and this recipe reads those
runs back and writes ``RUN/seeds.json`` and ``RUN/seeds.md``:

- every row (teacher, members, each student) per seed, with the mean and the standard
  deviation over seeds;
- pooled paired differences from the teacher and, for students, from fisher_kd at the same
  budget: the mean of the per-seed differences with a two-stage bootstrap interval (seeds,
  then users within each seed; `pakd.stats.pooled_paired`) and, beside it, Student's t
  interval over the per-seed differences (with few seeds the bootstrap can be narrower
  than the seeds' spread; the t interval is not);
- a verdict for every comparison with fisher_kd on NDCG@10 and RMSE that survives Holm's
  correction over all of them (every baseline, every budget, both metrics), so calling a
  winner among many comparisons keeps the family-wise error at 5%; p-values are written
  with their resolution ("< 0.002 (1,000 resamples)", never "0.000"), and a verdict the
  t interval does not share is marked;
- NDCG@10 with only the held-out items rated >= 4 relevant (``ndcg@10_rel4``), mean and
  sd over seeds beside NDCG@10;
- the teachers' damage predictors per member: Spearman measured on the test part (out of
  sample) over seeds, the valid part's (in-sample for Taylor) beside it, and each
  predictor's paired difference from magnitude, with a t interval over seeds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..distill.budgets import budget_of
from ..errors import PakdError
from ..rundir import RunDir, read_json, write_json
from ..stats import POOLED_FIELDS, holm, p_text, pooled_paired, t_interval

METRICS = ("rmse", "mae", "auc", "recall@10", "ndcg@10", "ndcg@10_rel4")
# pooled paired differences need per-user results; ndcg@10_rel4 has a mean over seeds only
PAIRED = ("rmse", "mae", "auc", "recall@10", "ndcg@10")
LOWER_IS_BETTER = {"rmse", "mae"}
ALPHA = 0.05


def seed_dir(root: str | Path, seed: int) -> Path:
    return Path(root) / f"seed-{seed}"


def _experiment(rd: RunDir) -> dict:
    if not rd.pakd_json.is_file():
        raise PakdError(f"{rd.pakd_json} not found: the run of this seed has not finished its "
                        f"distill stage; run `pakd run --run {rd.root.parent} --seeds ...` again "
                        "(finished stages are kept with --resume)")
    return read_json(rd.pakd_json)


def _key(r: dict) -> tuple:
    return r["method"] if r["method"] != "member" else "member:" + r["model"], budget_of(r)


def _summary(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def pool(root: str | Path, seeds: list[int], *, resamples: int = 1000) -> dict:
    """Read the seeds' runs under ``root``; write and return the pooled results."""
    if len(set(seeds)) != len(seeds):
        raise PakdError(f"--seeds lists a seed twice ({seeds}); give distinct seeds")
    runs = {s: RunDir(seed_dir(root, s)) for s in seeds}
    exps = {s: _experiment(rd) for s, rd in runs.items()}
    teacher_name = {s: e["settings"]["teacher"] for s, e in exps.items()}

    def per_user(s: int, row: dict) -> dict:
        name = teacher_name[s] if row["method"] == "teacher" else \
            row["model"] if row["method"] == "member" else Path(row["file"]).name
        return runs[s].load_per_user(name, "test")

    rows_by_seed = {s: {_key(r): r for r in [e["teacher"]] + e["members"] + e["rows"]}
                    for s, e in exps.items()}
    first = rows_by_seed[seeds[0]]
    keys = [k for k in first if all(k in rows_by_seed[s] for s in seeds)]
    missing = sorted({str(k) for s in seeds for k in rows_by_seed[s]} - {str(k) for k in keys})
    t_rows = {s: rows_by_seed[s][("teacher", None)] for s in seeds}
    teachers = {s: per_user(s, t_rows[s]) for s in seeds}
    out_rows = []
    for k in keys:
        rows = {s: rows_by_seed[s][k] for s in seeds}
        entry = {"method": k[0], "budget": k[1], "model": rows[seeds[0]].get("model"),
                 "params": _summary([r["params"] for r in rows.values()])[0],
                 "per_seed": {str(s): {m: r.get(m) for m in METRICS} | {"params": r["params"]}
                              for s, r in rows.items()},
                 "mean": {}, "sd": {}}
        for m in METRICS:
            vals = [r[m] for r in rows.values() if r.get(m) is not None]
            if len(vals) == len(seeds):
                entry["mean"][m], entry["sd"][m] = _summary(vals)
        # student / teacher per seed, averaged: NDCG@10 kept (higher is better) and RMSE
        # reached (lower is better)
        entry["of_teacher"] = {
            m: _summary([r[m] / t_rows[s][m] for s, r in rows.items()])[0]
            for m in ("rmse", "ndcg@10") if all(r.get(m) for r in rows.values())}
        if k[0] != "teacher":
            mine = {s: per_user(s, r) for s, r in rows.items()}
            metrics = [m for m in PAIRED if m in entry["mean"]]
            entry["pooled"] = {"teacher": pooled_paired(
                [(teachers[s], mine[s]) for s in seeds], resamples=resamples, metrics=metrics)}
            ref = ("fisher_kd", k[1])
            if k[0] != "fisher_kd" and k[1] is not None and ref in keys:
                entry["pooled"]["fisher_kd"] = pooled_paired(
                    [(per_user(s, rows_by_seed[s][ref]), mine[s]) for s in seeds],
                    resamples=resamples, metrics=metrics)
        out_rows.append(entry)
    family = {(e["method"], budget_of(e), m): e["pooled"]["fisher_kd"][m][3]
              for e in out_rows if "fisher_kd" in e.get("pooled", {})
              for m in ("ndcg@10", "rmse") if m in e["pooled"]["fisher_kd"]}
    adjusted = holm(family, ALPHA)
    # a bootstrap p of 0 only says p < 2 / resamples: Holm on those bounds bounds the
    # adjusted p of 0 in turn (what the table states instead of "0.000")
    bound = holm({k: max(p, 2 / resamples) if np.isfinite(p) else p
                  for k, p in family.items()}, ALPHA)
    for e in out_rows:
        for m in ("ndcg@10", "rmse"):
            key = (e["method"], budget_of(e), m)
            if key in adjusted:
                d, _, _, _, t_lo, t_hi = e["pooled"]["fisher_kd"][m]
                e.setdefault("holm_p", {})[m] = adjusted[key]
                if adjusted[key] == 0:
                    e.setdefault("holm_p_below", {})[m] = bound[key]
                e.setdefault("fisher_kd_is", {})[m] = _fisher_kd_is(d, adjusted[key], m)
                e.setdefault("t_interval_agrees", {})[m] = _t_agrees(
                    e["fisher_kd_is"][m], t_lo, t_hi)
    out = {"seeds": seeds, "runs": {str(s): str(rd.root) for s, rd in runs.items()},
           "dataset": exps[seeds[0]].get("dataset"), "rows": out_rows,
           "fisher": fisher_over_seeds(runs),
           "left_out": missing, "resamples": resamples, "alpha": ALPHA,
           "pooled_fields": list(POOLED_FIELDS),
           "family": "each method against fisher_kd at the same budget, on NDCG@10 and RMSE"}
    write_json(Path(root) / "seeds.json", out)
    from ..atomic import atomic_write_text
    atomic_write_text(Path(root) / "seeds.md", seeds_markdown(out))
    return out


CRITERIA = ("true", "taylor", "magnitude")
BEATS = ("taylor_vs_magnitude", "true_vs_magnitude")


def fisher_over_seeds(runs: dict[int, RunDir]) -> dict:
    """Each member's damage-prediction check per seed, over seeds: Spearman measured on the
    test part (the headline: the Taylor gradient is taken on valid, so valid is in-sample
    for it; runs made before the test part was measured fall back to valid and say so in
    ``parts``), the valid part's beside it (``in_sample``), and each predictor's paired
    difference from magnitude per seed with the mean and a t interval over seeds. Every
    seed checks other units of another model, so the seeds together test several times as
    many units as one run."""
    per: dict[str, dict] = {}
    for s, rd in runs.items():
        if not rd.fisher_json.is_file():
            continue
        for name, m in read_json(rd.fisher_json)["models"].items():
            v = m["validation"]
            obj = v["objective"]
            valid = v.get("by_objective", {}).get(obj, {})
            test = v.get("test_part", {}).get("by_objective", {}).get(obj)
            head = test if test is not None else valid
            e = per.setdefault(name, {"units": 0, "with_path": 0, "seeds": [], "parts": [],
                                      **{k: [] for k in CRITERIA},
                                      **{f"in_sample_{k}": [] for k in CRITERIA},
                                      **{b: [] for b in BEATS}})
            e["units"] += v["groups_tested"]
            # a member the ensemble weighs 0 on a seed has no unit with a path to its
            # objective: that seed's correlations are undefined and left out of the mean
            e["with_path"] += v["groups_tested"] - v.get("units_without_path", {}).get(obj, 0)
            e["seeds"].append(s)
            e["parts"].append("test" if test is not None else "valid")
            for k in CRITERIA:
                e[k].append(head.get(f"spearman_{k}"))
                e[f"in_sample_{k}"].append(valid.get(f"spearman_{k}"))
            for b in BEATS:
                got = (head.get("beats") or {}).get(b)
                e[b].append(got[0] if got else None)
    out = {}
    for name, e in per.items():
        out[name] = {"units": e["units"], "units_with_path": e["with_path"],
                     "seeds": e["seeds"], "parts": e["parts"], "in_sample": {}, "beats": {}}
        for k in CRITERIA:
            out[name][k] = _over_seeds(e[k])
            out[name]["in_sample"][k] = _over_seeds(e[f"in_sample_{k}"])
        for b in BEATS:
            if any(x is not None for x in e[b]):
                got = _over_seeds(e[b])
                if "mean" in got:
                    got["t95"] = t_interval(got["per_seed"])[1:]
                out[name]["beats"][b] = got
    return out


def _over_seeds(values: list) -> dict:
    vals = [x for x in values if x is not None and np.isfinite(x)]
    return {"per_seed": values, **(dict(zip(("mean", "sd"), _summary(vals))) if vals else {})}


def _fisher_kd_is(d: float, p: float, metric: str) -> str:
    """fisher_kd against the other method, from d = other - fisher_kd and its Holm p."""
    if not np.isfinite(p) or p >= ALPHA or d == 0:
        return "tie"
    other_better = d < 0 if metric in LOWER_IS_BETTER else d > 0
    return "worse" if other_better else "better"


def _t_agrees(verdict: str, t_lo: float, t_hi: float) -> bool | None:
    """Whether the t interval over seeds reaches the bootstrap verdict too: a difference
    called better or worse should exclude 0 there as well; None when it cannot say."""
    if verdict == "tie" or not (np.isfinite(t_lo) and np.isfinite(t_hi)):
        return None
    return bool(t_lo > 0 or t_hi < 0)


def _ms(e: dict, m: str) -> str:
    if m not in e["mean"]:
        return "–"
    return f"{e['mean'][m]:.4f} ± {e['sd'][m]:.4f}"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _diff(v: list[float] | None) -> str:
    """A pooled difference: the bootstrap interval, then the t interval over seeds."""
    if not v:
        return "–"
    t = f"; t {v[4]:+.4f} to {v[5]:+.4f}" if len(v) > 5 and np.isfinite(v[4]) else ""
    return f"{v[0]:+.4f} ({v[1]:+.4f} to {v[2]:+.4f}{t})"


def seeds_markdown(out: dict) -> str:
    s = out["seeds"]
    R = out["resamples"]
    lines = [f"# PAKD over {len(s)} seeds ({', '.join(map(str, s))}) — {out.get('dataset')}", "",
             "Each seed is a whole run (split, initialisation, negatives) in its own "
             "directory. Mean ± standard deviation over seeds (test part); NDCG@10 ≥ 4: only "
             "the held-out items rated 4 or more relevant. Δ: the mean of the per-seed "
             "paired differences, with a two-stage bootstrap 95% interval (seeds, then "
             f"users, {R:,} resamples) and, after 't', Student's t 95% interval over the "
             "per-seed differences (each seed one draw; with few seeds the bootstrap can be "
             "narrower than the seeds' spread). fisher_kd is better / worse than a method "
             "only where the bootstrap difference survives Holm's correction over "
             f"{out['family']} (family-wise α {out['alpha']}); otherwise tie; '(t: tie)' "
             "marks a verdict whose t interval still includes 0.", "",
             "| method | budget | params | RMSE | NDCG@10 | NDCG@10 ≥ 4 | NDCG@10 % of teacher | "
             "RMSE % of teacher | Δ NDCG@10 vs teacher | Δ NDCG@10 vs fisher_kd (Holm p) | "
             "fisher_kd on NDCG@10 | Δ RMSE vs fisher_kd (Holm p) | fisher_kd on RMSE |",
             "|" + "---|" * 13]
    for e in out["rows"]:
        ratio = "–" if budget_of(e) is None else budget_of(e)
        of_t = e["of_teacher"]
        fk = e.get("pooled", {}).get("fisher_kd", {})
        hp, below = e.get("holm_p", {}), e.get("holm_p_below", {})
        is_, agrees = e.get("fisher_kd_is", {}), e.get("t_interval_agrees", {})

        def vs(m):
            if m not in hp:
                return "–"
            return f"{_diff(fk.get(m))} (p {p_text(hp[m], R, below.get(m))})"

        def verdict(m):
            v = is_.get(m, "–")
            return v + (" (t: tie)" if agrees.get(m) is False else "")
        lines.append(
            f"| {e['method']} | {ratio} | {e['params']:,.0f} | {_ms(e, 'rmse')} | "
            f"{_ms(e, 'ndcg@10')} | {_ms(e, 'ndcg@10_rel4')} | {_pct(of_t.get('ndcg@10'))} | "
            f"{_pct(of_t.get('rmse'))} | "
            f"{_diff(e.get('pooled', {}).get('teacher', {}).get('ndcg@10'))} | {vs('ndcg@10')} | "
            f"{verdict('ndcg@10')} | {vs('rmse')} | {verdict('rmse')} |")
    if out.get("fisher"):
        lines += ["", "Damage prediction of the teachers' Fisher analysis (one unit removed at a "
                  "time, each member's objective), over the units with a path to the "
                  "objective. Spearman measured on the test part, out of sample for every "
                  "predictor; in-sample: on the valid part, where the Taylor gradient is "
                  "taken. Mean ± sd over the seeds that have such units (a member the "
                  "ensemble weighs 0 on a seed has none; per seed in seeds.json). Δ vs "
                  "magnitude: the predictor's Spearman minus magnitude's on the test part, "
                  "mean over seeds with its t 95% interval (per seed, a paired bootstrap over "
                  "units in the run's Fisher report).", "",
                  "| member | units with a path / tested (all seeds) | true Fisher | Taylor | "
                  "magnitude | Taylor − magnitude | true − magnitude | in-sample Taylor | "
                  "in-sample magnitude |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, f in out["fisher"].items():
            cells = [_mean_sd(f[k]) for k in CRITERIA]
            beats = [_beat(f.get("beats", {}).get(b)) for b in BEATS]
            ins = [_mean_sd(f.get("in_sample", {}).get(k, {})) for k in ("taylor", "magnitude")]
            old = [str(sd) for sd, p in zip(f["seeds"], f.get("parts", [])) if p != "test"]
            note = f" (seed {', '.join(old)}: no test part, valid figures)" if old else ""
            lines.append(f"| {name}{note} | {f['units_with_path']} / {f['units']} | "
                         + " | ".join(cells + beats + ins) + " |")
    if out["left_out"]:
        lines += ["", "Rows not present in every seed (left out): " + ", ".join(out["left_out"])]
    return "\n".join(lines) + "\n"


def _mean_sd(f: dict) -> str:
    return f"{f['mean']:.2f} ± {f['sd']:.2f}" if "mean" in f else "–"


def _beat(f: dict | None) -> str:
    if not f or "mean" not in f:
        return "–"
    lo, hi = f.get("t95", [float("nan")] * 2)
    return f"{f['mean']:+.2f}" + (f" ({lo:+.2f} to {hi:+.2f})" if np.isfinite(lo) else "")
