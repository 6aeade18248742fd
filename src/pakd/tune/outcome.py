"""What a study found, written to the run: every trial's row, the Pareto front and its
figure, the chosen trial (on the valid part) and its settings as a YAML file that
`pakd distill --config` takes."""
from __future__ import annotations

import yaml

from ..config import RunConfig
from ..report.tune import front_figure, front_markdown
from ..rundir import RunDir, write_json
from ..runtime import log
from . import study as S
from .space import apply, settings_of


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
    if tcfg.distill.prune_from == "dense":      # the run's dense student, not one trained anew
        tcfg = apply(tcfg, {"distill.dense_from": str(rd.student("dense_kd", "dense").resolve())})
    a = trial.user_attrs
    head = (f"# pakd tune: trial {trial.number} of study {cfg.tune.study!r} on {rd.root}\n"
            f"# valid NDCG@10 {trial.values[0]:.6f}, valid RMSE {trial.values[1]:.6f}, "
            f"{a['params']:,} parameters, {a['bytes']:,} bytes, {a['latency_ms']:.3f} ms\n"
            f"# tuned: " + ", ".join(f"{k} {v}" for k, v in sorted(trial.params.items())) + "\n"
            f"# train it: pakd distill --run {rd.root} --config <this file>\n")
    body = {"seed": tcfg.seed, **{k: getattr(tcfg, k).model_dump(mode="json")
                                  for k in ("distill", "student", "lightweight")}}
    return head + yaml.safe_dump(body, sort_keys=False)
