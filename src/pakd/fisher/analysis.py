"""From a diagonal Fisher to the figures users ask for.

Importance of removing parameters theta_S (set to zero) is estimated by the second-order
Taylor expansion with the Fisher standing in for the Hessian and the gradient taken as zero
at a trained optimum (Optimal Brain Damage with a Fisher diagonal, LeCun et al. 1990;
Theis et al. 2018):  delta_loss(S) ~= 1/2 * sum_{i in S} F_i theta_i^2.
We use it for single parameters, layers and structural units alike; a unit owns all the
entries listed by its `Group` (incoming and outgoing weights), which is exactly what physical
pruning removes. Fisher values are per example (the sum divided by the sample size), so
importances are in units of the mean loss per example.

Derived figures (all documented in the report):
- sensitivity: trace of the Fisher (total) and that trace per parameter (normalised), and
  the estimated loss increase from zeroing every prunable unit ("damage mass").
- pruning friendliness, in [0, 1]: the largest share of the member's parameters, removable
  unit by unit from the least important up, whose estimated cost stays below 1% of the total
  estimated cost of all units.
- layers: per parameter tensor group (module), importance, share of the total, and
  importance normalised by the most important layer (the top layer reads 1.0).
- plan: for a target parameter reduction, remove units in order of estimated cost per
  parameter until the target is met; report the predicted loss increase.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..models.base import Group, RecModel
from ..prune.slicing import group_scores, params_after


def layer_name(param: str) -> str:
    return param.rsplit(".", 1)[0] if param.endswith((".weight", ".bias")) else param


def saliency(model: RecModel, fisher: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {n: 0.5 * fisher[n] * params[n].detach().double() ** 2 for n in fisher}


def layer_table(model: RecModel, fisher: dict[str, torch.Tensor], sal: dict[str, torch.Tensor],
                only: list[str] | None = None) -> list[dict]:
    layers: dict[str, dict] = {}
    for n, f in fisher.items():
        ln = layer_name(n)
        if only and not any(ln == o or ln.startswith(o + ".") or ln.startswith(o) for o in only):
            continue
        d = layers.setdefault(ln, {"name": ln, "params": 0, "fisher_trace": 0.0, "importance": 0.0})
        d["params"] += int(f.numel())
        d["fisher_trace"] += float(f.sum())
        d["importance"] += float(sal[n].sum())
    rows = sorted(layers.values(), key=lambda r: -r["importance"])
    total = sum(r["importance"] for r in rows) or 1.0
    top = rows[0]["importance"] if rows and rows[0]["importance"] > 0 else 1.0
    for r in rows:
        r["share"] = r["importance"] / total
        r["normalised"] = r["importance"] / top
    return rows


def unit_table(model: RecModel, sal: dict[str, torch.Tensor], groups: list[Group] | None = None
               ) -> list[dict]:
    """One row per prunable unit: group, kind, unit, estimated cost, parameters owned."""
    groups = groups if groups is not None else model.structure()
    ones = {n: torch.ones_like(v) for n, v in sal.items()}
    rows = []
    for g in groups:
        cost = group_scores(g, sal)
        cnt = group_scores(g, ones)
        for u in range(g.units):
            rows.append({"group": g.name, "kind": g.kind, "unit": u, "cost": float(cost[u]),
                         "params": int(cnt[u])})
    return rows


def magnitude_table(model: RecModel, groups: list[Group] | None = None) -> list[dict]:
    """Baseline criterion: sum of theta^2 over each unit's entries."""
    sq = {n: p.detach().double() ** 2 for n, p in model.named_parameters()}
    return unit_table(model, sq, groups)


def sensitivity(model: RecModel, fisher: dict[str, torch.Tensor], units: list[dict]) -> dict:
    trace = float(sum(f.sum() for f in fisher.values()))
    n = sum(int(f.numel()) for f in fisher.values())
    return {"total": trace, "normalised": trace / max(1, n),
            "damage_mass": float(sum(u["cost"] for u in units)), "params": n}


def _greedy(model: RecModel, order: list[dict], stop) -> tuple[dict, float, int]:
    """Remove units in ``order`` while ``stop(cost_after, params_after)`` is False; every
    group keeps its minimum units. Returns keep masks, cost spent, exact parameters left."""
    groups = {g.name: g for g in model.structure()}
    keep = {n: torch.ones(g.units, dtype=torch.bool) for n, g in groups.items()}
    cost, left = 0.0, model.n_params()
    for u in order:
        g = groups[u["group"]]
        if int(keep[g.name].sum()) - 1 < g.min_units:
            continue
        keep[g.name][u["unit"]] = False
        after = params_after(model, keep)
        if stop(cost + u["cost"], after):
            keep[g.name][u["unit"]] = True
            break
        cost, left = cost + u["cost"], after
    return keep, cost, left


def friendliness(model: RecModel, units: list[dict], threshold: float = 0.01) -> dict:
    total_cost = sum(u["cost"] for u in units)
    total = model.n_params()
    order = sorted(units, key=lambda u: u["cost"])
    _, spent, left = _greedy(model, order, lambda c, p: c > threshold * total_cost)
    return {"score": (total - left) / max(1, total), "threshold": threshold,
            "removable_params": total - left, "estimated_cost": spent}


def make_plan(model: RecModel, units: list[dict], target_ratio: float) -> dict:
    """Remove units, cheapest per parameter first, until ``target_ratio`` of the model's
    parameters are gone (exact count; every group keeps at least its minimum units)."""
    total = model.n_params()
    goal = (1 - target_ratio) * total
    order = sorted(units, key=lambda u: u["cost"] / max(1, u["params"]))
    done = {"reached": False}

    def stop(cost, after):
        if done["reached"]:
            return True
        done["reached"] = after <= goal   # take the unit that reaches the goal, then stop
        return False

    keep, cost, left = _greedy(model, order, stop)
    groups = {g.name: g for g in model.structure()}
    summary = [{"group": n, "kind": groups[n].kind, "units": groups[n].units,
                "kept": int(k.sum()), "removed": groups[n].units - int(k.sum())}
               for n, k in keep.items()]
    return {"target_ratio": target_ratio, "params": total, "params_removed_estimate": total - left,
            "predicted_loss_increase": cost, "groups": summary, "keep": keep}


def spearman(a, b) -> float:
    from scipy.stats import spearmanr
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)


def sample_units(units: list[dict], n: int, seed: int) -> list[dict]:
    """At least ``n`` units spread across kinds and groups (all when there are fewer)."""
    if len(units) <= n:
        return list(units)
    rng = np.random.default_rng(seed)
    by_group: dict[str, list[dict]] = {}
    for u in units:
        by_group.setdefault(u["group"], []).append(u)
    per = max(1, math.ceil(n / len(by_group)))
    out = []
    for g, us in by_group.items():
        idx = rng.choice(len(us), size=min(per, len(us)), replace=False)
        out += [us[i] for i in sorted(idx)]
    return out
