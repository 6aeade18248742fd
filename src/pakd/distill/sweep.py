"""`pakd distill`: the PAKD sweep with its baselines, measured side by side.

For every pruning ratio, every method starts from the same student initialisation and gets
the same epochs and batches: fisher_kd (PAKD), magnitude_kd, random_kd, fisher_ft (Fisher
pruning, labels only) and scratch (fisher_kd's final architecture trained from scratch on
labels only). The teacher ensemble and each member are measured the same way. Outputs:
RUN/analysis_results/pakd_experiment.json|_summary.md, RUN/models/students/*,
RUN/models/saved/best_student_model.*, and plots in RUN/plots/.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..config import RunConfig
from ..data.encoding import Encoded
from ..atomic import atomic_write_text
from ..errors import PakdError
from ..evaluate import evaluate, ranking_metrics, predict_ratings
from ..metrics import rmse
from ..models import build, save
from ..models.base import RecModel
from ..runs import log, seed_everything
from ..teachers import (ensemble_scores, load_ensemble, load_member, member_scores,
                        teacher_dir)
from ..bench import bench_in_subprocess
from .pakd import METHODS, distill
from .signals import teacher_signals

ROW_KEYS = ("rmse", "mae", "auc", "logloss", "recall@10", "ndcg@10")


def _teacher(cfg: RunConfig, run_dir: Path, enc: Encoded):
    dc = cfg.distill
    if dc.teacher == "ensemble":
        teacher = load_ensemble(run_dir)
        scores = ensemble_scores(teacher, {n: member_scores(cfg, run_dir, n, teacher.members[n], enc)
                                           for n in teacher.ranking_weights})
        files = [teacher_dir(run_dir) / f"{n}.safetensors" for n in
                 set(teacher.rating_weights) | set(teacher.ranking_weights)]
        target = "ensemble"
    else:
        teacher = load_member(run_dir, dc.teacher)[0]
        scores = member_scores(cfg, run_dir, dc.teacher, teacher, enc)
        files = [teacher_dir(run_dir) / f"{dc.teacher}.safetensors"]
        target = str(teacher_dir(run_dir) / dc.teacher)
    return teacher, scores, files, target


def _valid_metrics(model: RecModel, enc: Encoded, cfg: RunConfig, scores=None) -> dict:
    va = enc.parts["valid"]
    scale = (enc.schema.rating_min, enc.schema.rating_max)
    ecfg = cfg.eval.model_copy(update={"ks": [10]})
    return {"rmse": rmse(predict_ratings(model, va.user, va.item), va.rating, scale),
            "ndcg@10": ranking_metrics(model, enc, ecfg, "valid", scores=scores)["ndcg@10"]}


def make_student(cfg: RunConfig, run_dir: Path, enc: Encoded) -> RecModel:
    dc = cfg.distill
    if dc.student == "lightweight_model":
        return build("lightweight_model", enc.schema,
                     {"factors": dc.student_factors, "rank_factors": dc.student_rank_factors,
                      "hidden": dc.student_hidden},
                     tables=enc.tables, rating_mean=float(enc.parts["train"].rating.mean()))
    return load_member(run_dir, dc.student)[0].train()   # a copy of a trained member


def _speed(cfg: RunConfig, target: str, run_dir: Path) -> dict:
    return bench_in_subprocess(target, run_dir=str(run_dir), threads=torch.get_num_threads(),
                               batch=cfg.distill.bench_batch, seconds=cfg.distill.bench_seconds)


def stage_distill(cfg: RunConfig, run_dir: Path, enc: Encoded) -> dict:
    dc = cfg.distill
    run_dir = Path(run_dir)
    t_start = time.perf_counter()
    teacher, scores, files, target = _teacher(cfg, run_dir, enc)
    teacher_test = evaluate(teacher, enc, cfg.eval, "test",
                            scores=scores, quiet=cfg.quiet)
    teacher_valid = _valid_metrics(teacher, enc, cfg, scores)
    log.info("teacher (%s): test RMSE %.4f NDCG@10 %.4f; measuring its speed", dc.teacher,
             teacher_test["rmse"], teacher_test["ndcg@10"])
    t_row = {"method": "teacher", "model": dc.teacher, "pruning_ratio": None, **_pick(teacher_test),
             "params": teacher.n_params(), "size_bytes": sum(f.stat().st_size for f in files),
             **_speed(cfg, target, run_dir)}
    member_rows = []
    if dc.teacher == "ensemble":
        tj = json.loads((run_dir / "teachers.json").read_text()) \
            if (run_dir / "teachers.json").is_file() else {"members": {}}
        for n, m in teacher.members.items():
            stem = teacher_dir(run_dir) / n
            met = tj["members"].get(n) or evaluate(m, enc, cfg.eval, "test",
                                                  scores=member_scores(cfg, run_dir, n, m, enc))
            member_rows.append({"method": "member", "model": n, "pruning_ratio": None,
                                **_pick(met), "params": m.n_params(),
                                "size_bytes": stem.with_suffix(".safetensors").stat().st_size,
                                **_speed(cfg, str(stem), run_dir)})
    signals = teacher_signals(teacher, enc, scores, list_top=dc.list_top,
                              feature_dim=dc.feature_dim, quiet=cfg.quiet)
    del teacher
    sdir = run_dir / "models" / "students"
    rows, curves = [], []
    for ratio in dc.sweep_ratios:
        ref_arch = None
        order = sorted(dc.methods, key=lambda m: m == "scratch")   # scratch needs a final arch
        for method in order:
            seed_everything(cfg.seed)
            student = make_student(cfg, run_dir, enc)
            if method == "scratch":
                if ref_arch is None:
                    raise PakdError("the scratch baseline copies a pruned method's final "
                                    "architecture: list fisher_kd (or another pruning method)")
                student = build(student.kind, enc.schema, ref_arch, tables=enc.tables,
                                rating_mean=float(enc.parts["train"].rating.mean()))
            name = f"{method}@{ratio:g}"
            res = distill(student, enc, signals, dc, cfg.eval, method=method, ratio=ratio,
                          teacher_valid=teacher_valid, seed=cfg.seed, quiet=cfg.quiet, name=name)
            model = res.model
            if method == "fisher_kd" or (ref_arch is None and METHODS[method][0] is not None):
                ref_arch = model.arch()
            met = evaluate(model, enc, cfg.eval, "test", quiet=True)
            stem = sdir / f"{method}_r{int(round(ratio * 100)):02d}"
            save(model, stem, meta={"method": method, "pruning_ratio": ratio,
                                    "start_params": res.start_params, "prune_log": res.prune_log})
            start = res.start_params if method != "scratch" else make_student(cfg, run_dir, enc).n_params()
            row = {"method": method, "model": model.kind, "pruning_ratio": ratio,
                   "removed_ratio": 1 - model.n_params() / start, **_pick(met),
                   "params": model.n_params(), "size_bytes": stem.with_suffix(".safetensors").stat().st_size,
                   "train_seconds": res.train_seconds, "best_epoch": res.best_epoch,
                   "best_epochs": res.best_epochs,
                   "epochs_run": len(res.history), "arch": model.arch(), "file": str(stem),
                   **_speed(cfg, str(stem), run_dir)}
            _relative(row, t_row)
            rows.append(row)
            curves.append({"method": method, "pruning_ratio": ratio, "history": res.history})
            log.info("%-14s ratio %.2f: params %s (%.1f%% removed), RMSE %.4f (%.1f%%), "
                     "NDCG@10 %.4f (%.1f%%), %.0fx throughput, %.0fx latency", method, ratio,
                     f"{row['params']:,}", 100 * row["removed_ratio"], row["rmse"],
                     row["rmse_retention_pct"], row["ndcg@10"], row["ndcg_retention_pct"],
                     row["speedup_throughput"], row["speedup_latency"])
    for r in member_rows:
        _relative(r, t_row)
    best, why = choose_best(rows, t_row, dc)
    saved = None
    if best is not None:
        saved = save_best(run_dir, best, enc)
    out = {"dataset": cfg.data.dataset, "teacher": t_row, "members": member_rows, "rows": rows,
           "best_student": {**(best or {}), "reason": why, "saved": saved},
           "targets": targets(rows, t_row, dc), "settings": dc.model_dump(),
           "threads": torch.get_num_threads(), "teacher_valid": teacher_valid,
           "feature_variance_kept": signals.explained, "curves": curves,
           "seconds": time.perf_counter() - t_start}
    from ..pipeline import write_json
    from ..report.pakd import pakd_markdown, pakd_plots
    adir = run_dir / "analysis_results"
    adir.mkdir(parents=True, exist_ok=True)
    write_json(adir / "pakd_experiment.json", out)
    atomic_write_text(adir / "pakd_experiment_summary.md", pakd_markdown(out))
    pakd_plots(out, run_dir / "plots")
    return out


def _pick(m: dict) -> dict:
    return {k: m.get(k) for k in ROW_KEYS}


def _relative(row: dict, t: dict) -> None:
    row["rmse_retention_pct"] = 100 * t["rmse"] / row["rmse"]
    row["ndcg_retention_pct"] = 100 * row["ndcg@10"] / t["ndcg@10"] if t["ndcg@10"] else None
    row["params_vs_teacher_pct"] = 100 * row["params"] / t["params"]
    row["speedup_throughput"] = row["throughput_rows_per_s"] / t["throughput_rows_per_s"]
    row["speedup_latency"] = t["latency_ms_p50"] / row["latency_ms_p50"]


def choose_best(rows: list[dict], t: dict, dc) -> tuple[dict | None, str]:
    ok = [r for r in rows if r["rmse"] <= (1 + dc.rmse_tolerance) * t["rmse"]
          and r["ndcg@10"] >= (1 - dc.ndcg_tolerance) * t["ndcg@10"]]
    if ok:
        b = min(ok, key=lambda r: (r["params"], r["rmse"]))
        return b, (f"smallest student ({b['params']:,} parameters, {b['method']} at ratio "
                   f"{b['pruning_ratio']:g}) with RMSE within {dc.rmse_tolerance:.0%} and NDCG@10 "
                   f"within {dc.ndcg_tolerance:.0%} of the teacher")
    if not rows:
        return None, "no student was trained"
    b = max(rows, key=lambda r: r["ndcg@10"] / t["ndcg@10"] - r["rmse"] / t["rmse"])
    return b, ("no student met the retention targets; chose the best balance of NDCG@10 and "
               "RMSE retention")


def targets(rows: list[dict], t: dict, dc) -> dict:
    """The issue's targets, each with the measured figures and whether it is met."""
    out = {}
    fk = {r["pruning_ratio"]: r for r in rows if r["method"] == "fisher_kd"}
    if 0.5 in fk:
        r = fk[0.5]
        out["ratio_0.5"] = {"rmse_within_1pct": r["rmse"] <= 1.01 * t["rmse"],
                            "ndcg_within_3pct": r["ndcg@10"] >= 0.97 * t["ndcg@10"],
                            "rmse": r["rmse"], "ndcg@10": r["ndcg@10"]}
    small = [r for r in fk.values() if r["params"] <= 0.1 * t["params"]]
    if small:
        r = max(small, key=lambda r: r["params"])
        out["params_90pct_fewer"] = {"pruning_ratio": r["pruning_ratio"], "params": r["params"],
                                     "rmse_within_2pct": r["rmse"] <= 1.02 * t["rmse"],
                                     "ndcg_within_5pct": r["ndcg@10"] >= 0.95 * t["ndcg@10"],
                                     "rmse": r["rmse"], "ndcg@10": r["ndcg@10"]}
    cmp = {}
    for ratio, r in fk.items():
        if ratio < 0.5:
            continue
        for b in rows:
            if b["pruning_ratio"] == ratio and b["method"] != "fisher_kd":
                cmp[f"{b['method']}@{ratio:g}"] = {
                    "rmse_at_least_as_good": r["rmse"] <= b["rmse"],
                    "ndcg_at_least_as_good": r["ndcg@10"] >= b["ndcg@10"],
                    "fisher_kd": [r["rmse"], r["ndcg@10"]], "baseline": [b["rmse"], b["ndcg@10"]]}
    out["fisher_kd_vs_baselines"] = cmp
    return out


def save_best(run_dir: Path, best: dict, enc: Encoded) -> str:
    from ..models import load
    model, cfg = load(best["file"])
    stem = run_dir / "models" / "saved" / "best_student_model"
    save(model, stem, meta={k: cfg.get(k) for k in ("method", "pruning_ratio", "start_params")})
    catalog = {"user_ids": enc.user_ids.tolist(), "item_ids": enc.item_ids.tolist(),
               "titles": enc.titles}
    atomic_write_text(stem.with_suffix(".catalog.json"), json.dumps(catalog) + "\n")
    return str(stem.with_suffix(".safetensors"))
