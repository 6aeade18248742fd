"""Recipe `fisher`: the teachers' Fisher information, aggregated and checked.

1. Examples: a seeded sample of train ratings, each with one sampled negative (and of the
   valid and test parts, likewise, for the checks: all of them up to ``check_sample``).
2. Per member: the diagonal Fisher of the rating and ranking objectives (empirical and/or
   true); then, through the ensemble, the ensemble objective, whose gradients reach every
   member.
3. Per member: unit costs, sensitivity, pruning friendliness and top layers per objective
   (`fisher.analysis.summarise`), a plan for ``plan_ratio`` fewer parameters, the predicted
   damage of removing sampled units one at a time against the measured one
   (`fisher.damage.check_units`) and the plan applied physically (`check_plan`).
4. RUN/analysis_results/ensemble_fisher_analysis.json|_summary.md (the analysis),
   movielens_fisher_experiment.json (the record: data, split, settings, timings), plots.
"""
from __future__ import annotations

import time

import torch

from .. import distributed
from ..config import RunConfig
from ..data.encoding import Encoded
from ..errors import PakdError
from ..fisher import analysis as A
from ..fisher.damage import (Examples, LossProbe, check_plan, check_units, loss_gradient,
                             sigma2_of)
from ..fisher.estimate import OBJECTIVES, diagonal_fisher
from ..models.ensemble import Ensemble
from ..prune import Taylor
from ..report.fisher import fisher_markdown, fisher_plots
from ..rundir import RunDir, fingerprint, read_marker, write_json
from ..runtime import log, progress
from ..data import load_encoded
from ..scores import member_scores

CRITERION = ("importance of removing parameters S = 1/2 sum_S F theta^2 (diagonal Fisher as "
             "Hessian, per-example mean loss units)")


EVERY_RANK = True     # under torchrun every process trains (`pakd.recipes.Stage`)


def run(cfg: RunConfig, rd: RunDir, enc: Encoded | None = None) -> dict:
    enc = enc or load_encoded(cfg, rd)
    fc = cfg.fisher
    kinds = ["empirical", "true"] if fc.fisher == "both" else [fc.fisher]
    ens: Ensemble | None = rd.load_ensemble() if rd.ensemble.is_file() else None
    if fc.teacher == "ensemble":
        if ens is None:
            raise PakdError(f"no ensemble in {rd}; run `pakd ensemble --run {rd}` or pick a "
                            "single --fisher-teacher")
        members = {n: m for n, m in ens.members.items() if m.structure()}
        for n in set(ens.members) - set(members):
            log.info("fisher: %s has no prunable structure (closed form); not analysed", n)
    else:
        members = {fc.teacher: ens.members[fc.teacher] if ens is not None and fc.teacher in
                   ens.members else rd.load_member(fc.teacher)[0]}
    focus = list(fc.focus_tasks)
    if "ensemble" in focus and ens is None:
        log.warning("no ensemble: the ensemble objective is skipped")
        focus.remove("ensemble")
    only = None if fc.target_layers == ["all"] else fc.target_layers

    ex = Examples.of_part(enc, "train", fc.sample, cfg.seed + 17)
    vex = Examples.of_part(enc, "valid", fc.check_sample, cfg.seed + 29)
    tex = Examples.of_part(enc, "test", fc.check_sample, cfg.seed + 31)
    fishers, sigma2, timings = estimate(cfg, rd, enc, members, ens, ex, focus, kinds)
    if not distributed.is_main():     # under torchrun every rank estimates; rank 0 analyses
        return {}

    results = {}
    fp = analysis_fingerprint(cfg, rd, members)
    for name, model in members.items():
        kept = _kept_part(rd, name, fp) if cfg.resume else None
        if kept is not None:
            results[name], timings[name]["analysis_seconds"] = kept
            log.info("Fisher %s: analysis kept from an earlier run (--resume)", name)
            continue
        t0 = time.perf_counter()
        cached = member_scores(cfg, rd, name, model, enc) if rd.has_member(name) else None
        parts = {"valid": vex, "test": tex, **({"train": ex} if fc.check_train_sample else {})}
        results[name] = analyse(cfg, enc, name, model, fishers[name], kinds, focus, only,
                                parts, sigma2, ens, cached)
        timings[name]["analysis_seconds"] = time.perf_counter() - t0
        write_json(rd.fisher_part(name), {"fingerprint": fp, "result": results[name],
                                          "seconds": timings[name]["analysis_seconds"]})
        log.info("Fisher %s: analysis and checks %.1fs", name, timings[name]["analysis_seconds"])
    out = {"teacher": fc.teacher, "dataset": cfg.data.dataset, "focus_tasks": focus,
           "fisher": kinds, "criterion": CRITERION, "sigma2": sigma2, "models": results,
           "timings": timings}
    write_json(rd.fisher_json, out)
    exp = {"dataset": cfg.data.dataset, "data": cfg.data.model_dump(), "split": rd.split_summary(),
           "settings": fc.model_dump(), "threads": torch.get_num_threads(), "seed": cfg.seed,
           "timings": timings, "sigma2": sigma2,
           "summary": {n: {"pruning_friendliness": m["pruning_friendliness"],
                           "sensitivity": m["sensitivity"],
                           # out of sample: measured on the test part (headline_part);
                           # absent when no unit was checked (--validate-units 0)
                           "damage_measured_on": m["validation"].get("headline_part"),
                           **{f"spearman_{k}": m["validation"].get(f"spearman_{k}")
                              for k in ("empirical", "true", "taylor", "magnitude")},
                           "beats": m["validation"].get("beats", {})}
                       for n, m in results.items()}}
    write_json(rd.fisher_experiment_json, exp)
    rd.write_text(rd.fisher_md, fisher_markdown(out, experiment=exp))
    fisher_plots(out, rd)
    return out


def analysis_fingerprint(cfg: RunConfig, rd: RunDir, members: dict) -> str:
    """What a member's analysis depends on: the seed, the Fisher and evaluation settings and
    the teachers' files (the ensemble objective reads every member)."""
    files = [rd.weights(rd.member(n)) for n in members if rd.has_member(n)]
    if rd.ensemble.is_file():
        files += [rd.ensemble, *rd.teacher_files("ensemble")]
    return fingerprint({"seed": cfg.seed, "fisher": cfg.fisher.model_dump(mode="json"),
                        "eval": cfg.eval.model_dump(mode="json")}, files)


def _kept_part(rd: RunDir, name: str, fp: str):
    """(analysis, seconds) of a member finished under fingerprint ``fp``, else None."""
    got = read_marker(rd.fisher_part(name), fp)
    return None if got is None else (got["result"], got["seconds"])


def estimate(cfg: RunConfig, rd: RunDir, enc: Encoded, members: dict, ens: Ensemble | None,
             ex: Examples, focus: list[str], kinds: list[str]):
    """Per member {(objective, kind): Fisher per parameter (per-example mean)}, the Gaussian
    variances, and the time of each pass beside one training epoch."""
    fc = cfg.fisher
    n_pos, n_all = int(ex.has_rating.sum()), len(ex)
    norm = {"rating": n_pos, "ranking": n_all, "ensemble": n_all}
    fishers: dict[str, dict] = {m: {} for m in members}
    sigma2, timings = {}, {}
    member_objs = [OBJECTIVES[o] for o in focus if o in ("rating", "ranking")]

    def pass_(model, objectives, s2, desc):
        with progress(total=n_all, desc=desc, quiet=cfg.quiet, unit="ex") as bar:
            acc = diagonal_fisher(model, ex.user, ex.item, ex.y_rating, ex.y_rank,
                                  ex.has_rating, objectives, kinds, sigma2=s2,
                                  mc_samples=fc.mc_samples, batch=fc.batch, seed=cfg.seed,
                                  progress=bar)
        return {key: {k: v / max(1, norm[key[0]]) for k, v in f.items()} for key, f in acc.items()}

    for name, model in members.items():
        sigma2[name] = sigma2_of(model, ex)
        t0 = time.perf_counter()
        if member_objs:
            fishers[name].update(pass_(model, member_objs, sigma2[name], f"Fisher {name}"))
        meta = rd.load_member(name)[1] if rd.has_member(name) else {}
        timings[name] = {"fisher_seconds": time.perf_counter() - t0, "examples": n_all,
                         "epoch_seconds": meta.get("fit", {}).get("epoch_seconds"),
                         "epoch_examples": int(len(enc.parts["train"]) *
                                               (1 + meta.get("train_config", {}).get("negatives", 0)))}
        log.info("Fisher %s: %.1fs for %d examples (one training epoch: %s s)", name,
                 timings[name]["fisher_seconds"], n_all,
                 f"{timings[name]['epoch_seconds']:.1f}" if timings[name]["epoch_seconds"] else "?")
    if "ensemble" in focus:
        sigma2["ensemble"] = sigma2_of(ens, ex)
        t0 = time.perf_counter()
        acc = pass_(ens, [OBJECTIVES["ensemble"]], sigma2["ensemble"], "Fisher ensemble")
        timings["ensemble"] = {"fisher_seconds": time.perf_counter() - t0, "examples": n_all}
        log.info("Fisher ensemble: %.1fs for %d examples", timings["ensemble"]["fisher_seconds"],
                 n_all)
        for key, f in acc.items():
            for name in members:
                prefix = f"members.{name}."
                fishers[name][key] = {k[len(prefix):]: v for k, v in f.items()
                                      if k.startswith(prefix)}
    return fishers, sigma2, timings


def taylor_tables(model, fishers: dict, groups, vex: Examples, sigma2: dict, name: str,
                  ens: Ensemble | None, kind: str) -> dict:
    """{(objective, "taylor"): {(group, unit): predicted change}}: the held-out gradient of
    each objective on the valid part with the ``kind`` Fisher as curvature."""
    out = {}
    for (obj, k), fisher in fishers.items():
        if k != kind:
            continue
        if obj == "ensemble":
            if ens is None:
                continue
            grad = loss_gradient(ens, vex, sigma2["ensemble"], "ensemble",
                                 params=dict(model.named_parameters()))
        else:
            grad = loss_gradient(model, vex, sigma2[name], obj)
        costs = Taylor(grad, fisher).scores(model)
        out[(obj, "taylor")] = {(g.name, u): float(costs[g.name][u]) for g in groups
                                for u in range(g.units)}
    return out


def _primary(focus: list[str], kinds: list[str]) -> tuple[str, str]:
    obj = "ensemble" if "ensemble" in focus else focus[0]
    return obj, ("true" if "true" in kinds else kinds[0])


def analyse(cfg: RunConfig, enc: Encoded, name: str, model, fishers: dict, kinds: list[str],
            focus: list[str], only, parts: dict[str, Examples], sigma2: dict,
            ens: Ensemble | None, base_scores: torch.Tensor | None) -> dict:
    """Everything the report says of one member."""
    fc = cfg.fisher
    groups = [g for g in model.structure()
              if only is None or any(g.name.startswith(o) for o in only)]
    primary = _primary(focus, kinds)
    s = A.summarise(model, fishers, groups, only, fc.friendliness_threshold)
    tables, p_f, p_units = s["tables"], fishers[primary], s["units"][primary]
    tables.update(taylor_tables(model, fishers, groups, parts["valid"], sigma2, name,
                                ens if "ensemble" in focus else None, primary[1]))
    params = [{"name": n, "shape": list(p.shape), "params": int(p.numel()),
               "fisher_trace": float(p_f[n].sum()),
               "importance": float((0.5 * p_f[n] * p.detach().double() ** 2).sum())}
              for n, p in model.named_parameters()]
    group_rows = []
    for g in groups:
        costs = [tables[primary][(g.name, u)] for u in range(g.units)]
        group_rows.append({"name": g.name, "kind": g.kind, "units": g.units,
                           "importance_total": float(sum(costs)),
                           "importance_per_unit": [float(c) for c in costs]})
    plan = A.make_plan(model, p_units, fc.plan_ratio)
    probe = LossProbe(name, parts, sigma2, ens if "ensemble" in focus else None, model)
    validation = check_units(model, probe, A.sample_units(p_units, fc.validate_units, cfg.seed),
                             tables, s["magnitude"], focus=focus, kinds=kinds + ["taylor"],
                             primary=_primary([o for o in focus if o in ("rating", "ranking")
                                               or probe.ens is not None], kinds)[0],
                             quiet=cfg.quiet)
    users = torch.arange(enc.n_users)
    if fc.plan_eval_users and fc.plan_eval_users < enc.n_users:
        g = torch.Generator().manual_seed(cfg.seed + 3)
        users = torch.sort(torch.randperm(enc.n_users, generator=g)[:fc.plan_eval_users]).values
    kind = fc.plan_fisher if fc.plan_fisher in kinds else kinds[0]
    plan_check = check_plan(model, plan["keep"], tables, kind, enc, parts["valid"], sigma2[name],
                            users=users, relevant_min_rating=cfg.eval.relevant_min_rating,
                            base_scores=base_scores)
    plan = {k: v for k, v in plan.items() if k != "keep"}
    plan.update(plan_check)
    prim = s["by_objective"][primary[0]][primary[1]]
    return {
        "params": model.n_params(),
        "primary": {"objective": primary[0], "fisher": primary[1]},
        "sensitivity": prim["sensitivity"],
        "pruning_friendliness": prim["pruning_friendliness"]["score"],
        "pruning_friendliness_detail": prim["pruning_friendliness"],
        "layers": prim["layers"],
        "parameters": params,
        "groups": group_rows,
        "plan": plan,
        "validation": validation,
        "by_objective": s["by_objective"],
    }
