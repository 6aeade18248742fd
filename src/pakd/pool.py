"""Several seeds' results pooled: per row the mean and sd over seeds, pooled paired
differences (`pakd.stats.pooled_paired`), Holm-corrected verdicts against fisher_kd, and
the teachers' damage-prediction checks over seeds. The `seeds` recipe reads the runs and
writes what this returns."""
from __future__ import annotations

import numpy as np

from .distill.budgets import budget_of
from .results import FisherAnalysis
from .stats import holm, pooled_paired, t_interval

METRICS = ("rmse", "mae", "auc", "recall@10", "ndcg@10", "ndcg@10_rel4")
# pooled paired differences need per-user results; ndcg@10_rel4 has a mean over seeds only
PAIRED = ("rmse", "mae", "auc", "recall@10", "ndcg@10")
LOWER_IS_BETTER = {"rmse", "mae"}
ALPHA = 0.05
VERDICT = ("ndcg@10", "rmse")      # the metrics of the Holm family against fisher_kd


def compared(keys: list) -> list:
    """The rows compared with fisher_kd: every other method at a budget fisher_kd has."""
    return [k for k in keys
            if k[0] != "fisher_kd" and k[1] is not None and ("fisher_kd", k[1]) in keys]


def verdict_resamples(keys: list, resamples: int) -> int:
    """Resamples for the Holm family's bootstrap: at least ``resamples``, and enough that a
    p of 0 (only known to be below 2 / R) stays below ALPHA / 4 after Holm multiplies it by
    the family's size m, so the bootstrap's resolution never decides a verdict:
    R >= 8 m / ALPHA, in whole thousands."""
    m = len(VERDICT) * len(compared(keys))
    need = int(np.ceil(8 * m / ALPHA / 1000)) * 1000
    return max(resamples, need)


def _summary(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


CRITERIA = ("true", "taylor", "magnitude")
BEATS = ("taylor_vs_magnitude", "true_vs_magnitude")


def fisher_over_seeds(reports: dict[int, FisherAnalysis]) -> dict:
    """Each member's damage-prediction check per seed, over seeds: Spearman measured on the
    test part (the headline: the Taylor gradient is taken on valid, so valid is in-sample
    for it; runs made before the test part was measured fall back to valid and say so in
    ``parts``), the valid part's beside it (``in_sample``), and each predictor's paired
    difference from magnitude per seed with the mean and a t interval over seeds. Every
    seed checks other units of another model, so the seeds together test several times as
    many units as one run. ``reports``: each seed's Fisher analysis (its
    ensemble_fisher_analysis.json), seeds without one left out."""
    per: dict[str, dict] = {}
    for s, report in reports.items():
        for name, m in report.models.items():
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




def key_of(r: dict) -> tuple:
    """A row's identity across seeds: its method (a member by name) and budget."""
    return r["method"] if r["method"] != "member" else "member:" + r["model"], budget_of(r)


def pool_row(k: tuple, rows: dict, t_rows: dict, t_users: dict, per_user, keys: list,
             rows_by_seed: dict, resamples: int, family_resamples: int | None = None) -> dict:
    """Row ``k`` over seeds (``rows``: seed -> that seed's row): each metric per seed with
    mean and sd, the student/teacher ratios, and pooled paired differences from the
    teacher and (other methods) from fisher_kd at the same budget. ``per_user(seed, row)``
    reads a row's per-user test results (the teacher's, per seed: ``t_users``). The
    differences from fisher_kd on the `VERDICT` metrics draw ``family_resamples``
    (`verdict_resamples`), the rest ``resamples``."""
    seeds = list(rows)
    first = rows[seeds[0]]
    entry = {"method": k[0], "budget": k[1], "model": first.get("model"),
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
    if k[0] == "teacher":
        return entry
    mine = {s: per_user(s, r) for s, r in rows.items()}
    metrics = [m for m in PAIRED if m in entry["mean"]]
    entry["pooled"] = {"teacher": pooled_paired(
        [(t_users[s], mine[s]) for s in seeds], resamples=resamples,
        metrics=metrics)}
    ref = ("fisher_kd", k[1])
    if k in compared(keys):
        pairs = [(per_user(s, rows_by_seed[s][ref]), mine[s]) for s in seeds]
        family = [m for m in metrics if m in VERDICT]
        entry["pooled"]["fisher_kd"] = {
            **pooled_paired(pairs, resamples=resamples,
                            metrics=[m for m in metrics if m not in VERDICT]),
            **pooled_paired(pairs, resamples=family_resamples or resamples, metrics=family)}
    return entry


def holm_verdicts(rows: list[dict], resamples: int) -> None:
    """Every comparison with fisher_kd on NDCG@10 and RMSE, Holm-corrected as one family:
    each row gets its adjusted p (with its resolution bound where it is 0), the verdict,
    and whether the t interval over seeds agrees. ``resamples``: the family's (its p
    resolution is 2 / resamples)."""
    family = {(e["method"], budget_of(e), m): e["pooled"]["fisher_kd"][m][3]
              for e in rows if "fisher_kd" in e.get("pooled", {})
              for m in VERDICT if m in e["pooled"]["fisher_kd"]}
    adjusted = holm(family, ALPHA)
    # a bootstrap p of 0 only says p < 2 / resamples: Holm on those bounds bounds the
    # adjusted p of 0 in turn (what the table states instead of "0.000"), and the verdict
    # is taken on the bounds, so a resolution too coarse for the family gives a tie
    bound = holm({k: max(p, 2 / resamples) if np.isfinite(p) else p
                  for k, p in family.items()}, ALPHA)
    for e in rows:
        for m in VERDICT:
            key = (e["method"], budget_of(e), m)
            if key in adjusted:
                d, _, _, _, t_lo, t_hi = e["pooled"]["fisher_kd"][m]
                e.setdefault("holm_p", {})[m] = adjusted[key]
                if adjusted[key] == 0:
                    e.setdefault("holm_p_below", {})[m] = bound[key]
                e.setdefault("fisher_kd_is", {})[m] = _fisher_kd_is(d, bound[key], m)
                e.setdefault("t_interval_agrees", {})[m] = _t_agrees(
                    e["fisher_kd_is"][m], t_lo, t_hi)
