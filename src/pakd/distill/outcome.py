"""What a sweep's rows say: sizes relative to the teacher, intervals and paired differences
(`evidence`), speed and memory beside the teacher (`measure_speed`), the best student
(`choose_best`, on the valid part) and the targets (`targets`, on the test part)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..bench import interleaved, memory_of
from ..models import load
from ..runtime import progress
from ..stats import Bootstrap, bootstrap, interval_of, paired_of, verdict
from .objective import retention_balance
from .sweep import REFERENCE

SPEED_KEYS = ("throughput_rows_per_s", "latency_ms_p50", "latency_ms_p99", "latency_reps",
              "threads", "bench_batch", "bench_rounds", "speedup_throughput",
              "speedup_throughput_range", "speedup_latency", "speedup_latency_range")
# the targets: (share of the origin members, NDCG@10 at least, RMSE at most) of the
# teacher's; at 5% the NDCG@10 target is a tie with the teacher by the paired interval
TARGETS = (("1%", 0.01, 0.92, 1.02), ("3%", 0.03, 0.98, 1.01), ("5%", 0.05, 1.00, 1.005),
           ("10%", 0.10, 0.97, 1.01))


def label(row: dict) -> str:
    return f"{row['method']}@{row['budget']}"


def relative(row: dict, t: dict) -> None:
    """Retention and size against the teacher (and the origin members) into ``row``."""
    row["rmse_retention_pct"] = 100 * t["rmse"] / row["rmse"]
    row["rmse_vs_teacher_pct"] = 100 * row["rmse"] / t["rmse"]
    row["ndcg_retention_pct"] = 100 * row["ndcg@10"] / t["ndcg@10"] if t["ndcg@10"] else None
    row["params_vs_teacher_pct"] = 100 * row["params"] / t["params"]
    if t.get("origin_params"):
        row["params_vs_origin_pct"] = 100 * row["params"] / t["origin_params"]


def evidence(rd, seed: int, teacher: str, t_row: dict, member_rows: list[dict],
             rows: list[dict]) -> None:
    """95% bootstrap intervals of every row's test metrics, and paired differences from the
    teacher and (students) from fisher_kd at the same budget, resampling test users; each
    model bootstrapped once."""
    boots: dict[str, Bootstrap] = {}

    def boot(name) -> Bootstrap:
        if name not in boots:
            boots[name] = bootstrap(rd.load_per_user(name, "test"), resamples=1000, seed=seed)
        return boots[name]

    def name_of(r: dict):
        return r["model"] if r["method"] == "member" else Path(r["file"]).name

    base = boot(teacher)
    t_row["ci95"] = interval_of(base)
    guided = {r["budget"]: r for r in rows if r["method"] == REFERENCE}
    for r in member_rows + rows:
        mine = boot(name_of(r))
        r["ci95"] = interval_of(mine)
        r["paired"] = {"teacher": paired_of(base, mine)}
        g = guided.get(r.get("budget"))
        if g is not None and g is not r:
            r["paired"][REFERENCE] = paired_of(boot(name_of(g)), mine)


def measure_speed(rd, bench, teacher: str, t_row: dict, member_rows: list[dict],
                  rows: list[dict], quiet: bool, best: dict | None = None) -> dict:
    """Speed of teacher, members and students, interleaved in one process (``bench``: the
    run's bench settings); peak memory of each alone, in a fresh process - of every model,
    or (``bench.memory`` chosen) of the teacher, its members, the dense and the ``best``
    student: a probe costs a torch import, and a sweep's students of one budget differ by
    a few parameters."""
    targets = {"teacher": "ensemble" if teacher == "ensemble" else str(rd.member(teacher))}
    targets.update({f"member:{r['model']}": str(rd.member(r["model"])) for r in member_rows})
    targets.update({label(r): r["file"] for r in rows})
    models = {k: (rd.load_ensemble() if t == "ensemble" else load(t)[0])
              for k, t in targets.items()}
    with progress(total=len(models) * bench.rounds, desc="benchmark", quiet=quiet,
                  unit="model") as bar:
        speed = interleaved(models, batch=bench.batch, seconds=bench.seconds,
                            rounds=bench.rounds, reference="teacher", progress=bar)
    del models
    everyone = [t_row] + member_rows + rows
    probed = [bench.memory == "all" or (bench.memory == "chosen" and (
        r is t_row or r in member_rows or r is best or r.get("method") == "dense_kd"))
        for r in everyone]
    got = iter(memory_of([t for t, p in zip(targets.values(), probed) if p],
                         run_dir=str(rd.root), threads=torch.get_num_threads(),
                         batch=bench.batch) if any(probed) else [])
    mem = [next(got) if p else None for p in probed]
    for (key, _), m, row in zip(targets.items(), mem, everyone):
        row.update({k: v for k, v in speed["models"][key].items() if k in SPEED_KEYS})
        if m is not None:
            row.update(peak_rss_mb=m["peak_rss_mb"], rss_before_load_mb=m["rss_before_load_mb"])
    return {k: v for k, v in speed.items() if k != "models"}


def choose_best(rows: list[dict], t: dict, rmse_tol: float, ndcg_tol: float
                ) -> tuple[dict | None, str]:
    """The deployable student, chosen on the valid part (the test part only reports).

    Rule: among the students whose valid RMSE is within ``rmse_tol`` and valid NDCG@10
    within ``ndcg_tol`` of the teacher's, the smallest (students of one budget differ by a
    few parameters, which must not decide: the smallest budget), and within it the best
    valid balance (NDCG@10 retention minus RMSE ratio). When none is within tolerance: the
    best valid balance over all students, ties to the smaller.
    """
    if not rows:
        return None, "no student was trained"
    tv = t["valid"]
    size = {}
    for r in rows:                      # a budget's size: its target (dense: its own size)
        size.setdefault(r["budget"], r.get("target_params") or r["params"])

    def balance(r):
        return retention_balance(r["valid"]["ndcg@10"], r["valid"]["rmse"], tv)

    ok = [r for r in rows if r["valid"]["rmse"] <= (1 + rmse_tol) * tv["rmse"]
          and r["valid"]["ndcg@10"] >= (1 - ndcg_tol) * tv["ndcg@10"]]
    if ok:
        b = max(ok, key=lambda r: (-size[r["budget"]], balance(r)))
        return b, (f"the smallest budget with a student whose valid RMSE is within "
                   f"{rmse_tol:.0%} and valid NDCG@10 within {ndcg_tol:.0%} of the teacher's, "
                   f"best valid balance (NDCG@10 retention - RMSE ratio) within it: "
                   f"{label(b)}")
    b = max(rows, key=lambda r: (balance(r), -size[r["budget"]]))
    return b, (f"no student is within {rmse_tol:.0%} (RMSE) and {ndcg_tol:.0%} (NDCG@10) of "
               f"the teacher on the valid part; the best valid balance (NDCG@10 retention - "
               f"RMSE ratio) over all students: {label(b)}")


def targets(rows: list[dict], t: dict) -> dict:
    """The size targets - fisher_kd at each budget against the teacher on the test part,
    measured and met or missed - and fisher_kd against each baseline at each budget: the
    paired difference with its 95% interval and a verdict (better / worse only when the
    interval excludes 0, else tie)."""
    out = {}
    fk = {r["budget"]: r for r in rows if r["method"] == REFERENCE}
    for name, share, ndcg_min, rmse_max in TARGETS:
        r = fk.get(name)
        if r is None:
            continue
        entry = {"params": r["params"], "params_vs_origin_pct": r.get("params_vs_origin_pct"),
                 "ndcg_retention_pct": 100 * r["ndcg@10"] / t["ndcg@10"],
                 "rmse_vs_teacher_pct": 100 * r["rmse"] / t["rmse"],
                 f"ndcg_at_least_{ndcg_min * 100:g}pct": r["ndcg@10"] >= ndcg_min * t["ndcg@10"],
                 f"rmse_at_most_{rmse_max * 100:g}pct": r["rmse"] <= rmse_max * t["rmse"]}
        if ndcg_min >= 1.0:             # "at least ties the teacher": the interval says so
            d, lo, hi = r["paired"]["teacher"]["ndcg@10"]
            entry["ndcg_ties_or_beats_teacher"] = hi >= 0 and d >= 0
        out[f"budget_{name}"] = entry
    cmp = {}
    for budget, r in fk.items():
        for b in rows:
            if b["budget"] != budget or b["method"] == REFERENCE:
                continue
            entry = {REFERENCE: [r["rmse"], r["ndcg@10"]], "baseline": [b["rmse"], b["ndcg@10"]]}
            pair = b.get("paired", {}).get(REFERENCE)
            for m, lower in (("rmse", True), ("ndcg@10", False)):
                if pair is not None:     # fisher_kd minus the baseline, with its 95% interval
                    d, lo, hi = pair[m]
                    entry[f"diff_{m}"] = [-d, -hi, -lo]
                    entry[f"verdict_{m}"] = verdict(entry[f"diff_{m}"], lower_is_better=lower)
            cmp[label(b)] = entry
    out["fisher_kd_vs_baselines"] = cmp
    return out

