"""Recipe `distill`: the PAKD sweep with its baselines, measured side by side.

1. The teacher (the ensemble or one member), its test metrics and valid figures, and the
   signals students learn from (`pakd.distill.signals`).
2. The budgets (`distill.budgets`: shares of the three origin members, parameter counts or
   pruning ratios) become parameter targets for the dense student; every (budget, method)
   student is trained from the same start with the same epochs and batches
   (`pakd.distill.sweep`).
3. The criterion PAKD prunes with is checked on the dense_kd student (`pakd.distill.check`).
4. Speed and memory of teacher, members and students (`pakd.distill.outcome`), intervals
   and paired differences, the best student chosen on the valid part and saved with its
   catalogue, the targets.
Outputs: RUN/analysis_results/pakd_experiment.json|_summary.md, RUN/models/students/*,
RUN/models/saved/best_student_model.*, plots in RUN/plots/.
"""
from __future__ import annotations

import time

import torch

from .. import distributed
from ..config import RunConfig
from ..data import load_encoded
from ..data.encoding import Encoded
from ..distill import budgets as B
from ..distill.check import check_dense_kd
from ..distill.outcome import (choose_best, evidence, measure_speed, relative, targets)
from ..distill.signals import signals_for
from ..distill.students import make_student, origin_params
from ..distill.sweep import ROW_KEYS, Context, plan, run_sweep
from ..errors import PakdError
from ..evaluate import evaluate, evaluate_kept
from ..models import load, save
from ..prune import Pruner
from ..report.pakd import pakd_markdown, pakd_plots, references
from ..results import PakdExperiment, TeachersReport, load_result, write_result
from ..rundir import RunDir, write_json
from ..runtime import log
from ..scores import check_catalogue_settings, member_scores, teacher_scores


EVERY_RANK = True     # under torchrun every process trains (`pakd.recipes.Stage`)


def run(cfg: RunConfig, rd: RunDir, enc: Encoded | None = None) -> dict:
    enc = enc or load_encoded(cfg, rd)
    dc = cfg.distill
    t_start = time.perf_counter()
    check_catalogue_settings(cfg, enc.n_items, enc.n_users)
    budgets, sizes = size_targets(cfg, rd, enc)
    if distributed.is_main():         # an earlier best student must not look current
        for f in rd.best_student.parent.glob(rd.best_student.name + ".*"):
            f.unlink()
    teacher, scores = teacher_scores(cfg, rd, enc)
    # under torchrun every rank computes the teacher's signals and trains its share of the
    # sweep; rank 0 alone evaluates the teacher and writes the reports
    got = (evaluate_kept(cfg, rd, enc, teacher, dc.teacher, scores=scores, quiet=cfg.quiet)
           if distributed.is_main() else None)
    got = distributed.from_main(got)
    teacher_valid = {k: got["valid"][k] for k in ("rmse", "ndcg@10")}
    log.info("teacher (%s): test RMSE %.4f NDCG@10 %.4f", dc.teacher, got["test"]["rmse"],
             got["test"]["ndcg@10"])
    t_row = {"method": "teacher", "model": dc.teacher, "budget": None,
             **{k: got["test"].get(k) for k in ROW_KEYS}, "params": teacher.n_params(),
             "file_bytes": sum(f.stat().st_size for f in rd.teacher_files(dc.teacher)),
             "valid": teacher_valid, "origin_params": origin_params(cfg, enc.schema)}
    member_rows = (_member_rows(cfg, rd, enc, teacher)
                   if dc.teacher == "ensemble" and distributed.is_main() else [])
    signals = signals_for(cfg, teacher, enc, scores)
    log.info("teacher scores divided by %.4g (the temperature that best predicts the valid "
             "items)", signals.scale)
    del teacher
    ctx = Context(cfg, rd, enc, signals, teacher_valid,
                  {k: rd.member(k) for k in ("svd", "xdeepfm", "autoint") if rd.has_member(k)})
    done = run_sweep(ctx, *plan(cfg, budgets, sizes))
    if not distributed.is_main():
        return {}
    rows, curves = [r for r, _ in done], [c for _, c in done]
    check = check_dense_kd(cfg, enc, signals, rows)
    best, rule = choose_best(rows, t_row, dc.rmse_tolerance, dc.ndcg_tolerance)
    speed = measure_speed(rd, cfg.bench, dc.teacher, t_row, member_rows, rows, cfg.quiet,
                          best=best)
    for r in member_rows + rows:
        relative(r, t_row)
    evidence(rd, cfg.seed, dc.teacher, t_row, member_rows, rows)
    saved = save_best(rd, best, enc) if best is not None else None
    out = {"dataset": cfg.data.dataset, "teacher": t_row, "members": member_rows, "rows": rows,
           "budgets": sizes, "best_student": {**(best or {}), "rule": rule, "saved": saved},
           "targets": targets(rows, t_row), "settings": dc.model_dump(),
           "student": cfg.student.model_dump(), "bench": speed,
           "threads": torch.get_num_threads(), "teacher_valid": teacher_valid,
           "references": references(rd), "feature_variance_kept": signals.explained,
           "teacher_temperature": signals.scale,
           "teacher_distribution": ("whole catalogue" if signals.head is None else
                                    f"each user's {signals.probs.shape[1]} likeliest items, "
                                    "the rest spread evenly"),
           "curves": curves, "criterion_check": check,
           "seconds": time.perf_counter() - t_start}
    write_result(rd.pakd_json, PakdExperiment.model_validate(out))
    rd.write_text(rd.pakd_md, pakd_markdown(out))
    pakd_plots(out, rd)
    if best is None:
        raise PakdError("no student was trained: give --methods and --budgets that train one")
    return out


def size_targets(cfg: RunConfig, rd: RunDir, enc: Encoded) -> tuple[list, dict[str, int]]:
    """(the budgets, label -> parameter target), checked against the dense student before
    any training: a budget must lie below the dense student and above what it keeps with
    one unit per group and the group floor."""
    budgets = [B.parse(b) for b in cfg.distill.budgets]
    dense = make_student(cfg, enc)
    probe = Pruner(None, start=dense.n_params(), target=dense.n_params(), total_steps=1,
                   until=1.0, steps=1, floor=cfg.distill.group_floor)
    origin = origin_params(cfg, enc.schema)
    sizes = B.targets(budgets, dense.n_params(), origin, probe.least_params(dense))
    log.info("budgets %s of a dense student of %s parameters (the origin members hold %s)",
             ", ".join(f"{k} = {v:,}" for k, v in sizes.items()), f"{dense.n_params():,}",
             f"{origin:,}")
    return budgets, sizes


def _member_rows(cfg: RunConfig, rd: RunDir, enc: Encoded, ens) -> list[dict]:
    tj = (load_result(rd.teachers_json, TeachersReport).members
          if rd.teachers_json.is_file() else {})
    out = []
    for n, m in ens.members.items():
        met = tj.get(n) or evaluate(m, enc, "test", **cfg.eval.kwargs(),
                                    scores=member_scores(cfg, rd, n, m, enc))
        out.append({"method": "member", "model": n, "budget": None,
                    **{k: met.get(k) for k in ROW_KEYS}, "params": m.n_params(),
                    "outputs": list(m.outputs),
                    "file_bytes": rd.weights(rd.member(n)).stat().st_size})
    return out


def save_best(rd: RunDir, best: dict, enc: Encoded) -> str:
    """Copy the chosen student to RUN/models/saved/ with its IDs-and-titles catalogue."""
    model, meta = load(best["file"])
    stem = rd.best_student
    save(model, stem, meta={k: meta.get(k) for k in ("method", "budget", "start_params")})
    write_json(rd.catalog_of(stem), {"user_ids": enc.user_ids.tolist(),
                                     "item_ids": enc.item_ids.tolist(), "titles": enc.titles})
    return str(rd.weights(stem))
