"""The PAKD sweep: which students to train (`plan`), training one (`train_row`), and the
executors that train them - inline, in worker processes, or shared out over torchrun's
processes - with finished students kept for ``--resume``.

Every (budget, method) student starts from the same dense student and gets the same
epochs and batches; only the criterion and the loss change. With ``prune_from`` dense
(the default) the pruning students with KD start from the trained dense_kd student and
wait for it; the baselines that copy a pruned architecture (scratch, final_kd) start once
their reference (fisher_kd at that budget) has finished. Students are trained by
``workers`` processes at once, each single-threaded: a student's many small steps barely
use a second core, and a student trained on one thread equals one trained on two.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .. import distributed
from ..config import LIGHTWEIGHT, RunConfig
from ..data.encoding import Encoded
from ..errors import PakdError
from ..evaluate import evaluate_kept
from ..models import load, save
from ..prune import criterion as make_criterion
from ..results import StudentRecord, load_marker, write_result
from ..rundir import RunDir, fingerprint
from ..runtime import log, progress, seed_everything
from .budgets import Budget
from .loop import ABLATIONS, AFTER_REFERENCE, METHODS, distill
from .objective import Losses, retention_balance
from .students import from_scratch, make_student, mf_of_size

ROW_KEYS = ("rmse", "mae", "auc", "logloss", "recall@10", "ndcg@10", "ndcg@10_rel4")
REFERENCE = "fisher_kd"     # whose final architecture the scratch baselines copy
DENSE = "dense"             # the budget label of dense_kd


@dataclass(frozen=True)
class Job:
    method: str
    budget: str               # label; DENSE for dense_kd
    target: int | None        # parameters the student may keep (None: not pruned)


@dataclass
class Context:
    """What every student of a sweep shares (handed to worker processes once)."""
    cfg: RunConfig
    rd: RunDir
    enc: Encoded
    signals: object
    teacher_valid: dict
    member_of: dict            # member kind -> its saved stem, for member students


def plan(cfg: RunConfig, budgets: list[Budget], targets: dict[str, int]) -> tuple[list, list]:
    """(jobs that need no reference, longest first - the Fisher methods observe every
    step while pruning - so the workers finish together; jobs that start from or copy
    another's student: those pruned from dense_kd, then the baselines that copy
    fisher_kd's student at their budget). dense_kd is trained whenever a job starts from
    it, and first."""
    dc = cfg.distill
    after = [m for m in dc.methods if m in AFTER_REFERENCE]
    if after and REFERENCE not in dc.methods:
        raise PakdError(f"the {', '.join(after)} baseline(s) copy fisher_kd's final "
                        "architecture: list fisher_kd in --methods")
    per_budget = [m for m in dc.methods if m not in AFTER_REFERENCE and m != "dense_kd"]
    jobs = [Job(m, b.label, targets[b.label]) for m in per_budget for b in budgets]
    if "dense_kd" in dc.methods:
        jobs.append(Job("dense_kd", DENSE, None))
    if dc.ablation is not None and REFERENCE in dc.methods:
        if dc.ablation not in targets:
            raise PakdError(f"--ablation {dc.ablation} is not one of --budgets "
                            f"{','.join(targets)}: give one of them, or none")
        jobs += [Job(m, dc.ablation, targets[dc.ablation]) for m in ABLATIONS]
    slow = {"fisher_kd": 0, "taylor_kd": 0, "lightweight_kd": 1, "magnitude_kd": 2,
            "random_kd": 3, "dense_kd": 4, "fisher_ft": 5}
    warm = [j for j in jobs if from_dense(dc, j)]
    if warm and not dc.dense_from and not any(j.method == "dense_kd" for j in jobs):
        jobs.append(Job("dense_kd", DENSE, None))      # the students they are pruned from
    if warm:
        slow["dense_kd"] = -1
    jobs.sort(key=lambda j: slow.get(j.method, 1 if j.method in ABLATIONS else 9))
    waiting = [j for j in jobs if j in warm] + [Job(m, b.label, targets[b.label])
                                                for b in budgets for m in after]
    return [j for j in jobs if j not in warm], waiting


# pruned with KD from the trained dense student under prune_from dense (fisher_ft learns
# from labels only and lightweight_kd is another student kind: both start fresh)
WARM = ("fisher_kd", "taylor_kd", "magnitude_kd", "random_kd", *ABLATIONS)


def from_dense(dc, job: Job) -> bool:
    return dc.prune_from == "dense" and job.method in WARM


def prune_epochs(dc, target: int | None, dense: int) -> int:
    """Epochs of a student pruned from the ``dense`` one down to ``target`` parameters:
    ``prune_epochs``, times ``prune_stretch`` when it keeps at most ``stretch_below`` of
    them - the more a student loses, the gentler its steps (docs/decisions.md#prune-from)."""
    small = target is not None and target <= dc.stretch_below * dense
    return max(1, round(dc.prune_epochs * (dc.prune_stretch if small else 1.0)))


def reference_job(dc, job: Job, order: list[Job]) -> Job | None:
    """The job whose saved student ``job`` starts from or copies: fisher_kd at its budget
    for the architecture baselines, dense_kd for a student pruned from the dense one."""
    if job.method in AFTER_REFERENCE:
        want = (REFERENCE, job.budget)
    elif from_dense(dc, job):
        want = ("dense_kd", DENSE)
    else:
        return None
    return next((j for j in order if (j.method, j.budget) == want), None)


def losses_of(dc, tasks: frozenset, use_kd: bool) -> Losses:
    return Losses(tasks, dc.kd_rating_weight, dc.kd_ranking_weight, dc.kd_feature_weight,
                  dc.label_loss_weight if use_kd else 1.0, dc.list_random, dc.list_users,
                  dc.label_ranking, dc.kd_list, dc.kd_ranking, dc.kd_top)


def train_student(ctx: Context, job: Job, reference: str | None, callbacks=()):
    """(StudentResult, start size) of one student of the sweep (``callbacks``: more
    training-loop callbacks, `pakd.distill.loop.distill`)."""
    cfg, enc, dc = ctx.cfg, ctx.enc, ctx.cfg.distill
    crit_name, use_kd = METHODS[job.method] if job.method not in ABLATIONS else ("fisher", True)
    tasks = (frozenset(dc.distill_tasks) - {ABLATIONS.get(job.method)} if use_kd
             else frozenset())
    seed_everything(cfg.seed)
    kind = LIGHTWEIGHT if job.method == "lightweight_kd" else dc.student
    student = make_student(cfg, enc, kind, ctx.member_of.get(kind))
    start = student.n_params()
    target = job.target
    if job.method in ("scratch", "final_kd"):
        student, target = from_scratch(load(reference)[0], enc, cfg.seed), None
    elif job.method == "mf_labels":
        return tuned_mf(ctx, job, callbacks), start
    elif from_dense(dc, job):
        fresh, student = student, load(reference)[0]
        if student.kind != fresh.kind or student.arch() != fresh.arch():
            raise PakdError(f"{reference} is a {student.kind} of another architecture than "
                            f"the student settings give ({fresh.kind}): prune a dense student "
                            "of these settings, or give the settings it was trained with")
        dc = dc.model_copy(update={"epochs": prune_epochs(dc, target, student.n_params())})
    gen = torch.Generator().manual_seed(cfg.seed)
    crit = None if crit_name is None else make_criterion(
        crit_name, model=student, gen=gen, balance=dc.fisher_balance or None)
    res = distill(student, enc, ctx.signals, losses=losses_of(dc, tasks, use_kd),
                  settings=dc, criterion=crit, target=target if crit else None,
                  prune_until=dc.prune_until, prune_steps=dc.prune_steps,
                  group_floor=dc.group_floor, teacher_valid=ctx.teacher_valid,
                  relevant_min_rating=cfg.eval.relevant_min_rating, seed=cfg.seed, gen=gen,
                  quiet=cfg.quiet, name=f"{job.method}@{job.budget}", callbacks=callbacks)
    return res, start


MF_L2 = (0.01, 0.05, 0.2)     # the labels-only MF's row L2, chosen on valid per budget


def tuned_mf(ctx: Context, job: Job, callbacks=()):
    """The labels-only plain MF of the budget's size, its row L2 chosen on the valid part
    (by the balance of NDCG@10 and RMSE against the teacher's) from `MF_L2`: a peer of
    equal size as well tuned as the sweep's budget allows."""
    cfg, enc, dc = ctx.cfg, ctx.enc, ctx.cfg.distill
    mean = float(enc.parts["train"].rating.mean())
    tv = ctx.teacher_valid
    best = None
    for l2 in MF_L2:
        seed_everything(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        res = distill(mf_of_size(enc, job.target, mean), enc, ctx.signals,
                      losses=losses_of(dc, frozenset(), False),
                      settings=dc.model_copy(update={"l2": l2}), criterion=None, target=None,
                      prune_until=dc.prune_until, prune_steps=dc.prune_steps,
                      teacher_valid=tv, relevant_min_rating=cfg.eval.relevant_min_rating,
                      seed=cfg.seed, gen=gen, quiet=cfg.quiet,
                      name=f"{job.method}@{job.budget} l2 {l2:g}", callbacks=callbacks)
        v = res.history[res.best_epoch - 1] if res.best_epoch else res.history[-1]
        balance = retention_balance(v["valid_ndcg@10"], v["valid_rmse"], tv)
        if best is None or balance > best[0]:
            best = (balance, l2, res)
    best[2].prune_log = [{"chosen_l2": best[1], "l2_grid": list(MF_L2)}]
    return best[2]


def train_row(ctx: Context, job: Job, reference: str | None) -> tuple[dict, dict]:
    """Train, save and evaluate one student: (its table row, its training curve)."""
    cfg, rd, enc = ctx.cfg, ctx.rd, ctx.enc
    res, start = train_student(ctx, job, reference)
    model = res.model
    stem = rd.student(job.method, job.budget)
    save(model, stem, meta={"method": job.method, "budget": job.budget,
                            "start_params": start, "prune_log": res.prune_log})
    got = evaluate_kept(cfg, rd, enc, model, stem.name)
    params = model.n_params()
    row = {"method": job.method, "model": model.kind, "budget": job.budget,
           "target_params": job.target, "pruning_ratio": 1 - params / start,
           **{k: got["test"].get(k) for k in ROW_KEYS},
           "valid": {k: got["valid"][k] for k in ("rmse", "ndcg@10")}, "params": params,
           "bytes_fp32": 4 * params, "bytes_int8": params,
           "file_bytes": rd.weights(stem).stat().st_size,
           "train_seconds": res.train_seconds, "best_epoch": res.best_epoch,
           "best_epochs": res.best_epochs, "epochs_run": len(res.history),
           "arch": model.arch(), "file": str(stem),
           "reference": None if reference is None else Path(reference).name}
    return row, {"method": job.method, "budget": job.budget, "history": res.history}


def fingerprint_of(cfg: RunConfig, rd: RunDir) -> str:
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
    if cfg.distill.dense_from:
        files = [*files, rd.weights(cfg.distill.dense_from)]
    return fingerprint({"seed": cfg.seed, "distill": dc,
                        "student": cfg.student.model_dump(mode="json"),
                        "lightweight": cfg.lightweight.model_dump(mode="json"),
                        "eval": cfg.eval.model_dump(mode="json")}, files)


def kept_rows(rd: RunDir, jobs: list[Job], fp: str) -> dict[Job, tuple[dict, dict]]:
    """Rows of students finished under fingerprint ``fp`` whose files are all present."""
    out = {}
    for job in jobs:
        stem = rd.student(job.method, job.budget)
        if not (rd.weights(stem).is_file() and rd.per_user(stem.name, "test").is_file()):
            continue
        got = load_marker(rd.row_of(stem), StudentRecord, fp)
        if got is not None:
            got["row"]["file"] = str(stem)          # the run may have been moved since
            out[job] = (got["row"], got["curve"])
    return out


def run_sweep(ctx: Context, jobs: list[Job], waiting: list[Job]) -> list[tuple[dict, dict]]:
    """Every job's (row, curve), in plan order; finished students are kept with their
    fingerprint (``--resume`` reuses them)."""
    cfg, rd = ctx.cfg, ctx.rd
    total = len(jobs) + len(waiting)
    fp = fingerprint_of(cfg, rd)
    done: dict[Job, tuple[dict, dict]] = kept_rows(rd, jobs + waiting, fp) if cfg.resume else {}
    if done:
        log.info("--resume: %d of %d students were finished with these settings and teacher; "
                 "training the other %d", len(done), total, total - len(done))
    todo = [j for j in jobs if j not in done]
    later = [j for j in waiting if j not in done]
    order = jobs + waiting

    def reference(job: Job) -> str | None:
        """The finished reference student's file for a job that starts from or copies one
        (None while it is not finished, and for jobs that need none)."""
        if cfg.distill.dense_from and from_dense(cfg.distill, job):
            return cfg.distill.dense_from
        ref = reference_job(cfg.distill, job, order)
        return done[ref][0]["file"] if ref in done else None

    with progress(total=total, initial=len(done), desc="students",
                  quiet=cfg.quiet or not distributed.is_main(), unit="student") as bar:
        def finished(job: Job, result) -> None:
            done[job] = result
            row = result[0]
            if distributed.is_main():
                write_result(rd.row_of(row["file"]),
                             StudentRecord(fingerprint=fp, row=row, curve=result[1]))
            log.info("%-14s %-6s params %s (%.1f%% removed), test RMSE %.4f, NDCG@10 %.4f "
                     "(%.0fs)", job.method, job.budget, f"{row['params']:,}",
                     100 * row["pruning_ratio"], row["rmse"], row["ndcg@10"],
                     row["train_seconds"])
            bar.update(1)

        workers = _workers(cfg, max(1, len(todo) + len(later)))
        if distributed.world() > 1:
            _over_ranks(ctx, todo, later, finished, reference)
        elif workers <= 1:
            for job in todo + later:      # plan order: every reference before its users
                finished(job, train_row(ctx, job, reference(job)))
        else:
            _in_processes(ctx, todo, later, workers, finished, reference)
    return [done[j] for j in order if j in done]


def _workers(cfg: RunConfig, n_jobs: int) -> int:
    if cfg.distill.workers:
        return min(cfg.distill.workers, n_jobs)
    return max(1, min(torch.get_num_threads(), n_jobs))


def _in_processes(ctx: Context, todo: list[Job], later: list[Job], workers: int, finished,
                  reference) -> None:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    spawn = mp.get_context("spawn")      # fork is unsafe once torch's thread pools exist
    state = (ctx.cfg.model_dump(mode="json"), str(ctx.rd.root), ctx.enc, ctx.signals,
             ctx.teacher_valid, ctx.member_of)
    with ProcessPoolExecutor(workers, mp_context=spawn, initializer=_init_worker,
                             initargs=state) as ex:
        ready = todo + [j for j in later if reference(j) is not None]
        later = [j for j in later if j not in ready]
        pending = {ex.submit(_worker_job, j, reference(j)): j for j in ready}
        while pending:
            finished_now, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished_now:
                job = pending.pop(fut)
                finished(job, fut.result())
                for j in [j for j in later if reference(j) is not None]:
                    later.remove(j)
                    pending[ex.submit(_worker_job, j, reference(j))] = j


def _over_ranks(ctx: Context, todo: list[Job], later: list[Job], finished, reference) -> None:
    """The sweep under torchrun in rounds: the students that need no reference, then those
    whose reference has finished, and so on, each round shared out over the processes
    (every world-th student, in plan order) and gathered to every rank. Each rank saves
    and evaluates the students it trains, as a worker process does; rank 0 writes the
    rows."""
    round_, later = todo, list(later)
    while round_:
        mine = [(job, train_row(ctx, job, reference(job)))
                for job in round_[distributed.rank()::distributed.world()]]
        for job, result in sorted(sum(distributed.gather_all(mine), []),
                                  key=lambda jr: round_.index(jr[0])):
            finished(job, result)
        round_ = [j for j in later if reference(j) is not None]
        later = [j for j in later if j not in round_]


_STATE: dict = {}


def _init_worker(cfg_data: dict, root: str, enc, signals, teacher_valid, member_of) -> None:
    """A sweep worker: one torch thread, logs into the run's log file only."""
    from ..runtime import setup_logging
    torch.set_num_threads(1)
    cfg = RunConfig.model_validate({**cfg_data, "quiet": True})
    rd = RunDir(root)
    setup_logging(True, rd.log)
    _STATE["ctx"] = Context(cfg, rd, enc, signals, teacher_valid, member_of)


def _worker_job(job: Job, reference: str | None):
    return train_row(_STATE["ctx"], job, reference)
