"""From a diagonal Fisher to the figures users ask for.

Importance of removing parameters theta_S (set to zero) is estimated by the second-order
Taylor expansion with the Fisher standing in for the Hessian and the gradient taken as zero
at a trained optimum (Optimal Brain Damage with a Fisher diagonal, LeCun et al. 1990;
Theis et al. 2018):  delta_loss(S) ~= 1/2 * sum_{i in S} F_i theta_i^2  - the
`DiagonalFisher` criterion of `pakd.prune.importance`. We use it for single parameters,
layers and structural units alike; a unit owns all the entries listed by its `Group`
(incoming and outgoing weights), which is exactly what physical pruning removes. Fisher
values are per example (the sum divided by the sample size), so importances are in units of
the mean loss per example.

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
Friendliness and the plan use the one greedy selector of `pakd.prune.select`.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..models.base import RecModel
from ..prune import DiagonalFisher, Group, Importance, Magnitude, ranked, select, unit_params


def layer_name(param: str) -> str:
    return param.rsplit(".", 1)[0] if param.endswith((".weight", ".bias")) else param


def layer_table(fisher: dict[str, torch.Tensor], sal: dict[str, torch.Tensor],
                only: list[str] | None = None) -> list[dict]:
    layers: dict[str, dict] = {}
    for n, f in fisher.items():
        ln = layer_name(n)
        if only and not any(ln == o or ln.startswith(o) for o in only):
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


def unit_table(model: RecModel, criterion: Importance, groups: list[Group]) -> list[dict]:
    """One row per prunable unit of ``groups``: group, kind, unit, score, parameters owned."""
    scores = criterion.scores(model)
    cnt = unit_params(model, groups)
    return [{"group": g.name, "kind": g.kind, "unit": u, "cost": float(scores[g.name][u]),
             "params": int(cnt[g.name][u])} for g in groups for u in range(g.units)]


def sensitivity(fisher: dict[str, torch.Tensor], units: list[dict]) -> dict:
    trace = float(sum(f.sum() for f in fisher.values()))
    n = sum(int(f.numel()) for f in fisher.values())
    return {"total": trace, "normalised": trace / max(1, n),
            "damage_mass": float(sum(u["cost"] for u in units)), "params": n}


def _scores_of(units: list[dict]) -> dict[str, torch.Tensor]:
    by: dict[str, dict[int, float]] = {}
    for u in units:
        by.setdefault(u["group"], {})[u["unit"]] = u["cost"]
    return {g: torch.tensor([d[k] for k in sorted(d)], dtype=torch.float64) for g, d in by.items()}


def _order(model: RecModel, units: list[dict], per_parameter: bool) -> list[tuple]:
    """`ranked` over the units of the table (groups outside it are never removed)."""
    scores = _scores_of(units)
    full = {g.name: scores.get(g.name, torch.full((g.units,), math.inf, dtype=torch.float64))
            for g in model.structure()}
    return [t for t in ranked(model, full, per_parameter) if t[1] in scores]


def friendliness(model: RecModel, units: list[dict], threshold: float = 0.01) -> dict:
    total_cost = sum(u["cost"] for u in units)
    total = model.n_params()
    sel = select(model, _order(model, units, per_parameter=False),
                 max_cost=threshold * total_cost)
    return {"score": (total - sel.params_left) / max(1, total), "threshold": threshold,
            "removable_params": total - sel.params_left, "estimated_cost": sel.cost}


def make_plan(model: RecModel, units: list[dict], target_ratio: float) -> dict:
    """Remove units, cheapest per parameter first, until ``target_ratio`` of the model's
    parameters are gone (exact count; every group keeps at least its minimum units)."""
    total = model.n_params()
    sel = select(model, _order(model, units, per_parameter=True), need=target_ratio * total)
    groups = {g.name: g for g in model.structure()}
    summary = [{"group": n, "kind": groups[n].kind, "units": groups[n].units,
                "kept": int(k.sum()), "removed": groups[n].units - int(k.sum())}
               for n, k in sel.keep.items()]
    return {"target_ratio": target_ratio, "params": total,
            "params_removed_estimate": total - sel.params_left,
            "predicted_loss_increase": sel.cost, "groups": summary, "keep": sel.keep}


def spearman(a, b) -> float:
    from scipy.stats import spearmanr
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)


def kendall(a, b) -> float:
    from scipy.stats import kendalltau
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(kendalltau(a, b).statistic)


# bootstrap resamples over units of every Spearman interval and paired difference
RESAMPLES = 1000


def spearman_interval(a, b, *, resamples: int = RESAMPLES, seed: int = 0,
                      level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap interval of Spearman's rho, resampling the (prediction,
    measurement) pairs."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3:
        return None
    idx = np.random.default_rng(seed).integers(0, len(a), size=(resamples, len(a)))
    rho = _rho_rows(_centred_ranks(a[idx]), _centred_ranks(b[idx]))
    rho = rho[np.isfinite(rho)]
    if not len(rho):
        return None
    q = (1 - level) / 2 * 100
    return [float(np.percentile(rho, q)), float(np.percentile(rho, 100 - q))]


def _centred_ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata
    r = rankdata(x, axis=1)
    return r - r.mean(1, keepdims=True)


def _rho_rows(ra: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair of centred ranks (NaN where a row is constant)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(1) / np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))


def paired_spearman(a, b, meas, *, resamples: int = RESAMPLES, seed: int = 0,
                    level: float = 0.95) -> list[float] | None:
    """Does predictor ``a`` rank the measured changes better than ``b``? [rho(a, meas) -
    rho(b, meas), low, high, p]: the same units resampled for both (a paired percentile
    bootstrap over units), and the two-sided bootstrap p of "no difference",
    2 min(P(d <= 0), P(d >= 0)), whose resolution is 2 / resamples. None below 3 units."""
    a, b, m = (np.asarray(x, float) for x in (a, b, meas))
    if len(m) < 3:
        return None
    point = spearman(a, m) - spearman(b, m)
    idx = np.random.default_rng(seed).integers(0, len(m), size=(resamples, len(m)))
    rm = _centred_ranks(m[idx])
    d = _rho_rows(_centred_ranks(a[idx]), rm) - _rho_rows(_centred_ranks(b[idx]), rm)
    d = d[np.isfinite(d)]
    if not len(d) or not np.isfinite(point):
        return None
    q = (1 - level) / 2 * 100
    p = min(1.0, 2 * min(float(np.mean(d <= 0)), float(np.mean(d >= 0))))
    return [float(point), float(np.percentile(d, q)), float(np.percentile(d, 100 - q)), p]


def agreement(pred, meas, criterion: str, seed: int = 0) -> dict:
    """How well ``criterion``'s predictions rank the measured changes: ``spearman_<c>``,
    ``kendall_<c>`` and ``spearman_<c>_ci95`` (bootstrap over units)."""
    return {f"spearman_{criterion}": spearman(pred, meas),
            f"kendall_{criterion}": kendall(pred, meas),
            f"spearman_{criterion}_ci95": spearman_interval(pred, meas, seed=seed)}


def sample_units(units: list[dict], n: int, seed: int) -> list[dict]:
    """``n`` units spread across kinds and groups (all when there are fewer): every group
    gets an equal share, and the share a small group cannot fill (an AutoInt layer has 2
    heads) goes to the larger ones, so small groups never leave the sample short of ``n``."""
    if len(units) <= n:
        return list(units)
    rng = np.random.default_rng(seed)
    by_group: dict[str, list[dict]] = {}
    for u in units:
        by_group.setdefault(u["group"], []).append(u)
    take, left = {}, n
    for k, g in enumerate(sorted(by_group, key=lambda g: len(by_group[g]))):
        take[g] = min(len(by_group[g]), math.ceil(left / (len(by_group) - k)))
        left -= take[g]
    out = []
    for g, us in by_group.items():
        idx = rng.choice(len(us), size=take[g], replace=False)
        out += [us[i] for i in sorted(idx)]
    return out


def summarise(model: RecModel, fishers: dict[tuple[str, str], dict], groups: list[Group],
              only: list[str] | None, threshold: float) -> dict:
    """Per (objective, kind): the unit cost table, sensitivity, friendliness and top layers;
    plus the magnitude table (the baseline criterion)."""
    tables, by_obj, units_of = {}, {}, {}
    for (obj, kind), f in fishers.items():
        crit = DiagonalFisher(f)
        units = unit_table(model, crit, groups)
        units_of[(obj, kind)] = units
        tables[(obj, kind)] = {(u["group"], u["unit"]): u["cost"] for u in units}
        by_obj.setdefault(obj, {})[kind] = {
            "sensitivity": sensitivity(f, units),
            "pruning_friendliness": friendliness(model, units, threshold),
            "layers": layer_table(f, crit.saliency(model), only)[:12],
        }
    magnitude = {(u["group"], u["unit"]): u["cost"]
                 for u in unit_table(model, Magnitude(), groups)}
    return {"tables": tables, "by_objective": by_obj, "units": units_of, "magnitude": magnitude}
