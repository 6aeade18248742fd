"""The pooled seeds' table (RUN/seeds.md) from what `pakd.pool` computed."""
from __future__ import annotations

import numpy as np

from ..distill.budgets import budget_of
from ..pool import BEATS, CRITERIA
from ..stats import p_text


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
    RF = out.get("family_resamples", R)       # pools written before it had one count
    lines = [f"# PAKD over {len(s)} seeds ({', '.join(map(str, s))}) — {out.get('dataset')}", "",
             "Each seed is a whole run (split, initialisation, negatives) in its own "
             "directory. Mean ± standard deviation over seeds (test part); NDCG@10 ≥ 4: only "
             "the held-out items rated 4 or more relevant. Δ: the mean of the per-seed "
             "paired differences, with a two-stage bootstrap 95% interval (seeds, then "
             f"users, {R:,} resamples; {RF:,} for the differences from fisher_kd) and, after "
             "'t', Student's t 95% interval over the "
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
            return f"{_diff(fk.get(m))} (p {p_text(hp[m], RF, below.get(m))})"

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
        lines += _fisher_lines(out["fisher"])
    if out["left_out"]:
        lines += ["", "Rows not present in every seed (left out): " + ", ".join(out["left_out"])]
    return "\n".join(lines) + "\n"


def _fisher_lines(fisher: dict) -> list[str]:
    """The teachers' damage predictors per member over seeds (`pakd.pool.fisher_over_seeds`)."""
    lines = ["", "Damage prediction of the teachers' Fisher analysis (one unit removed at a "
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
    for name, f in fisher.items():
        cells = [_mean_sd(f[k]) for k in CRITERIA]
        beats = [_beat(f.get("beats", {}).get(b)) for b in BEATS]
        ins = [_mean_sd(f.get("in_sample", {}).get(k, {})) for k in ("taylor", "magnitude")]
        old = [str(sd) for sd, p in zip(f["seeds"], f.get("parts", [])) if p != "test"]
        note = f" (seed {', '.join(old)}: no test part, valid figures)" if old else ""
        lines.append(f"| {name}{note} | {f['units_with_path']} / {f['units']} | "
                     + " | ".join(cells + beats + ins) + " |")
    return lines


def _mean_sd(f: dict) -> str:
    return f"{f['mean']:.2f} ± {f['sd']:.2f}" if "mean" in f else "–"


def _beat(f: dict | None) -> str:
    if not f or "mean" not in f:
        return "–"
    lo, hi = f.get("t95", [float("nan")] * 2)
    return f"{f['mean']:+.2f}" + (f" ({lo:+.2f} to {hi:+.2f})" if np.isfinite(lo) else "")
