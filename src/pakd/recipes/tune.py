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

import time

from ..config import RunConfig
from ..data import load_encoded
from ..distill.signals import signals_for
from ..errors import PakdError
from ..evaluate import evaluate
from ..report.html import write_html
from ..rundir import RunDir
from ..runtime import log
from ..scores import check_catalogue_settings, matrix_held, teacher_scores
from ..tune import study as S
from ..tune.final import train_final
from ..tune.outcome import results
from ..tune.search import search
from ..tune.sizes import budget_range, check_caps, reference_budget, smallest_students
from ..tune.inputs import dense_student, identity
from ..tune.space import DENSE, Space
from ..tune.trial import Setup, without_test


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
    dense = dense_student(cfg, rd, enc)
    inputs = identity(cfg, rd, dense)         # hashes the teacher's files: once
    space = Space.around(tune, cfg, tune_temperature=matrix_held(cfg, enc.n_users, enc.n_items),
                         dense=dense is not None)
    smallest = smallest_students(cfg, enc, space, latency=tune.max_latency_ms is not None
                                 or not caps_given)
    local = storage is None
    url = storage or "sqlite:///" + str(rd.tune_db.resolve())
    where = str(rd.tune_db) if local else S.shown(storage)
    st, study, caps = _open_study(cfg, rd, url, where, smallest, caps_given=caps_given,
                                  again=resume or final, final=final, local=local,
                                  identity=inputs)
    unit = "bytes" if "max_bytes" in caps else "params"
    cap = caps.get("max_bytes", caps.get("max_params"))
    budget = budget_range(cfg, enc, space, smallest, unit, cap)
    reference = space.reference(cfg, reference_budget(cfg, enc, budget, cap))
    commit()
    if study is None:
        study = S.create(st, tune.study, caps, inputs, reference)
        log.info("study %r in %s: %s; objectives valid NDCG@10, valid RMSE, %s", tune.study,
                 where, S.caps_text(caps), S.objective_of(caps))
    elif not final:
        left = S.recover(st, study, reference, local)
        if left:
            log.info("--resume: %d trial(s) left running by a stopped command marked failed "
                     "(they run again)", left)
    teacher_valid, signals = _teacher(cfg, rd, enc)
    setup = Setup(cfg.model_copy(update={"quiet": True}), str(rd.root), enc, signals,
                  teacher_valid, space, budget, unit, cap, caps, S.objective_of(caps),
                  tune.latency_seconds, dense if DENSE in space.starts else None)
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


def _open_study(cfg: RunConfig, rd: RunDir, url: str, where: str, smallest: dict, *,
                caps_given: bool, again: bool, final: bool, local: bool, identity: dict):
    """(storage, the study or None for a new one, its caps), refusing before anything is
    written: a study to resume that is not there, a new one whose name is taken, caps
    below the smallest student or other than a resumed study's."""
    tune, what = cfg.tune, "train --final from" if final else "resume"
    if local and again and not rd.tune_db.is_file():
        raise PakdError(f"{rd.tune_db} does not exist: there is no study to {what}; run pakd "
                        f"tune --run {rd.root} first (or give the --storage it lives in)")
    caps = tune.caps() if caps_given or not again else None
    if caps is not None:
        check_caps(caps, smallest)
    st = S.open_storage(url)
    study = S.find(st, tune.study)
    if study is None and again:
        raise PakdError(f"no study named {tune.study!r} in {where} to {what}; drop --resume "
                        "to start it, or give the --study / --storage it lives in")
    if study is not None and not again:
        n = len(study.get_trials(deepcopy=False))
        raise PakdError(f"study {tune.study!r} in {where} already holds {n} trial(s): add "
                        "--resume to continue it, or give --study NAME to start another")
    if study is not None:
        caps = S.check_resumed(study, caps, identity, where)
        check_caps(caps, smallest)
    return st, study, caps


def _teacher(cfg: RunConfig, rd: RunDir, enc) -> tuple[dict, object]:
    """The teacher's valid RMSE and NDCG@10 and its signals, once for the whole study."""
    t0 = time.perf_counter()
    teacher, scores = teacher_scores(cfg, rd, enc)
    got = evaluate(teacher, enc, "valid", **cfg.eval.kwargs(), scores=scores, per_user=True)
    signals = signals_for(cfg, teacher, enc, scores)
    log.info("teacher signals in %.1fs (once for the whole study)", time.perf_counter() - t0)
    return {k: got[k] for k in ("rmse", "ndcg@10")}, signals


def _check_teacher(cfg: RunConfig, rd: RunDir) -> None:
    name = cfg.distill.teacher
    have = rd.ensemble.is_file() if name == "ensemble" else rd.has_member(name)
    if not have:
        fix = (f"pakd train --run {rd.root} and pakd ensemble --run {rd.root}"
               if name == "ensemble" else f"pakd train --run {rd.root} --models {name}")
        raise PakdError(f"{rd} has no trained teacher ({name}) to distil: run {fix} first (or "
                        "pakd run), then tune")
