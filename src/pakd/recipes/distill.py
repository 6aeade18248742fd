"""Recipe `distill`: the PAKD sweep with its baselines, measured side by side.

1. The teacher (the ensemble or one member), its test metrics and valid figures, and the
   signals students learn from (`distill.signals`).
2. For every pruning ratio, every method starts from the same student initialisation and
   gets the same epochs and batches (`distill.loop.distill`): fisher_kd (PAKD),
   magnitude_kd, random_kd, fisher_ft (Fisher pruning, labels only) and scratch
   (fisher_kd's final architecture trained from scratch on labels only).
3. Speed: the teacher, its members and every student measured interleaved in one process
   (`pakd.bench.interleaved`), peak memory in a fresh process each (not measured with
   ``--bench-memory false``).
4. The best student, chosen on the valid part by `choose_best`, saved with its catalogue.
Outputs: RUN/analysis_results/pakd_experiment.json|_summary.md, RUN/models/students/*,
RUN/models/saved/best_student_model.*, plots in RUN/plots/.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from .. import distributed
from ..bench import interleaved, memory_of
from ..config import STUDENT, TEACHERS, RunConfig, arch_of, sweep_ratios
from ..data.encoding import Encoded
from ..distill.loop import ABLATIONS, AFTER_REFERENCE, METHODS, distill
from ..distill.objective import Losses
from ..distill.check import check_student_criterion
from ..distill.signals import teacher_signals
from ..errors import PakdError
from ..evaluate import evaluate
from ..memory import user_chunk
from ..models import build, load, save
from ..models.base import RecModel
from ..models.student import ITEM_ROWS, item_row_table
from ..prune import criterion as make_criterion
from ..report.pakd import pakd_markdown, pakd_plots
from ..rundir import RunDir, fingerprint, read_json, read_marker, write_json
from ..stats import Bootstrap, bootstrap, interval_of, paired_of, verdict
from ..runtime import log, progress, seed_everything
from .ensemble import ensemble_scores
from .evaluation import evaluate_kept
from .split import load_encoded
from .teachers import check_catalogue_settings, member_scores

ROW_KEYS = ("rmse", "mae", "auc", "logloss", "recall@10", "ndcg@10", "ndcg@10_rel4")
SPEED_KEYS = ("throughput_rows_per_s", "latency_ms_p50", "latency_ms_p99", "latency_reps",
              "threads", "bench_batch", "bench_rounds", "speedup_throughput",
              "speedup_throughput_range", "speedup_latency", "speedup_latency_range")


def run(cfg: RunConfig, rd: RunDir, enc: Encoded | None = None) -> dict:
    enc = enc or load_encoded(cfg, rd)
    cfg = with_budget_ratios(cfg, rd, enc)
    dc = cfg.distill
    t_start = time.perf_counter()
    check_catalogue_settings(cfg, enc.n_items, enc.n_users)
    teacher, scores = _teacher(cfg, rd, enc)
    # under torchrun every rank computes the teacher's signals and trains its share of the
    # sweep; rank 0 alone evaluates the teacher and writes the reports
    got = (evaluate_kept(cfg, rd, enc, teacher, dc.teacher, scores=scores, quiet=cfg.quiet)
           if distributed.is_main() else None)
    got = distributed.from_main(got)
    teacher_test = got["test"]
    teacher_valid = {k: got["valid"][k] for k in ("rmse", "ndcg@10")}
    log.info("teacher (%s): test RMSE %.4f NDCG@10 %.4f", dc.teacher, teacher_test["rmse"],
             teacher_test["ndcg@10"])
    t_row = {"method": "teacher", "model": dc.teacher, "pruning_ratio": None,
             **_pick(teacher_test), "params": teacher.n_params(),
             "size_bytes": sum(f.stat().st_size for f in rd.teacher_files(dc.teacher)),
             "valid": teacher_valid, "origin_params": origin_params(rd)}
    member_rows = (_member_rows(cfg, rd, enc, teacher)
                   if dc.teacher == "ensemble" and distributed.is_main() else [])
    signals = teacher_signals(teacher, enc, scores, list_top=dc.list_top,
                              feature_dim=dc.feature_dim, quiet=cfg.quiet,
                              temperature=dc.temperature,
                              unobserved=dc.kd_rating_unobserved, seed=cfg.seed,
                              head=dc.catalogue_head,
                              chunk=min(256, user_chunk(enc.n_items, cfg.eval.max_memory_gb)))
    log.info("teacher scores divided by %.4g (the temperature that best predicts the valid "
             "items)", signals.scale)
    del teacher
    rows, curves = sweep(cfg, rd, enc, signals, teacher_valid)
    if not distributed.is_main():
        return {}
    check = criterion_check(cfg, enc, signals, rows)
    speed = measure_speed(cfg, rd, t_row, member_rows, rows)
    for r in member_rows + rows:
        _relative(r, t_row)
    t0 = time.perf_counter()
    evidence(cfg, rd, t_row, member_rows, rows)
    log.info("confidence intervals: %.1fs", time.perf_counter() - t0)
    best, rule = choose_best(rows, t_row, dc.rmse_tolerance, dc.ndcg_tolerance)
    saved = save_best(rd, best, enc) if best is not None else None
    out = {"dataset": cfg.data.dataset, "teacher": t_row, "members": member_rows, "rows": rows,
           "best_student": {**(best or {}), "rule": rule, "saved": saved},
           "targets": targets(rows, t_row), "settings": dc.model_dump(),
           "student": cfg.student.model_dump(), "bench": speed,
           "threads": torch.get_num_threads(), "teacher_valid": teacher_valid,
           "references": references(rd),
           "feature_variance_kept": signals.explained, "teacher_temperature": signals.scale,
           "teacher_distribution": ("whole catalogue" if signals.head is None else
                                    f"each user's {signals.probs.shape[1]} likeliest items, "
                                    "the rest spread evenly"),
           "curves": curves, "criterion_check": check,
           "seconds": time.perf_counter() - t_start}
    write_json(rd.pakd_json, out)
    rd.write_text(rd.pakd_md, pakd_markdown(out))
    pakd_plots(out, rd)
    return out


def with_budget_ratios(cfg: RunConfig, rd: RunDir, enc: Encoded) -> RunConfig:
    """``cfg`` with ``distill.size_budgets`` (percent of the three origin members) turned into
    pruning ratios of the dense student: a size is what a user budgets for, and the share
    to remove depends on the student's width and the data's catalogue."""
    dc = cfg.distill
    if not dc.size_budgets:
        return cfg
    origin = origin_params(rd)
    if origin is None:
        raise PakdError("--size-budgets are sizes against the three origin members (" +
                        ", ".join(TEACHERS) + "), which this run has not trained: train "
                        "them, or give --pruning-ratios")
    dense = make_student(cfg, rd, enc).n_params()
    ratios = []
    for b in dc.size_budgets:
        keep = b / 100 * origin
        r = math.ceil(max(0.0, 1 - keep / dense) * 1e4) / 1e4     # never above the budget
        if r >= 0.99:
            raise PakdError(f"--size-budgets {b:g}% is {keep:,.0f} parameters, under 1% of the "
                            f"dense student's {dense:,}: give a larger budget or a narrower "
                            f"student (--student-factors, --student-rank-factors)")
        ratios.append(r)
    if len(set(ratios)) != len(ratios):
        raise PakdError(f"--size-budgets {dc.size_budgets} give the pruning ratios {ratios}: "
                        "a budget at or above the dense student's size is the dense student; "
                        "give each size once")
    log.info("size budgets %s%% of the origin members (%s parameters) -> pruning ratios %s "
             "of the dense student (%s)", ", ".join(f"{b:g}" for b in dc.size_budgets),
             f"{origin:,}", ", ".join(f"{r:g}" for r in ratios), f"{dense:,}")
    return cfg.model_copy(update={"distill": dc.model_copy(
        update={"pruning_ratios": ratios, "pruning_ratio": None})})


def _teacher(cfg: RunConfig, rd: RunDir, enc: Encoded):
    """(teacher, its users x items ranking scores)."""
    name = cfg.distill.teacher
    teacher = rd.load_teacher(name)
    if name == "ensemble":
        return teacher, ensemble_scores(teacher, {
            n: member_scores(cfg, rd, n, teacher.members[n], enc) for n in teacher.ranking_mix})
    return teacher, member_scores(cfg, rd, name, teacher, enc)


def _member_rows(cfg: RunConfig, rd: RunDir, enc: Encoded, ens) -> list[dict]:
    tj = read_json(rd.teachers_json) if rd.teachers_json.is_file() else {"members": {}}
    out = []
    for n, m in ens.members.items():
        met = tj["members"].get(n) or evaluate(m, enc, "test", **cfg.eval.kwargs(),
                                              scores=member_scores(cfg, rd, n, m, enc))
        out.append({"method": "member", "model": n, "pruning_ratio": None, **_pick(met),
                    "params": m.n_params(), "outputs": list(m.outputs),
                    "size_bytes": rd.weights(rd.member(n)).stat().st_size})
    return out


def make_student(cfg: RunConfig, rd: RunDir, enc: Encoded) -> RecModel:
    """A fresh lightweight student, or a copy of a trained member."""
    kind = cfg.distill.student
    if kind == STUDENT:
        arch = student_arch(cfg, enc)
        return build(STUDENT, enc.schema, arch, tables=student_tables(enc, arch),
                     rating_mean=float(enc.parts["train"].rating.mean()))
    return rd.load_member(kind)[0].train()


def student_arch(cfg: RunConfig, enc: Encoded) -> dict:
    """The lightweight student's architecture: the configured one, with ``item_rows`` the
    fewest most-rated items whose train ratings reach ``item_coverage`` of all (0: every
    item)."""
    counts = _train_counts(enc)
    share = (torch.sort(counts, descending=True).values.cumsum(0).double()
             / max(1, int(counts.sum())))
    rows = int((share < cfg.student.item_coverage - 1e-12).sum()) + 1
    return {**arch_of(cfg.student, STUDENT), "item_rows": rows if rows < enc.n_items else 0}


def student_tables(enc: Encoded, arch: dict) -> dict:
    """The token tables a lightweight student of ``arch`` reads: the data's, plus which
    items own factor rows when ``item_rows`` limits them (chosen by train counts)."""
    rows = arch.get("item_rows", 0)
    if not rows:
        return enc.tables
    return {**enc.tables, ITEM_ROWS: item_row_table(_train_counts(enc), rows)}


def _train_counts(enc: Encoded) -> torch.Tensor:
    """Train ratings per item: which items own the student's rows, and how many."""
    return torch.bincount(enc.parts["train"].item, minlength=enc.n_items)


def _train_one(cfg: RunConfig, rd: RunDir, enc: Encoded, signals, teacher_valid: dict,
               method: str, ratio: float, ref_arch: dict | None):
    """One student of the sweep, trained by ``method`` to ``ratio``."""
    dc = cfg.distill
    crit_name, use_kd = METHODS[method] if method not in ABLATIONS else ("fisher", True)
    tasks = frozenset(dc.distill_tasks) - {ABLATIONS.get(method)} if use_kd else frozenset()
    seed_everything(cfg.seed)
    student = make_student(cfg, rd, enc)
    start = student.n_params()
    mean = float(enc.parts["train"].rating.mean())
    if method in ("scratch", "final_kd"):
        student = build(student.kind, enc.schema, ref_arch, tables=student_tables(enc, ref_arch),
                        rating_mean=mean)
    elif method == "mf_labels":
        student = mf_of_size(enc, build(student.kind, enc.schema, ref_arch,
                                        tables=student_tables(enc, ref_arch)).n_params(), mean)
    gen = torch.Generator().manual_seed(cfg.seed)
    crit = None if crit_name is None else make_criterion(
        crit_name, model=student, gen=gen, balance=dc.fisher_balance or None)
    target = round(student.n_params() * (1 - ratio)) if ratio > 0 else None
    res = distill(student, enc, signals, losses=_losses(dc, tasks, use_kd), settings=dc,
                  criterion=crit, target=target, prune_until=dc.prune_until,
                  prune_steps=dc.prune_steps,
                  group_floor=dc.group_floor,
                  teacher_valid=teacher_valid, relevant_min_rating=cfg.eval.relevant_min_rating,
                  seed=cfg.seed, gen=gen, quiet=cfg.quiet, name=f"{method}@{ratio:g}")
    res.start_params = start
    return res, res.model


def _losses(dc, tasks: frozenset, use_kd: bool) -> Losses:
    return Losses(tasks, dc.kd_rating_weight, dc.kd_ranking_weight, dc.kd_feature_weight,
                  dc.label_loss_weight if use_kd else 1.0, dc.list_random,
                  dc.list_users, dc.label_ranking, dc.kd_list)


def criterion_check(cfg: RunConfig, enc: Encoded, signals, rows: list[dict]) -> dict | None:
    """`pakd.distill.check` on the dense_kd student: does the mask Fisher PAKD prunes with
    (fisher_kd's objective and balance) foresee what removing each unit costs?"""
    dc = cfg.distill
    dense = next((r for r in rows if r["method"] == "dense_kd"), None)
    if not dc.check_units or dense is None:
        return None
    t0 = time.perf_counter()
    out = check_student_criterion(load(dense["file"])[0], enc, signals,
                                  losses=_losses(dc, frozenset(dc.distill_tasks), True),
                                  settings=dc, balance=dc.fisher_balance or None,
                                  units=dc.check_units, steps=4, seed=cfg.seed,
                                  quiet=cfg.quiet)
    out["seconds"] = time.perf_counter() - t0
    log.info("criterion check on dense_kd: %d units, %.1fs", out["units_tested"], out["seconds"])
    return out


def mf_of_size(enc: Encoded, params: int, rating_mean: float) -> RecModel:
    """A plain matrix factorisation (the lightweight model on IDs alone, no MLP) with rating
    and ranking factors of equal width, the width giving the parameter count nearest
    ``params``."""
    def make(k):
        return build(STUDENT, enc.schema, {"factors": k, "rank_factors": k, "hidden": [],
                                           "side_fields": False},
                     tables=enc.tables, rating_mean=rating_mean)
    per_factor = make(2).n_params() - make(1).n_params()
    base = make(1).n_params() - per_factor
    k = max(1, round((params - base) / per_factor))
    return make(k)


def student_row(cfg: RunConfig, rd: RunDir, enc: Encoded, signals, teacher_valid: dict,
                method: str, ratio: float, ref_arch: dict | None) -> tuple[dict, dict]:
    """Train, save and evaluate one student: (its table row, its training curve)."""
    res, model = _train_one(cfg, rd, enc, signals, teacher_valid, method, ratio, ref_arch)
    stem = rd.student(method, ratio)
    save(model, stem, meta={"method": method, "pruning_ratio": ratio,
                            "start_params": res.start_params, "prune_log": res.prune_log})
    got = evaluate_kept(cfg, rd, enc, model, stem.name)
    row = {"method": method, "model": model.kind, "pruning_ratio": ratio,
           "removed_ratio": 1 - model.n_params() / res.start_params, **_pick(got["test"]),
           "valid": {k: got["valid"][k] for k in ("rmse", "ndcg@10")}, "params": model.n_params(),
           "size_bytes": rd.weights(stem).stat().st_size,
           "train_seconds": res.train_seconds, "best_epoch": res.best_epoch,
           "best_epochs": res.best_epochs, "epochs_run": len(res.history),
           "arch": model.arch(), "file": str(stem)}
    return row, {"method": method, "pruning_ratio": ratio, "history": res.history}


def _reference(methods: list[str]) -> str | None:
    """The method whose final architecture the scratch baseline trains: fisher_kd, else the
    first listed method that prunes."""
    if "fisher_kd" in methods:
        return "fisher_kd"
    return next((m for m in methods if METHODS[m][0] is not None), None)


def sweep(cfg: RunConfig, rd: RunDir, enc: Encoded, signals, teacher_valid: dict):
    """Every (ratio, method) student. Students are trained by ``workers`` processes at once,
    each single-threaded: a student's many small steps barely use a second core, and a
    student trained on one thread equals one trained on two (checked on ml-latest-small).
    The scratch baseline of a ratio starts once its reference method has finished. Under
    torchrun the processes share the students instead (`_sweep_over_ranks`)."""
    dc = cfg.distill
    ratios, ref = sweep_ratios(dc), _reference(dc.methods)
    after = [m for m in dc.methods if m in AFTER_REFERENCE]
    if after and ref is None:
        raise PakdError(f"the {', '.join(after)} baseline(s) copy a pruned method's final "
                        "architecture: list fisher_kd (or another pruning method)")
    # longest first (the Fisher methods observe every step while pruning), so the workers
    # finish together and each baseline that copies a reference can start once it is done
    slow = {"fisher_kd": 0, "magnitude_kd": 1, "random_kd": 2, "dense_kd": 3, "fisher_ft": 4}
    per_ratio = [m for m in dc.methods if m not in AFTER_REFERENCE and m != "dense_kd"]
    jobs = [(r, m) for m in per_ratio for r in ratios]
    if "dense_kd" in dc.methods:
        jobs.append((0.0, "dense_kd"))
    if dc.ablation and "fisher_kd" in dc.methods:
        jobs += [(max(ratios), m) for m in ABLATIONS]
    jobs.sort(key=lambda j: slow.get(j[1], 0 if j[1] in ABLATIONS else 9))
    waiting = [(r, m) for r in ratios for m in after]
    total = len(jobs) + len(waiting)
    fp = sweep_fingerprint(cfg, rd)
    done: dict[tuple, tuple[dict, dict]] = kept_rows(rd, jobs + waiting, fp) if cfg.resume else {}
    if done:
        log.info("--resume: %d of %d students were finished with these settings and teacher; "
                 "training the other %d", len(done), total, total - len(done))
    jobs = [k for k in jobs if k not in done]
    waiting = [k for k in waiting if k not in done]
    workers = _workers(cfg, max(1, len(jobs) + len(waiting)))
    with progress(total=total, initial=len(done), desc="students",
                  quiet=cfg.quiet or not distributed.is_main(), unit="student") as bar:
        def finished(key, result):
            done[key] = result
            row = result[0]
            if distributed.is_main():
                write_json(rd.row_of(row["file"]), {"fingerprint": fp, "row": row,
                                                    "curve": result[1]})
            log.info("%-14s ratio %.2f: params %s (%.1f%% removed), test RMSE %.4f, NDCG@10 "
                     "%.4f (%.0fs)", key[1], key[0], f"{row['params']:,}",
                     100 * row["removed_ratio"], row["rmse"], row["ndcg@10"],
                     row["train_seconds"])
            bar.update(1)

        def arch_for(ratio):
            return done[(ratio, ref)][0]["arch"]

        if distributed.world() > 1:
            _sweep_over_ranks(cfg, rd, enc, signals, teacher_valid, jobs, waiting, finished,
                              arch_for)
        elif workers <= 1:
            for key in jobs + waiting:
                ra = arch_for(key[0]) if key[1] in AFTER_REFERENCE else None
                finished(key, student_row(cfg, rd, enc, signals, teacher_valid, *key[::-1], ra))
        else:
            ready = [(r, m, None) for r, m in jobs] + [
                (r, m, arch_for(r)) for r, m in waiting if (r, ref) in done]
            waiting = [w for w in waiting if (w[0], ref) not in done]
            _sweep_in_processes(cfg, rd, enc, signals, teacher_valid, ready, waiting, workers,
                                finished, arch_for, ref)
    order = [k for k in done if k[1] == "dense_kd"] + [
        (r, m) for r in ratios for m in per_ratio + after + list(ABLATIONS)
        if (r, m) in done]
    return [done[k][0] for k in order], [done[k][1] for k in order]


def sweep_fingerprint(cfg: RunConfig, rd: RunDir) -> str:
    """What a sweep student depends on: the seed, the distillation, student and evaluation
    settings (not the worker count: a student is the same on any; not the criterion check,
    which runs after the sweep), and the teacher's files. A finished row is reused by
    --resume only under the same fingerprint."""
    dc = cfg.distill.model_dump(mode="json")
    for after in ("workers", "check_units"):
        dc.pop(after, None)
    files = rd.teacher_files(cfg.distill.teacher)
    if cfg.distill.teacher == "ensemble":
        files = [rd.ensemble, *files]              # its mixes and calibration
    return fingerprint({"seed": cfg.seed, "distill": dc,
                        "student": cfg.student.model_dump(mode="json"),
                        "eval": cfg.eval.model_dump(mode="json")}, files)


def kept_rows(rd: RunDir, keys: list[tuple], fp: str) -> dict[tuple, tuple[dict, dict]]:
    """Rows of students finished under fingerprint ``fp`` whose files are all present."""
    out = {}
    for ratio, method in keys:
        stem = rd.student(method, ratio)
        if not (rd.weights(stem).is_file() and rd.per_user(stem.name, "test").is_file()):
            continue
        got = read_marker(rd.row_of(stem), fp)
        if got is not None:
            got["row"]["file"] = str(stem)          # the run may have been moved since
            out[(ratio, method)] = (got["row"], got["curve"])
    return out


def _workers(cfg: RunConfig, n_jobs: int) -> int:
    if cfg.distill.workers:
        return min(cfg.distill.workers, n_jobs)
    return max(1, min(torch.get_num_threads(), n_jobs))


def _sweep_in_processes(cfg, rd, enc, signals, teacher_valid, jobs, waiting, workers,
                        finished, arch_for, ref) -> None:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    ctx = mp.get_context("spawn")      # fork is unsafe once torch's thread pools exist
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(cfg.model_dump(mode="json"), str(rd.root), enc, signals,
                                       teacher_valid)) as ex:
        pending = {ex.submit(_worker_job, m, r, arch): (r, m) for r, m, arch in jobs}
        while pending:
            finished_now, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished_now:
                key = pending.pop(fut)
                finished(key, fut.result())
                if key[1] == ref:
                    for w in [w for w in waiting if w[0] == key[0]]:
                        waiting.remove(w)
                        pending[ex.submit(_worker_job, w[1], w[0], arch_for(w[0]))] = w


def _sweep_over_ranks(cfg, rd, enc, signals, teacher_valid, jobs, waiting, finished,
                      arch_for) -> None:
    """The sweep under torchrun: the students that need no reference, then the baselines
    that copy one, each round shared out over the processes (every world-th student, in
    the longest-first order) and gathered to every rank. Each rank saves and evaluates the
    students it trains, as a worker process does; rank 0 writes the rows."""
    for round_ in (jobs, waiting):
        mine = [(key, student_row(cfg, rd, enc, signals, teacher_valid, key[1], key[0],
                                  arch_for(key[0]) if key[1] in AFTER_REFERENCE else None))
                for key in round_[distributed.rank()::distributed.world()]]
        for key, result in sorted(sum(distributed.gather_all(mine), []),
                                  key=lambda kr: round_.index(kr[0])):
            finished(key, result)


_STATE: dict = {}


def _init_worker(cfg_data: dict, root: str, enc, signals, teacher_valid) -> None:
    """A sweep worker: one torch thread, logs into the run's log file only."""
    from ..config import RunConfig
    from ..runtime import setup_logging
    torch.set_num_threads(1)
    cfg = RunConfig.model_validate({**cfg_data, "quiet": True})
    rd = RunDir(root)
    setup_logging(True, rd.log)
    _STATE.update(cfg=cfg, rd=rd, enc=enc, signals=signals, teacher_valid=teacher_valid)


def _worker_job(method: str, ratio: float, ref_arch: dict | None):
    s = _STATE
    return student_row(s["cfg"], s["rd"], s["enc"], s["signals"], s["teacher_valid"], method,
                       ratio, ref_arch)


def measure_speed(cfg: RunConfig, rd: RunDir, t_row: dict, member_rows: list[dict],
                  rows: list[dict]) -> dict:
    """Speed of teacher, members and students, interleaved; peak memory of each alone."""
    bc = cfg.bench
    name = cfg.distill.teacher
    targets = {"teacher": "ensemble" if name == "ensemble" else str(rd.member(name))}
    targets.update({f"member:{r['model']}": str(rd.member(r["model"])) for r in member_rows})
    targets.update({f"{r['method']}@{r['pruning_ratio']:g}": r["file"] for r in rows})
    models = {k: (rd.load_ensemble() if t == "ensemble" else load(t)[0])
              for k, t in targets.items()}
    with progress(total=len(models) * bc.rounds, desc="benchmark", quiet=cfg.quiet,
                  unit="model") as bar:
        speed = interleaved(models, batch=bc.batch, seconds=bc.seconds, rounds=bc.rounds,
                            reference="teacher", progress=bar)
    del models
    mem = memory_of(list(targets.values()), run_dir=str(rd.root),
                    threads=torch.get_num_threads(), batch=bc.batch) if bc.memory else \
        [None] * len(targets)
    for (key, _), m, row in zip(targets.items(), mem, [t_row] + member_rows + rows):
        row.update({k: v for k, v in speed["models"][key].items() if k in SPEED_KEYS})
        if m is not None:
            row.update(peak_rss_mb=m["peak_rss_mb"], rss_before_load_mb=m["rss_before_load_mb"])
    return {k: v for k, v in speed.items() if k != "models"}


def evidence(cfg: RunConfig, rd: RunDir, t_row: dict, member_rows: list[dict],
             rows: list[dict]) -> None:
    """95% bootstrap intervals of every row's test metrics, and paired differences from the
    teacher and (students) from fisher_kd at the same ratio, resampling test users."""
    kw = dict(resamples=1000, seed=cfg.seed)
    boots: dict[str, Bootstrap] = {}

    def boot(name) -> Bootstrap:      # each model's resampled metrics, computed once
        if name not in boots:
            boots[name] = bootstrap(rd.load_per_user(name, "test"), **kw)
        return boots[name]

    def name_of(r: dict):
        return r["model"] if r["method"] == "member" else Path(r["file"]).name

    teacher = boot(cfg.distill.teacher)
    t_row["ci95"] = interval_of(teacher)
    guided = {r["pruning_ratio"]: r for r in rows if r["method"] == "fisher_kd"}
    for r in member_rows + rows:
        mine = boot(name_of(r))
        r["ci95"] = interval_of(mine)
        r["paired"] = {"teacher": paired_of(teacher, mine)}
        g = guided.get(r.get("pruning_ratio"))
        if g is not None and g is not r:
            r["paired"]["fisher_kd"] = paired_of(boot(name_of(g)), mine)


def _pick(m: dict) -> dict:
    return {k: m.get(k) for k in ROW_KEYS}


def references(rd: RunDir) -> dict:
    """Levels the retention plot draws as lines: MostPop and the origin ensemble (from the
    ensemble stage) and the peers of `benchmarks/peers.py` when they ran on this split."""
    out = {}
    if rd.teachers_json.is_file():
        t = read_json(rd.teachers_json)
        out["MostPop"] = {"ndcg@10": t["baselines"]["mostpop"]["ndcg@10"]}
        if "origin_ensemble" in t:
            o = t["origin_ensemble"]
            out["origin ensemble"] = {"ndcg@10": o["ndcg@10"], "rmse": o["rmse"]}
    if rd.peers_json.is_file():
        for n, m in read_json(rd.peers_json)["peers"].items():
            if n != "MostPop":
                out[n] = {k: m[k] for k in ("ndcg@10", "rmse") if m.get(k) is not None}
    return out


def origin_params(rd: RunDir) -> int | None:
    """Parameters of the origin report's three members (svd + xdeepfm + autoint) of this run:
    the yardstick of the size targets however large the actual teacher is."""
    if not all(rd.has_member(n) for n in TEACHERS):
        return None
    return sum(int(read_json(rd.member(n).with_suffix(".json"))["params"]) for n in TEACHERS)


def _relative(row: dict, t: dict) -> None:
    row["rmse_retention_pct"] = 100 * t["rmse"] / row["rmse"]
    row["ndcg_retention_pct"] = 100 * row["ndcg@10"] / t["ndcg@10"] if t["ndcg@10"] else None
    row["params_vs_teacher_pct"] = 100 * row["params"] / t["params"]
    if t.get("origin_params"):
        row["params_vs_origin_pct"] = 100 * row["params"] / t["origin_params"]


def choose_best(rows: list[dict], t: dict, rmse_tol: float, ndcg_tol: float
                ) -> tuple[dict | None, str]:
    """The deployable student, chosen on the valid part (the test part only reports).

    Rule: among the students whose valid RMSE is within ``rmse_tol`` and valid NDCG@10
    within ``ndcg_tol`` of the teacher's, take the highest pruning ratio (the smallest size
    class; students of one ratio differ by a few parameters, which must not decide), and
    within it the best valid balance (NDCG@10 retention minus RMSE ratio). When none is
    within tolerance: the best valid balance over all students, ties to the higher ratio.
    """
    if not rows:
        return None, "no student was trained"
    tv = t["valid"]

    def balance(r):
        return r["valid"]["ndcg@10"] / max(tv["ndcg@10"], 1e-12) - r["valid"]["rmse"] / tv["rmse"]

    ok = [r for r in rows if r["valid"]["rmse"] <= (1 + rmse_tol) * tv["rmse"]
          and r["valid"]["ndcg@10"] >= (1 - ndcg_tol) * tv["ndcg@10"]]
    if ok:
        b = max(ok, key=lambda r: (r["pruning_ratio"], balance(r)))
        return b, (f"highest pruning ratio whose valid RMSE is within {rmse_tol:.0%} and valid "
                   f"NDCG@10 within {ndcg_tol:.0%} of the teacher's, best valid balance "
                   f"(NDCG@10 retention - RMSE ratio) within that ratio: {b['method']} at "
                   f"{b['pruning_ratio']:g}")
    b = max(rows, key=lambda r: (balance(r), r["pruning_ratio"]))
    return b, (f"no student is within {rmse_tol:.0%} (RMSE) and {ndcg_tol:.0%} (NDCG@10) of "
               f"the teacher on the valid part; the best valid balance (NDCG@10 retention - "
               f"RMSE ratio) over all students: {b['method']} at {b['pruning_ratio']:g}")


def targets(rows: list[dict], t: dict) -> dict:
    """The retention targets of the origin report, each with the measured test figures
    and whether it is met, and fisher_kd against each baseline at each ratio: the paired
    difference with its 95% interval and a verdict (better / worse only when the interval
    excludes 0, else tie)."""
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
    if t.get("origin_params"):
        # issue 10: near-lossless students, sized against the three origin members
        for share, ndcg_min, rmse_max in ((0.10, 0.97, 1.01), (0.03, 0.93, 1.02)):
            small = [r for r in fk.values() if r["params"] <= share * t["origin_params"]]
            if not small:
                continue
            r = max(small, key=lambda r: r["params"])
            out[f"within_{share * 100:g}pct_of_origin"] = {
                "pruning_ratio": r["pruning_ratio"], "params": r["params"],
                "params_vs_origin_pct": 100 * r["params"] / t["origin_params"],
                f"ndcg_at_least_{ndcg_min * 100:g}pct": r["ndcg@10"] >= ndcg_min * t["ndcg@10"],
                f"rmse_at_most_{rmse_max * 100:g}pct": r["rmse"] <= rmse_max * t["rmse"],
                "ndcg_retention_pct": 100 * r["ndcg@10"] / t["ndcg@10"],
                "rmse_vs_teacher_pct": 100 * r["rmse"] / t["rmse"],
                "rmse": r["rmse"], "ndcg@10": r["ndcg@10"]}
    cmp = {}
    for ratio, r in fk.items():
        for b in rows:
            if b["pruning_ratio"] != ratio or b["method"] == "fisher_kd":
                continue
            entry = {"fisher_kd": [r["rmse"], r["ndcg@10"]], "baseline": [b["rmse"], b["ndcg@10"]]}
            pair = b.get("paired", {}).get("fisher_kd")
            for m, lower in (("rmse", True), ("ndcg@10", False)):
                if pair is not None:     # fisher_kd minus the baseline, with its 95% interval
                    d, lo, hi = pair[m]
                    entry[f"diff_{m}"] = [-d, -hi, -lo]
                    entry[f"verdict_{m}"] = verdict(entry[f"diff_{m}"], lower_is_better=lower)
            cmp[f"{b['method']}@{ratio:g}"] = entry
    out["fisher_kd_vs_baselines"] = cmp
    return out


def save_best(rd: RunDir, best: dict, enc: Encoded) -> str:
    """Copy the chosen student to RUN/models/saved/ with its IDs-and-titles catalogue."""
    model, meta = load(best["file"])
    stem = rd.best_student
    save(model, stem, meta={k: meta.get(k) for k in ("method", "pruning_ratio", "start_params")})
    write_json(rd.catalog_of(stem), {"user_ids": enc.user_ids.tolist(),
                                     "item_ids": enc.item_ids.tolist(), "titles": enc.titles})
    return str(rd.weights(stem))
