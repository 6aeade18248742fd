"""``pakd tune --final``: the chosen student trained once with the whole split beside the
run's own settings at the same budget, both on the test part with a paired interval; the
tuned student saved as an ordinary, deployable student."""
from __future__ import annotations

from ..config import RunConfig
from ..data.encoding import Encoded
from ..distill import budgets as B
from ..distill.students import make_student
from ..distill.sweep import Job, train_student
from ..evaluate import evaluate_kept
from ..models import save
from ..report.tune import final_markdown
from ..rundir import RunDir, write_json
from ..stats import paired, verdict
from .outcome import trial_config
from .space import apply, fit_budget
from .trial import Setup, latency_ms, one_thread, with_temperature


def train_final(cfg: RunConfig, rd: RunDir, enc: Encoded, setup: Setup, study,
                out: dict) -> dict:
    """`_train_final` on one thread, as the trials train (`one_thread`)."""
    with one_thread():
        return _train_final(cfg, rd, enc, setup, study, out)


def _train_final(cfg: RunConfig, rd: RunDir, enc: Encoded, setup: Setup, study,
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
    # the run's own settings: fisher_kd, from its dense student when the run prunes from
    # it and holds it (the pipeline's own student at this budget), else from a fresh start
    dcfg = apply(cfg, {"distill.methods": ["fisher_kd"], "distill.ablation": None,
                       "distill.prune_from": "dense" if cfg.distill.prune_from == "dense"
                       and setup.dense is not None else "init"})
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
    res, start = train_student(ctx, Job(dc.methods[0], dc.budgets[0], target),
                               setup.start_of(cfg))
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
