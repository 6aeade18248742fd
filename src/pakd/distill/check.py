"""Does the criterion PAKD prunes with foresee what removing a unit costs the student?

The Fisher analysis checks the teachers' diagonal estimate (1/2 sum F theta^2). PAKD prunes
something else: the *student*, by the mask-gradient Fisher of its own distillation objective
(`pakd.prune.MaskFisher`). This check takes a trained student and

1. scores every unit by that mask Fisher, accumulated over ``steps`` train steps of the
   objective (labels plus the distillation terms; the feature term is left out - its
   learned projection is not kept with the student), both as PAKD ranks units (each loss
   bucket normalised, weighted by ``balance``) and raw (1/2 F, in loss units), beside
   magnitude;
2. removes each of ``units`` sampled units alone (every group kind represented) and
   measures the change of that objective on the same steps (what the Fisher estimates) and
   of the label loss on the valid and the test part (rating MSE plus the held-out items'
   softmax cross-entropy over the catalogue: what pruning costs on held-out data; the
   test part only reports);
3. correlates predictions with measured changes - Spearman with a bootstrap interval over
   units, and Kendall - pooled and per group kind (units of one kind have one size, so the
   per-kind figures do not measure size). Units whose removal changes nothing and whose
   Fisher is 0 have no path to the objective; they are counted, not correlated.
"""
from __future__ import annotations

import copy
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from ..csr import csr_mask
from ..data.encoding import Encoded
from ..fisher import analysis as A
from ..models.base import RecModel
from ..prune import Magnitude, MaskFisher, UnitMaskFisher, mask_units
from ..runtime import log, progress
from ..train import NegativeSampler
from .objective import Distillation, Losses, sample_step
from .signals import TeacherSignals

CRITERIA = ("fisher", "fisher_raw", "magnitude")
PARTS = ("train", "valid", "test")


def replace_l2(settings):
    """The settings with no row L2: the check measures the objective's loss terms."""
    from types import SimpleNamespace
    return SimpleNamespace(**{k: getattr(settings, k) for k in
                              ("batch_size", "negatives", "epochs", "lr", "weight_decay",
                               "patience")}, l2=0.0)


def valid_label_loss(model: RecModel, enc: Encoded, seen: torch.Tensor,
                     part: str = "valid") -> float:
    """Rating MSE plus the mean softmax cross-entropy of each held-out item over the
    catalogue (the items in ``seen`` left out), on ``part``: the valid part with the
    user's train items seen, or the test part with train and valid seen."""
    v = enc.parts[part]
    if len(v) == 0:
        return 0.0
    with torch.no_grad():
        mse = F.mse_loss(model.predict(v.user, v.item).float(), v.rating.float())
        users, inv = torch.unique(v.user, return_inverse=True)
        lse, pos = torch.empty(len(users)), torch.empty(len(v))
        for s in range(0, len(users), 256):
            u = users[s:s + 256]
            sc = model.score_all(u).float().masked_fill(seen[u], -torch.inf)
            rows = torch.nonzero((inv >= s) & (inv < s + len(u))).flatten()
            pos[rows] = sc[inv[rows] - s, v.item[rows]]
            lse[s:s + len(u)] = torch.logsumexp(sc, 1)
        return float(mse + (lse[inv] - pos).mean())


def _correlations(pts: list[dict], seed: int) -> dict | None:
    """Each criterion's agreement with the measured train, valid and test changes (None
    below three units)."""
    if len(pts) < 3:
        return None
    out = {"units": len(pts)}
    for part in PARTS:
        meas = [p["measured"][part] for p in pts]
        for c in CRITERIA:
            pred = [p["predicted"][c] for p in pts]
            out.update({f"{part}_{k}": v
                        for k, v in A.agreement(pred, meas, c, seed=seed).items()})
    return out


def _criterion_scores(model: RecModel, obj, crit, batches: list, unit_masks: bool) -> dict:
    """The mask Fisher accumulated over the objective's ``batches`` (as PAKD ranks units and
    raw, 1/2 F in loss units) and magnitude, per group; the model left in eval mode."""
    obj.observer = crit
    for s in batches:
        model.zero_grad(set_to_none=True)
        obj.backward(model, s)
        crit.observe(model, obj, s)
    crit.detach()
    model.zero_grad(set_to_none=True)
    model.eval()
    raw = ({k: v for k, v in crit.scores().items()} if unit_masks else
           {k: 0.5 * v / max(1, crit.count) for k, v in crit.sums.items()})
    obj.observer = None
    return {"fisher": crit.scores(), "fisher_raw": raw, "magnitude": Magnitude().scores(model)}


def check_student_criterion(student: RecModel, enc: Encoded, signals: TeacherSignals, *,
                            losses: Losses, settings, balance: list[float] | None,
                            units: int, steps: int, seed: int, quiet: bool = True) -> dict:
    losses = replace(losses, tasks=frozenset(losses.tasks) - {"feature"})
    model = copy.deepcopy(student).train()
    gen = torch.Generator().manual_seed(seed + 104729)
    sampler = NegativeSampler(enc)
    bs = settings.batch_size
    perm = torch.randperm(len(enc.parts["train"]), generator=gen)
    batches = [sample_step(enc, perm[b * bs:(b + 1) * bs], sampler, signals, losses,
                           settings.negatives, gen)
               for b in range(min(steps, -(-len(perm) // bs)))]
    unit_masks = hasattr(model, "mask_gradients")
    crit = UnitMaskFisher() if unit_masks else MaskFisher(balance)
    crit.attach(model)
    plain = replace_l2(settings)
    obj = Distillation(model, enc, signals, losses, plain, gen=gen, teacher_valid={})
    scores = _criterion_scores(model, obj, crit, batches, unit_masks)

    def objective(m: RecModel) -> float:
        with torch.no_grad():
            m.train()
            out = float(sum(obj.loss(m, s)[0] for s in batches))
            m.eval()
            return out

    groups = model.structure()
    every = [{"group": g.name, "kind": g.kind, "unit": u} for g in groups for u in range(g.units)]
    points, base = _removals(model, enc, signals, A.sample_units(every, units, seed), scores,
                             objective, quiet)
    gone = [p for p in points if all(v == 0 for v in p["measured"].values())
            and p["predicted"]["fisher_raw"] == 0]
    live = [p for p in points if p not in gone]

    def correlations(pts: list[dict]) -> dict | None:
        return _correlations(pts, seed)

    return {"model": student.kind, "params": student.n_params(), "steps": len(batches),
            "objective": "labels + " + ", ".join(sorted(losses.tasks)) + " distillation "
            "(the feature term left out)", "balance": balance,
            "units_tested": len(points), "units_without_path": len(gone),
            "share_lowering_valid_loss": (sum(p["measured"]["valid"] < 0 for p in live)
                                          / len(live) if live else None),
            "pooled": correlations(live),
            "by_kind": {k: correlations([p for p in live if p["kind"] == k])
                        for k in sorted({p["kind"] for p in live})},
            "base": base, "points": points}


def _removals(model: RecModel, enc: Encoded, signals: TeacherSignals, tested: list[dict],
              scores: dict, objective, quiet: bool) -> tuple[list[dict], dict]:
    """Each tested unit removed alone: its predicted scores and the measured change of the
    objective (train) and of the label loss on the valid and test parts - (points, the
    unpruned model's losses). The test part only reports how well a criterion chosen on
    valid foresees held-out damage; nothing is chosen on it."""
    groups = {g.name: g for g in model.structure()}
    seen_test = csr_mask(enc.seen(("train", "valid")), enc.n_items)

    def losses(m: RecModel) -> dict:
        return {"train": objective(m), "valid": valid_label_loss(m, enc, signals.seen),
                "test": valid_label_loss(m, enc, seen_test, "test")}
    base, points = losses(model), []
    for t in progress(tested, desc="check student criterion", quiet=quiet, unit="unit"):
        keep = torch.ones(groups[t["group"]].units, dtype=torch.bool)
        keep[t["unit"]] = False
        after = losses(mask_units(copy.deepcopy(model), t["group"], keep))
        points.append({**t, "predicted": {c: float(scores[c][t["group"]][t["unit"]])
                                          for c in CRITERIA},
                       "measured": {k: after[k] - base[k] for k in after}})
    return points, base


def check_dense_kd(cfg, enc: Encoded, signals: TeacherSignals, rows: list[dict]) -> dict | None:
    """`pakd.distill.check` on the dense_kd student: does the criterion PAKD prunes with
    (fisher_kd's objective) foresee what removing each unit costs?"""
    dc = cfg.distill
    dense = next((r for r in rows if r["method"] == "dense_kd"), None)
    if not dc.check_units or dense is None:
        return None
    from ..models import load
    from .sweep import losses_of
    t0 = time.perf_counter()
    out = check_student_criterion(load(dense["file"])[0], enc, signals,
                                  losses=losses_of(dc, frozenset(dc.distill_tasks), True),
                                  settings=dc, balance=dc.fisher_balance or None,
                                  units=dc.check_units, steps=4, seed=cfg.seed,
                                  quiet=cfg.quiet)
    out["seconds"] = time.perf_counter() - t0
    log.info("criterion check on dense_kd: %d units, %.1fs", out["units_tested"], out["seconds"])
    return out
