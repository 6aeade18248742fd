"""Recipe `tune`: the best student for a size or latency cap, searched on the valid part.

1. Checks before anything is written: the run has its teacher, the cap is not below the
   smallest student the space can make, the storage opens, a study of that name exists
   exactly when ``--resume`` (or ``--final``) says so, and a resumed study keeps its caps.
2. The teacher's signals, once per command, from the split without its test part
   (`pakd.tune.trial.without_test`).
3. The study (`pakd.tune.study`): trials in ``jobs`` processes sharing the storage until
   ``--trials`` or ``--timeout``; the run's own settings are its first trial.
4. The Pareto front (table, figure), the chosen trial and its settings as a YAML file that
   `pakd distill --config` takes.
5. ``--final``: the chosen student trained once with the whole split and the run's default
   settings at the same budget, both on the test part with a paired interval; the tuned
   student saved as an ordinary student (`pakd export`, `pakd serve`).
Outputs: RUN/tune.db (default storage), RUN/analysis_results/tune_front.json|md|png,
tune_chosen.yaml, tune_final.json|md, RUN/models/tuned/.
"""
from __future__ import annotations

import os
import time

import yaml

from ..config import RunConfig
from ..data import load_encoded
from ..data.encoding import Encoded
from ..distill import budgets as B
from ..distill.students import make_student, origin_params
from ..distill.signals import signals_for
from ..distill.sweep import Job, train_student
from ..errors import PakdError
from ..evaluate import evaluate, evaluate_kept
from ..models import save
from ..report.html import write_html
from ..report.tune import final_markdown, front_figure, front_markdown
from ..rundir import RunDir, fingerprint, write_json
from ..runtime import log
from ..scores import check_catalogue_settings, matrix_held, teacher_scores
from ..stats import paired, verdict
from ..tune import study as S
from ..tune.space import (Space, apply, as_settings, bytes_bound, fit_budget, least_model,
                          saved_bytes, settings_of)
from ..tune.trial import Setup, latency_ms, with_temperature, without_test


def run(cfg: RunConfig, rd: RunDir, *, storage: str | None = None, resume: bool = False,
        caps_given: bool = True, final: bool = False, commit=lambda: None) -> dict:
    """Search (or, ``final``, train the chosen student); ``commit`` is called once every
    check has passed, before anything is written (the CLI writes run.yaml there)."""
    S.require()
    tune = cfg.tune
    _check_teacher(cfg, rd)
    if not final and not tune.trials and not tune.timeout:
        raise PakdError("--trials 0 and --timeout 0 would search forever: give a number of "
                        "trials, a time limit, or both")
    enc_full = load_encoded(cfg, rd)
    check_catalogue_settings(cfg, enc_full.n_items, enc_full.n_users)
    enc = without_test(enc_full)
    space = Space.around(tune, cfg, tune_temperature=matrix_held(cfg, enc.n_users, enc.n_items))
    smallest = smallest_students(cfg, enc, space, latency=tune.max_latency_ms is not None
                                 or not caps_given)
    local = storage is None
    url = storage or "sqlite:///" + str(rd.tune_db.resolve())
    where = str(rd.tune_db) if local else S.shown(storage)
    again = resume or final
    if local and again and not rd.tune_db.is_file():
        raise PakdError(f"{rd.tune_db} does not exist: there is no study to "
                        f"{'train --final from' if final else 'resume'}; run pakd tune --run "
                        f"{rd.root} first (or give the --storage it lives in)")
    caps = tune.caps() if caps_given or not again else None
    if caps is not None:
        check_caps(caps, smallest)
    st = S.open_storage(url)
    study = S.find(st, tune.study)
    identity = _identity(cfg, rd)
    if study is None and again:
        raise PakdError(f"no study named {tune.study!r} in {where} to "
                        f"{'train --final from' if final else 'resume'}; drop --resume to start "
                        "it, or give the --study / --storage it lives in")
    if study is not None and not again:
        n = len(study.get_trials(deepcopy=False))
        raise PakdError(f"study {tune.study!r} in {where} already holds {n} trial(s): add "
                        "--resume to continue it, or give --study NAME to start another")
    if study is not None:
        caps = S.check_resumed(study, caps, identity, where)
        check_caps(caps, smallest)
    unit = "bytes" if "max_bytes" in caps else "params"
    cap = caps.get("max_bytes", caps.get("max_params"))
    budget = budget_range(cfg, enc, space, smallest, unit, cap)
    reference = space.reference(cfg, reference_budget(cfg, enc, budget, cap))
    commit()
    if study is None:
        study = S.create(st, tune.study, caps, identity, reference)
        log.info("study %r in %s: %s; objectives valid NDCG@10, valid RMSE, %s", tune.study,
                 where, S.caps_text(caps), S.objective_of(caps))
    elif not final:
        left = S.recover(st, study, reference, local)
        if left:
            log.info("--resume: %d trial(s) left running by a stopped command marked failed "
                     "(they run again)", left)
    t0 = time.perf_counter()
    teacher, scores = teacher_scores(cfg, rd, enc)
    got = evaluate(teacher, enc, "valid", **cfg.eval.kwargs(), scores=scores, per_user=True)
    teacher_valid = {k: got[k] for k in ("rmse", "ndcg@10")}
    signals = signals_for(cfg, teacher, enc, scores)
    del teacher, scores, got
    log.info("teacher signals in %.1fs (once for the whole study)", time.perf_counter() - t0)
    setup = Setup(cfg.model_copy(update={"quiet": True}), str(rd.root), enc, signals,
                  teacher_valid, space, budget, unit, cap, caps, S.objective_of(caps),
                  tune.latency_seconds)
    if not final:
        search(cfg, setup, url, study)
    out = results(cfg, rd, study, caps, teacher_valid, where)
    if final:
        if out.get("chosen") is None:
            raise PakdError(f"study {tune.study!r} has no finished trial within its caps: "
                            "run more trials (pakd tune --resume --trials N) before --final")
        out["final"] = train_final(cfg, rd, enc_full, setup, study, out)
    if rd.report_html.is_file():          # the run's page gets its tuning section
        write_html(rd.root)
    return out


def _check_teacher(cfg: RunConfig, rd: RunDir) -> None:
    name = cfg.distill.teacher
    have = rd.ensemble.is_file() if name == "ensemble" else rd.has_member(name)
    if not have:
        fix = (f"pakd train --run {rd.root} and pakd ensemble --run {rd.root}"
               if name == "ensemble" else f"pakd train --run {rd.root} --models {name}")
        raise PakdError(f"{rd} has no trained teacher ({name}) to distil: run {fix} first (or "
                        "pakd run), then tune")


def _identity(cfg: RunConfig, rd: RunDir) -> dict:
    """What every trial depends on besides its settings: the seed, the teacher and its
    files, and the distillation settings the space does not draw."""
    files = rd.teacher_files(cfg.distill.teacher)
    if cfg.distill.teacher == "ensemble":
        files = [rd.ensemble, *files]
    return {"seed": cfg.seed, "teacher": cfg.distill.teacher,
            "teacher_files": fingerprint({}, files)}


# ----------------------------------------------------------------------------- sizes

def smallest_students(cfg: RunConfig, enc: Encoded, space: Space, latency: bool) -> dict:
    """kind -> the smallest student the space can make of it (narrowest settings, pruned
    to one unit per group and the lowest floor): its parameters, the bytes a cap must allow
    for it (`bytes_bound`: what pruning guarantees; ``saved_bytes`` is what it measures),
    its latency (when a latency cap needs it), and the settings that make it."""
    out = {}
    for kind, s in space.smallest().items():
        dense = make_student(apply(cfg, as_settings(s)), enc)
        small = least_model(dense, s["distill.group_floor"])
        out[kind] = {"params": small.n_params(), "bytes": bytes_bound(dense, small.n_params()),
                     "saved_bytes": saved_bytes(small), "settings": s,
                     "latency_ms": (latency_ms(small, enc.n_users, cfg.tune.latency_seconds)
                                    if latency else None)}
    return out


def check_caps(caps: dict, smallest: dict) -> None:
    """A cap below the smallest student the space can make is refused, naming it."""
    for name, value in caps.items():
        attr = S.CAP_ATTR[name]
        kind, least = min(((k, v) for k, v in smallest.items() if v[attr] is not None),
                          key=lambda kv: kv[1][attr])
        if value < least[attr]:
            s = least["settings"]
            desc = ", ".join(f"{k.split('.')[-1]} {v}" for k, v in s.items()
                             if k != "distill.student")
            unit = {"params": "parameters", "bytes": "bytes", "latency_ms": "ms"}[attr]
            raise PakdError(
                f"{S.CAP_FLAG[name]} {value:g} is below the smallest student this search can "
                f"make: a {kind} ({desc}) pruned to one unit per group keeps "
                f"{least['params']:,} parameters (a cap must allow {least['bytes']:,} bytes "
                f"for it; it saves to {least['saved_bytes']:,})"
                + (f" and ranks a user's catalogue in {least['latency_ms']:.3f} ms"
                   if least["latency_ms"] is not None else "")
                + f". Give {S.CAP_FLAG[name]} {least[attr]:g} {unit} or more, or narrow the "
                "space (--tune-dim, --tune-factors, --tune-kinds)")


def budget_range(cfg: RunConfig, enc: Encoded, space: Space, smallest: dict, unit: str,
                 cap: float | None) -> tuple[int, int]:
    """The budget's range in ``unit``: from the smallest student to the cap (without a size
    cap: to the largest dense student of the space)."""
    lo = min(v[unit] for v in smallest.values())
    if cap is not None:
        return int(lo), int(cap)
    hi = max(make_student(apply(cfg, as_settings(s)), enc).n_params() - 1
             for s in space.largest().values())
    return int(lo), int(max(lo, hi))


def reference_budget(cfg: RunConfig, enc: Encoded, budget: tuple[int, int],
                     cap: float | None) -> int:
    """The first trial's budget: the cap, or without a size cap the run's smallest budget
    (`distill.budgets`) for its own student."""
    if cap is not None:
        return int(cap)
    dense = make_student(cfg, enc)
    origin = origin_params(cfg, enc.schema)
    t = min(B.parse(b).target(dense.n_params(), origin) for b in cfg.distill.budgets)
    return int(min(max(t, budget[0]), budget[1]))


# ----------------------------------------------------------------------------- search

def search(cfg: RunConfig, setup: Setup, url: str, study) -> None:
    """Trials until the study holds ``--trials`` finished ones or ``--timeout`` passes."""
    tune = cfg.tune
    done = len(S.finished(study))
    remaining = max(0, tune.trials - done) if tune.trials else None
    if remaining == 0:
        log.info("study %r holds %d finished trials (--trials %d): nothing to run",
                 tune.study, done, tune.trials)
        return
    timeout = tune.timeout or None
    jobs = tune.jobs or min(2, os.cpu_count() or 1)
    counts = S.shares(remaining, jobs)
    seed = (cfg.seed * 1_000_003 + len(study.get_trials(deepcopy=False))) % 2**31
    deadline = time.perf_counter() + timeout if timeout else None
    log.info("searching: %s%s, %d worker(s)%s", f"{remaining} more trial(s)" if remaining
             else "trials", f" for at most {timeout:.0f}s" if timeout else "", len(counts),
             f" ({done} finished already)" if done else "")
    watch = S.Watch(study, setup.caps, setup.objective, tune.trials or None, deadline,
                    len(counts), tune.rmse_tolerance, cfg.quiet)
    try:
        if len(counts) == 1:
            S.optimize(setup, url, tune.study, n_trials=counts[0], timeout=timeout,
                       seed=seed, callbacks=[watch])
        else:
            S.in_processes(setup, url, tune.study, counts, timeout, seed, watch)
    finally:
        watch.close()


# ----------------------------------------------------------------------------- results

def results(cfg: RunConfig, rd: RunDir, study, caps: dict, teacher_valid: dict,
            where: str) -> dict:
    """The front, the chosen trial and its settings file, written to the run."""
    objective = S.objective_of(caps)
    trials = study.get_trials(deepcopy=False)
    feas = S.complete_feasible(study, caps)
    front = S.pareto(feas)
    chosen, rule = S.choose(feas, cfg.tune.rmse_tolerance)
    rows = []
    for t in trials:
        r = S.row(t, objective)
        r["feasible"] = t.state.name == "COMPLETE" and S.feasible(t, caps)
        rows.append(r)
    states = [t.state.name for t in trials]
    out = {"study": cfg.tune.study, "storage": where, "caps": caps,
           "objectives": ["valid_ndcg@10", "valid_rmse", objective],
           "teacher_valid": teacher_valid,
           "counts": {"complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"),
                      "failed": states.count("FAIL"), "running": states.count("RUNNING"),
                      "infeasible": sum(1 for t in trials if t.state.name == "COMPLETE"
                                        and not S.feasible(t, caps)),
                      "not_trained": sum(1 for t in trials if t.state.name == "PRUNED"
                                         and t.user_attrs.get("reason"))},
           "trials": rows, "front": [t.number for t in front], "rule": rule,
           "chosen": None, "chosen_yaml": None}
    if chosen is not None:
        out["chosen"] = {**next(r for r in rows if r["trial"] == chosen.number)}
        out["chosen_yaml"] = str(rd.tune_chosen)
        rd.write_text(rd.tune_chosen, chosen_yaml(cfg, rd, chosen))
    write_json(rd.tune_front_json, out)
    rd.write_text(rd.tune_front_md, front_markdown(out))
    fig = front_figure(out)
    rd.tune_front_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(rd.tune_front_png, dpi=120)
    import matplotlib.pyplot as plt
    plt.close(fig)
    if chosen is not None:
        log.info("chosen: trial %d, %s", chosen.number, rule)
    return out


def trial_config(cfg: RunConfig, trial) -> RunConfig:
    """The run's settings with a trial's laid over them."""
    return apply(cfg, settings_of(trial.params, int(trial.user_attrs["target_params"])))


def chosen_yaml(cfg: RunConfig, rd: RunDir, trial) -> str:
    """The chosen trial's settings as a file `pakd distill --config` takes: the seed and
    the whole distill, student and lightweight sections (so it does not depend on what the
    run's run.yaml holds later)."""
    tcfg = trial_config(cfg, trial)
    a = trial.user_attrs
    head = (f"# pakd tune: trial {trial.number} of study {cfg.tune.study!r} on {rd.root}\n"
            f"# valid NDCG@10 {trial.values[0]:.6f}, valid RMSE {trial.values[1]:.6f}, "
            f"{a['params']:,} parameters, {a['bytes']:,} bytes, {a['latency_ms']:.3f} ms\n"
            f"# tuned: " + ", ".join(f"{k} {v}" for k, v in sorted(trial.params.items())) + "\n"
            f"# train it: pakd distill --run {rd.root} --config <this file>\n")
    body = {"seed": tcfg.seed, **{k: getattr(tcfg, k).model_dump(mode="json")
                                  for k in ("distill", "student", "lightweight")}}
    return head + yaml.safe_dump(body, sort_keys=False)


# ----------------------------------------------------------------------------- --final

def train_final(cfg: RunConfig, rd: RunDir, enc: Encoded, setup: Setup, study,
                out: dict) -> dict:
    """The chosen student trained once with the whole split, and the run's own settings
    (fisher_kd, its student) at the same budget; both on the test part, the difference
    with its paired interval over test users."""
    chosen = next(t for t in study.get_trials(deepcopy=False)
                  if t.number == out["chosen"]["trial"])
    target = int(chosen.user_attrs["target_params"])
    tcfg = trial_config(cfg, chosen)
    tuned = _train_saved(tcfg, rd, enc, setup, "tuned_student",
                         meta={"study": cfg.tune.study, "trial": chosen.number})
    dcfg = apply(cfg, {"distill.methods": ["fisher_kd"], "distill.ablation": None})
    dense = make_student(dcfg, enc)
    fit = fit_budget(dense, dcfg.distill.group_floor, target, "params", None)
    note = ""
    if fit.target is None or fit.target != target:
        t_def = fit.target if fit.target is not None else fit.dense
        note = (f"The run's own student cannot be pruned to {target:,} parameters (dense "
                f"{fit.dense:,}, smallest {fit.least:,}): it is trained at {t_def:,}.")
        target_def = t_def
    else:
        target_def = target
    dcfg = apply(dcfg, {"distill.budgets": [str(target_def)]})
    default = _train_saved(dcfg, rd, enc, setup, "default_student", meta={"default": True})
    default["note"] = note
    pair = paired(rd.load_per_user("default_student", "test"),
                  rd.load_per_user("tuned_student", "test"), seed=cfg.seed,
                  metrics=("rmse", "ndcg@10"))
    fin = {"study": cfg.tune.study, "trial": chosen.number, "budget": target,
           "chosen_yaml": out["chosen_yaml"], "tuned": tuned, "default": default,
           "paired": {m: {"diff": d, "low": lo, "high": hi,
                          "verdict": verdict([d, lo, hi], lower_is_better=m == "rmse")}
                      for m, (d, lo, hi) in pair.items()},
           "reproduced": {"trial": chosen.values[0], "retrained": tuned["valid"]["ndcg@10"],
                          "difference": abs(chosen.values[0] - tuned["valid"]["ndcg@10"])}}
    write_json(rd.tune_final_json, fin)
    rd.write_text(rd.tune_final_md, final_markdown(fin))
    return fin


def _train_saved(cfg: RunConfig, rd: RunDir, enc: Encoded, setup: Setup, name: str,
                 meta: dict) -> dict:
    """Train the one student ``cfg`` describes, save it as a deployable student (weights,
    config, catalogue) under RUN/models/tuned/, evaluate it on the test and valid parts."""
    dc = cfg.distill
    target = int(B.parse(dc.budgets[0]).value)
    signals = with_temperature(setup.signals, dc.temperature)
    ctx = setup.context(cfg, signals)
    ctx.enc = enc
    res, start = train_student(ctx, Job(dc.methods[0], dc.budgets[0], target), None)
    model = res.model
    stem = rd.tuned(name)
    save(model, stem, meta={"method": dc.methods[0], "budget": dc.budgets[0],
                            "start_params": start, "prune_log": res.prune_log, **meta})
    write_json(rd.catalog_of(stem), {"user_ids": enc.user_ids.tolist(),
                                     "item_ids": enc.item_ids.tolist(), "titles": enc.titles})
    got = evaluate_kept(cfg, rd, enc, model, name)
    keys = ("rmse", "mae", "auc", "ndcg@10", "recall@10")
    return {"kind": model.kind, "method": dc.methods[0], "params": model.n_params(),
            "bytes": rd.weights(stem).stat().st_size,
            "latency_ms": latency_ms(model, enc.n_users, max(cfg.tune.latency_seconds, 0.3)),
            "test": {k: got["test"].get(k) for k in keys},
            "valid": {k: got["valid"].get(k) for k in keys}, "file": str(rd.weights(stem))}
