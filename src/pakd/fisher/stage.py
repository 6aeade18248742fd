"""`pakd fisher`: estimate, aggregate and validate the teachers' Fisher information.

Writes RUN/analysis_results/ensemble_fisher_analysis.json|_summary.md (the analysis) and
movielens_fisher_experiment.json|_summary.md (the experiment record: data, split,
settings, timings), plus plots in RUN/plots/.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics as M
from ..config import RunConfig
from ..data.encoding import Encoded
from ..errors import PakdError
from ..evaluate import predict_ratings
from ..models.base import RecModel
from ..models.ensemble import Ensemble
from ..prune import mask_units, prune_plan
from ..runs import log, progress
from ..teachers import load_ensemble, load_member, member_scores, teacher_dir
from ..train import NegativeSampler
from . import analysis as A
from .estimate import OBJECTIVES, diagonal_fisher


def _examples(enc: Encoded, part: str, n: int, seed: int):
    """Positives of ``part`` (all, or a seeded sample of n) each with one sampled negative."""
    pt = enc.parts[part]
    g = torch.Generator().manual_seed(seed)
    idx = torch.arange(len(pt)) if n <= 0 or n >= len(pt) else torch.sort(
        torch.randperm(len(pt), generator=g)[:n]).values
    u, i, r = pt.user[idx], pt.item[idx], pt.rating[idx]
    neg = NegativeSampler(enc).sample(u, 1, g)[:, 0]
    k = len(u)
    return {"user": torch.cat([u, u]), "item": torch.cat([i, neg]),
            "y_rating": torch.cat([r, torch.zeros(k)]),
            "y_rank": torch.cat([torch.ones(k), torch.zeros(k)]),
            "has_rating": torch.cat([torch.ones(k, dtype=torch.bool), torch.zeros(k, dtype=torch.bool)])}


@torch.no_grad()
def _outputs(model: RecModel, ex: dict, batch: int = 8192):
    model.eval()
    rs, ls = [], []
    for s in range(0, len(ex["user"]), batch):
        o = model(ex["user"][s:s + batch], ex["item"][s:s + batch])
        rs.append(o.rating.double())
        ls.append(o.logit.double())
    return torch.cat(rs), torch.cat(ls)


def _losses(rating, logit, ex, sigma2: float) -> dict:
    """Per-example mean losses of the three objectives (same definitions as the Fisher)."""
    hr = ex["has_rating"]
    nll_r = 0.5 * (rating - ex["y_rating"].double()) ** 2 / sigma2
    bce = F.binary_cross_entropy_with_logits(logit, ex["y_rank"].double(), reduction="none")
    return {"rating": float(nll_r[hr].mean()), "ranking": float(bce.mean()),
            "ensemble": float((nll_r * hr + bce).mean())}


def _sigma2(model: RecModel, ex: dict) -> float:
    r, _ = _outputs(model, ex)
    hr = ex["has_rating"]
    return float(((r[hr] - ex["y_rating"][hr].double()) ** 2).mean())


def _scale(fisher: dict, n: int) -> dict:
    return {k: v / max(1, n) for k, v in fisher.items()}


def _strip(fisher: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in fisher.items() if k.startswith(prefix)}


def stage_fisher(cfg: RunConfig, run_dir: Path, enc: Encoded) -> dict:
    fc = cfg.fisher
    kinds = ["empirical", "true"] if fc.fisher == "both" else [fc.fisher]
    ens: Ensemble | None = None
    if (teacher_dir(run_dir) / "ensemble.json").is_file():
        ens = load_ensemble(run_dir)
    if fc.teacher == "ensemble":
        if ens is None:
            raise PakdError(f"no ensemble in {run_dir}; run `pakd ensemble --run {run_dir}` "
                            "or pick a single --teacher")
        members = dict(ens.members.items())
    else:
        members = {fc.teacher: ens.members[fc.teacher] if ens is not None and fc.teacher in
                   ens.members else load_member(run_dir, fc.teacher)[0]}
    focus = list(fc.focus_tasks)
    if "ensemble" in focus and ens is None:
        log.warning("no ensemble: the ensemble objective is skipped")
        focus.remove("ensemble")
    only = None if fc.target_layers == ["all"] else fc.target_layers

    ex = _examples(enc, "train", fc.sample, cfg.seed + 17)
    vex = _examples(enc, "valid", 0, cfg.seed + 29)
    n_pos, n_all = int(ex["has_rating"].sum()), len(ex["user"])
    norm = {"rating": n_pos, "ranking": n_all, "ensemble": n_all}
    fishers: dict[str, dict] = {m: {} for m in members}
    sigma2, timings = {}, {}
    member_objs = [OBJECTIVES[o] for o in focus if o in ("rating", "ranking")]
    for name, model in members.items():
        sigma2[name] = _sigma2(model, ex)
        t0 = time.perf_counter()
        if member_objs:
            with progress(total=n_all, desc=f"Fisher {name}", quiet=cfg.quiet, unit="ex") as bar:
                acc = diagonal_fisher(model, ex["user"], ex["item"], ex["y_rating"], ex["y_rank"],
                                      ex["has_rating"], member_objs, kinds, sigma2=sigma2[name],
                                      mc_samples=fc.mc_samples, batch=fc.batch, seed=cfg.seed,
                                      progress=bar)
            for (obj, kind), f in acc.items():
                fishers[name][(obj, kind)] = _scale(f, norm[obj])
        meta = load_member(run_dir, name)[1] if (teacher_dir(run_dir) / f"{name}.json").is_file() else {}
        timings[name] = {"fisher_seconds": time.perf_counter() - t0, "examples": n_all,
                         "epoch_seconds": meta.get("fit", {}).get("epoch_seconds"),
                         "epoch_examples": int(len(enc.parts["train"]) *
                                               (1 + meta.get("train_config", {}).get("negatives", 0)))}
        log.info("Fisher %s: %.1fs for %d examples (one training epoch: %s s)", name,
                 timings[name]["fisher_seconds"], n_all,
                 f"{timings[name]['epoch_seconds']:.1f}" if timings[name]["epoch_seconds"] else "?")
    if "ensemble" in focus:
        sigma2["ensemble"] = _sigma2(ens, ex)
        t0 = time.perf_counter()
        with progress(total=n_all, desc="Fisher ensemble", quiet=cfg.quiet, unit="ex") as bar:
            acc = diagonal_fisher(ens, ex["user"], ex["item"], ex["y_rating"], ex["y_rank"],
                                  ex["has_rating"], [OBJECTIVES["ensemble"]], kinds,
                                  sigma2=sigma2["ensemble"], mc_samples=fc.mc_samples,
                                  batch=fc.batch, seed=cfg.seed, progress=bar)
        timings["ensemble"] = {"fisher_seconds": time.perf_counter() - t0, "examples": n_all}
        for (obj, kind), f in acc.items():
            f = _scale(f, norm[obj])
            for name in members:
                fishers[name][(obj, kind)] = _strip(f, f"members.{name}.")

    results = {}
    for name, model in members.items():
        cached = None
        if (teacher_dir(run_dir) / f"{name}.json").is_file():
            cached = member_scores(cfg, run_dir, name, load_member(run_dir, name)[0], enc)
        results[name] = analyse_member(cfg, enc, name, model, fishers[name], kinds, focus, only,
                                       ex, vex, sigma2, ens, base_scores=cached)
    out = {
        "teacher": fc.teacher, "dataset": cfg.data.dataset, "focus_tasks": focus, "fisher": kinds,
        "criterion": "importance of removing parameters S = 1/2 sum_S F theta^2 (diagonal "
                     "Fisher as Hessian, per-example mean loss units)",
        "sigma2": sigma2, "models": results, "timings": timings,
    }
    write_outputs(cfg, run_dir, enc, out)
    return out


def _primary(focus: list[str], kinds: list[str]) -> tuple[str, str]:
    obj = "ensemble" if "ensemble" in focus else focus[0]
    return obj, ("true" if "true" in kinds else kinds[0])


def analyse_member(cfg: RunConfig, enc: Encoded, name: str, model: RecModel, fishers: dict,
                   kinds: list[str], focus: list[str], only, ex, vex, sigma2: dict,
                   ens: Ensemble | None, base_scores: torch.Tensor | None = None) -> dict:
    fc = cfg.fisher
    groups = [g for g in model.structure()
              if only is None or any(g.name.startswith(o) for o in only)]
    primary = _primary(focus, kinds)
    tables, by_obj = {}, {}
    for (obj, kind), f in fishers.items():
        sal = A.saliency(model, f)
        units = A.unit_table(model, sal, groups)
        tables[(obj, kind)] = {(u["group"], u["unit"]): u["cost"] for u in units}
        by_obj.setdefault(obj, {})[kind] = {
            "sensitivity": A.sensitivity(model, f, units),
            "pruning_friendliness": A.friendliness(model, units, fc.friendliness_threshold),
            "layers": A.layer_table(model, f, sal, only)[:12],
        }
        if (obj, kind) == primary:
            p_sal, p_units, p_f = sal, units, f
    magnitude = {(u["group"], u["unit"]): u["cost"] for u in A.magnitude_table(model, groups)}

    params = [{"name": n, "shape": list(p.shape), "params": int(p.numel()),
               "fisher_trace": float(p_f[n].sum()), "importance": float(p_sal[n].sum())}
              for n, p in model.named_parameters()]
    group_rows = []
    for g in groups:
        costs = np.array([tables[primary][(g.name, u)] for u in range(g.units)])
        group_rows.append({"name": g.name, "kind": g.kind, "units": g.units,
                           "importance_total": float(costs.sum()),
                           "importance_per_unit": [float(c) for c in costs]})
    plan = A.make_plan(model, [u for u in p_units], fc.plan_ratio)
    validation = validate(cfg, enc, name, model, tables, magnitude, p_units, focus, kinds, vex,
                          sigma2, ens, ex=ex)
    plan_check = check_plan(cfg, enc, name, model, plan, tables, kinds, vex, sigma2,
                            base_scores=base_scores)
    plan = {k: v for k, v in plan.items() if k != "keep"}
    plan.update(plan_check)
    prim = by_obj[primary[0]][primary[1]]
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
        "by_objective": by_obj,
    }


def validate(cfg: RunConfig, enc: Encoded, name: str, model: RecModel, tables: dict,
             magnitude: dict, units: list[dict], focus: list[str], kinds: list[str], vex: dict, sigma2: dict,
             ens: Ensemble | None, ex: dict | None = None) -> dict:
    """Remove sampled units one at a time; compare measured loss increases with predictions.

    Measured on the valid part (what pruning costs a user) and, with ``ex``, on the train
    sample the Fisher was estimated from (what the Fisher claims to predict): where the two
    disagree, removal changes generalisation (an overfit unit's removal lowers valid loss,
    which a Fisher estimate, never negative, cannot predict)."""
    fc = cfg.fisher
    tested = A.sample_units(units, fc.validate_units, cfg.seed)
    parts = {"valid": vex} if ex is None else {"valid": vex, "train": ex}
    others = {}
    if ens is not None and "ensemble" in focus:
        others = {p: {n: _outputs(m, e) for n, m in ens.members.items() if n != name}
                  for p, e in parts.items()}

    def losses_of(m: RecModel, part: str) -> dict:
        e = parts[part]
        r, lg = _outputs(m, e)
        out = _losses(r, lg, e, sigma2[name])
        if others:
            rr = {n: o[0] for n, o in others[part].items()}
            ll = {n: o[1] for n, o in others[part].items()}
            rr[name], ll[name] = r, lg
            er = ens.combine_ratings({n: rr[n] for n in ens.rating_weights})
            el = ens.combine_scores({n: ll[n] for n in ens.ranking_weights})
            out["ensemble"] = _losses(er, el, e, sigma2["ensemble"])["ensemble"]
        return out

    base = {p: losses_of(model, p) for p in parts}
    points = []
    for u in progress(tested, desc=f"validate {name}", quiet=cfg.quiet, unit="unit"):
        keep = torch.ones(next(g.units for g in model.structure() if g.name == u["group"]),
                          dtype=torch.bool)
        keep[u["unit"]] = False
        masked = mask_units(copy.deepcopy(model), u["group"], keep)
        key = (u["group"], u["unit"])
        predicted = {f"{o}/{k}": t[key] for (o, k), t in tables.items()}
        predicted["magnitude"] = magnitude[key]
        point = {"group": u["group"], "kind": u["kind"], "unit": u["unit"], "predicted": predicted}
        for p in parts:
            got = losses_of(masked, p)
            point["measured" if p == "valid" else f"measured_{p}"] = {
                o: got[o] - base[p][o] for o in got}
        points.append(point)

    def correlations(field: str) -> dict:
        by_obj = {}
        for o in focus:
            if o not in base["valid"]:
                continue
            meas = [p[field][o] for p in points]
            row = {f"spearman_{k}": A.spearman([p["predicted"][f"{o}/{k}"] for p in points], meas)
                   for k in kinds if f"{o}/{k}" in points[0]["predicted"]} if points else {}
            row["spearman_magnitude"] = A.spearman([p["predicted"]["magnitude"] for p in points], meas)
            by_obj[o] = row
        return by_obj

    by_obj = correlations("measured")
    prim = _primary([o for o in focus if o in base["valid"]], kinds)[0]
    top = by_obj.get(prim, {})
    out = {"objective": prim,
           "spearman_empirical": top.get("spearman_empirical"),
           "spearman_true": top.get("spearman_true"),
           "spearman_magnitude": top.get("spearman_magnitude"),
           "groups_tested": len(points),
           "kinds_tested": sorted({p["kind"] for p in points}),
           "share_lowering_valid_loss": (sum(p["measured"][prim] < 0 for p in points) / len(points)
                                         if points else None),
           "base_valid_loss": base["valid"], "by_objective": by_obj, "points": points}
    if "train" in parts:
        out["train_sample"] = {"base_loss": base["train"], "by_objective": correlations("measured_train")}
    return out


def check_plan(cfg: RunConfig, enc: Encoded, name: str, model: RecModel, plan: dict,
               tables: dict, kinds: list[str], vex: dict, sigma2: dict,
               base_scores: torch.Tensor | None = None) -> dict:
    """Apply the plan physically; predicted versus measured change in RMSE and NDCG@10."""
    fc = cfg.fisher
    kind = fc.plan_fisher if fc.plan_fisher in kinds else kinds[0]
    removed = [(g, int(u)) for g, k in plan["keep"].items() for u in torch.nonzero(~k).flatten()]
    base_m = copy.deepcopy(model).float().eval()
    pruned = prune_plan(copy.deepcopy(base_m), plan["keep"]).eval()
    out = {"params_after": pruned.n_params(),
           "params_removed": base_m.n_params() - pruned.n_params(),
           "removed_ratio": 1 - pruned.n_params() / base_m.n_params()}
    # predicted change of the validation losses under each objective's Fisher
    pred = {}
    for obj in ("rating", "ranking", "ensemble"):
        if (obj, kind) in tables:
            pred[obj] = sum(tables[(obj, kind)][key] for key in removed)
    r0, l0 = _outputs(base_m, vex)
    r1, l1 = _outputs(pruned, vex)
    meas0, meas1 = _losses(r0, l0, vex, sigma2[name]), _losses(r1, l1, vex, sigma2[name])
    out["predicted_loss_increase"] = pred
    out["measured_loss_increase"] = {k: meas1[k] - meas0[k] for k in ("rating", "ranking")}
    # RMSE: a Gaussian NLL increase dL means an MSE increase of 2 sigma^2 dL
    te = enc.parts["test"]
    scale = (enc.schema.rating_min, enc.schema.rating_max)
    rm0 = M.rmse(predict_ratings(base_m, te.user, te.item), te.rating, scale)
    rm1 = M.rmse(predict_ratings(pruned, te.user, te.item), te.rating, scale)
    out["rmse_before"], out["rmse_after"] = rm0, rm1
    if "rating" in pred:
        out["rmse_predicted"] = float(np.sqrt(rm0 ** 2 + 2 * sigma2[name] * pred["rating"]))
    users = torch.arange(enc.n_users)
    if fc.plan_eval_users and fc.plan_eval_users < enc.n_users:
        g = torch.Generator().manual_seed(cfg.seed + 3)
        users = torch.sort(torch.randperm(enc.n_users, generator=g)[:fc.plan_eval_users]).values
    from ..evaluate import exclusion_parts, relevant_matrix
    rel = relevant_matrix(enc, "test", cfg.eval.relevant_min_rating)
    exc = enc.seen(exclusion_parts("test"))
    nd = []
    for m, cached in ((base_m, base_scores), (pruned, None)):
        if cached is not None:
            fn = lambda u: cached[u]  # noqa: E731
        else:
            fn = m.score_all
        with torch.inference_mode():
            nd.append(M.topk_metrics(fn, rel, exc, ks=[10], users=users.tolist(),
                                     chunk=16)["ndcg@10"])
    out["ndcg@10_before"], out["ndcg@10_after"] = nd
    out["ndcg_users"] = len(users)
    out["ndcg_note"] = ("the Fisher predicts loss, not NDCG: compare predicted_loss_increase"
                        "['ranking'] with the measured NDCG change")
    return out


# ----------------------------------------------------------------------------- outputs

def write_outputs(cfg: RunConfig, run_dir: Path, enc: Encoded, res: dict) -> None:
    from ..atomic import atomic_write_text
    from ..pipeline import write_json
    from ..report.fisher import fisher_markdown, fisher_plots
    adir = Path(run_dir) / "analysis_results"
    adir.mkdir(parents=True, exist_ok=True)
    write_json(adir / "ensemble_fisher_analysis.json", res)
    atomic_write_text(adir / "ensemble_fisher_analysis_summary.md", fisher_markdown(res))
    split = json.loads((Path(run_dir) / "split.json").read_text()) \
        if (Path(run_dir) / "split.json").is_file() else {}
    exp = {"dataset": cfg.data.dataset, "data": cfg.data.model_dump(), "split": split,
           "settings": cfg.fisher.model_dump(), "threads": torch.get_num_threads(),
           "seed": cfg.seed, "timings": res["timings"], "sigma2": res["sigma2"],
           "summary": {n: {"pruning_friendliness": m["pruning_friendliness"],
                           "sensitivity": m["sensitivity"],
                           "spearman_empirical": m["validation"]["spearman_empirical"],
                           "spearman_true": m["validation"]["spearman_true"],
                           "spearman_magnitude": m["validation"]["spearman_magnitude"]}
                       for n, m in res["models"].items()}}
    write_json(adir / "movielens_fisher_experiment.json", exp)
    atomic_write_text(adir / "movielens_fisher_experiment_summary.md",
                      fisher_markdown(res, experiment=exp))
    fisher_plots(res, Path(run_dir) / "plots")
