"""One teacher's Fisher analysis, the library half of the `fisher` stage.

`estimate` runs the diagonal-Fisher passes (each member's own objectives, then the
ensemble objective through the ensemble, split back per member); `analyse` turns one
member's Fishers into what the report says of it: sensitivity and pruning friendliness,
per-parameter and per-group importance, a plan, and the predicted damage checked against
the measured one (`pakd.fisher.damage`).
"""
from __future__ import annotations

import time

import torch

from ..data.encoding import Encoded
from ..models.ensemble import Ensemble
from ..prune import Taylor
from ..runtime import log, progress
from . import analysis as A
from .damage import (Examples, LossProbe, check_plan, check_units, loss_gradient, mask_taylor,
                     sigma2_of)
from .estimate import OBJECTIVES, diagonal_fisher


def estimate(cfg, rd, enc: Encoded, members: dict, ens: Ensemble | None,
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
    """{(objective, "taylor"): {(group, unit): predicted change}}: each objective's
    second-order Taylor estimate on the valid part, in the unit's mask
    (`pakd.fisher.damage.mask_taylor`); a group without mask sites falls back to the
    parameter-space estimate with the ``kind`` Fisher as curvature."""
    out = {}
    for (obj, k), fisher in fishers.items():
        if k != kind or (obj == "ensemble" and ens is None):
            continue
        through = ens if obj == "ensemble" else None
        costs = mask_taylor(model, groups, vex, sigma2[name if through is None else obj], obj,
                            through=through)
        rest = [g for g in groups if g.name not in costs]
        if rest:
            grad = (loss_gradient(ens, vex, sigma2["ensemble"], "ensemble",
                                  params=dict(model.named_parameters()))
                    if through is not None else loss_gradient(model, vex, sigma2[name], obj))
            param = Taylor(grad, fisher).scores(model)
            costs.update({g.name: param[g.name] for g in rest})
        out[(obj, "taylor")] = {(g.name, u): float(costs[g.name][u]) for g in groups
                                for u in range(g.units)}
    return out


def _primary(focus: list[str], kinds: list[str]) -> tuple[str, str]:
    obj = "ensemble" if "ensemble" in focus else focus[0]
    return obj, ("true" if "true" in kinds else kinds[0])


def analyse(cfg, enc: Encoded, name: str, model, fishers: dict, kinds: list[str],
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
               "fisher_trace": float(p_f[n].sum()) if n in p_f else 0.0,   # frozen: none
               "importance": float((0.5 * p_f[n] * p.detach().double() ** 2).sum())
               if n in p_f else 0.0}
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
