"""The search space: what a trial draws and the settings it becomes; a student's sizes.

A trial's parameters are named by the settings they set (``distill.lr``, ``student.dim``),
so the chosen trial becomes a settings file without translation. Two are not settings:
``criterion`` (fisher, taylor or magnitude: the sweep methods fisher_kd, taylor_kd and
magnitude_kd; ``lightweight.criterion`` for the lightweight student, which taylor cannot
prune) and ``budget``, the size the student is pruned to in the unit of the cap -
parameters, or bytes of the saved weights file under ``--max-bytes``. The budget is drawn
within the cap and then fitted to the drawn architecture: at least what it keeps with one
unit per group and the group floor, less than its dense size. An architecture whose
smallest student is over the cap cannot meet it and is not trained.

Where a student starts is drawn too (``distill.prune_from``), when the run holds its
trained dense student (`Space.around`'s ``dense``): ``init``, a fresh student of the drawn
architecture trained for ``distill.epochs`` while pruning, or ``dense``, the run's dense
student pruned and fine-tuned for ``distill.prune_epochs`` - its architecture is the run's,
so it is not drawn. The pipeline's own students start from dense: without this choice the
search could not even hold them.

Every range holds the run's own setting (`Space.around` widens it), so the run's student
is a point of the space: the study's first trial (`Space.reference`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..config import LIGHTWEIGHT, STUDENT, RunConfig
from ..errors import PakdError
from ..models.base import RecModel
from ..prune import Pruner
from ..prune.select import floor_units
from ..prune.slicing import prune_plan

CRITERIA = {"fisher": "fisher_kd", "taylor": "taylor_kd", "magnitude": "magnitude_kd"}
MASKED = ("taylor",)     # criteria that need the tower student's per-example unit masks
TOWER, LIGHT = STUDENT, LIGHTWEIGHT
# (parameter, log scale) of each range, by the kind it belongs to (None: every kind)
INT_RANGES = {TOWER: [("student.dim", True), ("student.rank_dims", True),
                      ("student.rate_dims", True), ("student.buckets", False)],
              LIGHT: [("lightweight.factors", True), ("lightweight.rank_factors", True)],
              None: [("distill.epochs", False)]}
FLOAT_RANGES = {TOWER: [("student.alpha", False)], LIGHT: [("lightweight.item_coverage", False)],
                None: [("distill.lr", True), ("distill.kd_ranking_weight", False),
                       ("distill.kd_rating_weight", False), ("distill.kd_feature_weight", False),
                       ("distill.label_loss_weight", True), ("distill.temperature", True),
                       ("distill.group_floor", False)]}
CHOICES = {TOWER: [("student.mlp", "mlp")], LIGHT: [("lightweight.hidden", "hidden")]}
NOT_SETTINGS = ("criterion", "lightweight.criterion", "budget")
DENSE, INIT = "dense", "init"


def widths(choice: str) -> list[int]:
    """An MLP choice ("none", "64-32") as hidden sizes."""
    return [] if choice == "none" else [int(x) for x in choice.split("-")]


def choice_of(sizes: list[int]) -> str:
    return "-".join(map(str, sizes)) or "none"


@dataclass(frozen=True)
class Space:
    kinds: tuple[str, ...]
    criteria: tuple[str, ...]
    ranges: dict          # parameter -> (low, high)
    choices: dict         # parameter -> tuple of choices
    tune_temperature: bool = True
    starts: tuple[str, ...] = (INIT,)   # where the run's own kind may start
    dense_kind: str | None = None       # the kind of the run's dense student, if it may start

    @classmethod
    def around(cls, tune, cfg: RunConfig, tune_temperature: bool = True,
               dense: bool = False) -> "Space":
        """The space of the ``tune`` section, each range and choice list widened to hold
        the run's own setting (``cfg``); ``dense``: the run holds its trained dense student
        (of ``cfg``'s student kind and architecture), which trials may start from."""
        own = own_settings(cfg)
        starts = tuple(x for x in (INIT, DENSE) if x in tune.starts and (x == INIT or dense))
        if not starts:
            raise PakdError("--tune-starts dense needs the run's trained dense student "
                            "(models/students/dense_kd_dense, of the run's own student "
                            "settings): train it with pakd distill --methods dense_kd, or "
                            "add init to --tune-starts")
        section = {"student.dim": tune.dim, "student.rank_dims": tune.rank_dims,
                   "student.rate_dims": tune.rate_dims, "student.buckets": tune.buckets,
                   "student.alpha": tune.alpha, "lightweight.factors": tune.factors,
                   "lightweight.rank_factors": tune.factors,
                   "lightweight.item_coverage": tune.item_coverage, "distill.lr": tune.lr,
                   "distill.epochs": tune.epochs,
                   "distill.kd_ranking_weight": tune.kd_ranking_weight,
                   "distill.kd_rating_weight": tune.kd_rating_weight,
                   "distill.kd_feature_weight": tune.kd_feature_weight,
                   "distill.label_loss_weight": tune.label_loss_weight,
                   "distill.temperature": tune.temperature,
                   "distill.group_floor": tune.group_floor,
                   "distill.prune_epochs": tune.prune_epochs}
        ranges = {k: (min(lo, own[k]), max(hi, own[k])) for k, (lo, hi) in section.items()}
        choices = {"student.mlp": _with(tune.mlp, own["student.mlp"]),
                   "lightweight.hidden": _with(tune.hidden, own["lightweight.hidden"])}
        kinds = tuple(tune.kinds)
        if LIGHT in kinds and not [c for c in tune.criteria if c not in MASKED]:
            raise PakdError(f"--tune-criteria {','.join(tune.criteria)} cannot prune the "
                            f"{LIGHT} (taylor needs the tower student's unit masks): add "
                            "fisher or magnitude, or leave it out of --tune-kinds")
        dense_kind = (own["distill.student"] if DENSE in starts and own["distill.student"]
                      in kinds else None)
        return cls(kinds, tuple(tune.criteria), ranges, choices, tune_temperature,
                   starts if dense_kind is not None else (INIT,), dense_kind)

    def criteria_of(self, kind: str) -> tuple[str, tuple[str, ...]]:
        """(parameter name, choices) of a kind's pruning criterion."""
        if kind == LIGHT:
            return "lightweight.criterion", tuple(c for c in self.criteria if c not in MASKED)
        return "criterion", self.criteria

    def smallest(self) -> dict[str, dict]:
        """kind -> the settings of its smallest student in the space (narrowest dimensions,
        fewest buckets, no MLP, the lowest group floor)."""
        out = {}
        for kind in self.kinds:
            s = {"distill.student": kind,
                 "distill.group_floor": self.ranges["distill.group_floor"][0]}
            for name, _ in INT_RANGES[kind]:
                s[name] = self.ranges[name][0]
            if kind == LIGHT:
                s["lightweight.item_coverage"] = self.ranges["lightweight.item_coverage"][0]
            for name, _ in CHOICES[kind]:
                s[name] = min(self.choices[name], key=lambda c: sum(widths(c)))
            out[kind] = s
        return out

    def largest(self) -> dict[str, dict]:
        """kind -> the settings of its largest dense student in the space."""
        out = {}
        for kind in self.kinds:
            s = {"distill.student": kind}
            for name, _ in INT_RANGES[kind]:
                s[name] = self.ranges[name][1]
            if kind == LIGHT:
                s["lightweight.item_coverage"] = self.ranges["lightweight.item_coverage"][1]
            for name, _ in CHOICES[kind]:
                s[name] = max(self.choices[name], key=lambda c: sum(widths(c)))
            out[kind] = s
        return out

    def sample(self, trial, budget: tuple[int, int]) -> dict:
        """Draw a trial's parameters (Optuna ``trial``); ``budget``: (low, high) in the cap's
        unit. Parameters of the other kind are not drawn, nor the architecture of a student
        that starts from the run's dense one (a conditional space)."""
        kind = trial.suggest_categorical("distill.student", list(self.kinds))
        crit, choices = self.criteria_of(kind)
        p = {"distill.student": kind, crit: trial.suggest_categorical(crit, list(choices)),
             "budget": trial.suggest_int("budget", budget[0], budget[1], log=budget[0] > 0)}
        if kind == self.dense_kind:
            p["distill.prune_from"] = trial.suggest_categorical("distill.prune_from",
                                                                list(self.starts))
        for name, log, draw in self._drawn(kind, p.get("distill.prune_from", INIT)):
            if draw == "int":
                lo, hi = self.ranges[name]
                p[name] = trial.suggest_int(name, int(lo), int(hi), log=log and lo > 0)
            elif draw == "float":
                lo, hi = self.ranges[name]
                p[name] = trial.suggest_float(name, lo, hi, log=log and lo > 0)
            else:
                p[name] = trial.suggest_categorical(name, list(self.choices[name]))
        return p

    def _drawn(self, kind: str, start: str) -> list[tuple[str, bool, str]]:
        """(parameter, log scale, "int" | "float" | "choice") drawn for a student of
        ``kind`` starting at ``start``: from dense, no architecture, and prune epochs in
        place of epochs."""
        arch = start != DENSE
        epochs = "distill.prune_epochs" if start == DENSE else "distill.epochs"
        out = [(name, log, "int") for name, log in (INT_RANGES[kind] if arch else [])]
        out += [(name, log, "float") for name, log in (FLOAT_RANGES[kind] if arch else [])]
        out += [(epochs if name == "distill.epochs" else name, log, "int")
                for name, log in INT_RANGES[None]]
        out += [(name, log, "float") for name, log in FLOAT_RANGES[None]
                if name != "distill.temperature" or self.tune_temperature]
        out += [(name, False, "choice") for name, _ in (CHOICES.get(kind, []) if arch else [])]
        return out

    def reference(self, cfg: RunConfig, budget: int) -> dict:
        """The run's own settings as the parameters of a trial (its student kind if the
        space has it, fisher pruning), at ``budget``."""
        own = own_settings(cfg)
        kind = own["distill.student"] if own["distill.student"] in self.kinds else self.kinds[0]
        crit, choices = self.criteria_of(kind)
        p = {"distill.student": kind, crit: "fisher" if "fisher" in choices else choices[0],
             "budget": int(budget)}
        if kind == self.dense_kind:
            start = own["distill.prune_from"]
            p["distill.prune_from"] = start if start in self.starts else self.starts[0]
        for name, _, _ in self._drawn(kind, p.get("distill.prune_from", INIT)):
            p[name] = own[name]
        return p


def _with(choices, own: str) -> tuple[str, ...]:
    return tuple(choices) if own in choices else (*choices, own)


def own_settings(cfg: RunConfig) -> dict:
    """The run's values of every setting the space draws (MLPs as choices)."""
    s, lw, dc = cfg.student, cfg.lightweight, cfg.distill
    return {"distill.student": dc.student, "student.dim": s.dim,
            "student.rank_dims": s.rank_dims, "student.rate_dims": s.rate_dims,
            "student.buckets": s.buckets, "student.alpha": s.alpha,
            "student.mlp": choice_of(s.mlp), "lightweight.factors": lw.factors,
            "lightweight.rank_factors": lw.rank_factors,
            "lightweight.item_coverage": lw.item_coverage,
            "lightweight.hidden": choice_of(lw.hidden), "distill.lr": dc.lr,
            "distill.epochs": dc.epochs, "distill.kd_ranking_weight": dc.kd_ranking_weight,
            "distill.kd_rating_weight": dc.kd_rating_weight,
            "distill.kd_feature_weight": dc.kd_feature_weight,
            "distill.label_loss_weight": dc.label_loss_weight,
            "distill.temperature": dc.temperature, "distill.group_floor": dc.group_floor,
            "distill.prune_from": dc.prune_from, "distill.prune_epochs": dc.prune_epochs}


def as_settings(params: dict) -> dict:
    """The settings (dotted path -> value) among a trial's parameters, MLP choices as
    hidden sizes."""
    return {name: widths(v) if name in ("student.mlp", "lightweight.hidden") else v
            for name, v in params.items() if name not in NOT_SETTINGS}


def criterion_of(params: dict) -> str:
    return params.get("criterion") or params["lightweight.criterion"]


def settings_of(params: dict, target: int) -> dict:
    """The settings a trial's parameters set, with the student pruned to ``target``
    parameters: one budget, its criterion's method, no ablation, started where the trial
    drew (a fresh start when it did not draw: the run has no dense student to offer)."""
    return {**as_settings(params), "distill.budgets": [str(int(target))],
            "distill.methods": [CRITERIA[criterion_of(params)]], "distill.ablation": None,
            "distill.prune_from": params.get("distill.prune_from", INIT)}


def apply(cfg: RunConfig, settings: dict) -> RunConfig:
    """``cfg`` with ``settings`` (dotted path -> value) laid over it, validated."""
    data = cfg.model_dump(mode="json")
    for path, v in settings.items():
        d = data
        *parents, last = path.split(".")
        for k in parents:
            d = d[k]
        d[last] = v
    return RunConfig.model_validate(data)


# ----------------------------------------------------------------------------- sizes

def saved_bytes(model: RecModel) -> int:
    """Bytes of the model's saved weights file (`pakd.models.save` writes the same)."""
    from safetensors.torch import save as st_save
    return len(st_save({k: v.detach().contiguous() for k, v in model.state_dict().items()}))


def param_bytes(model: RecModel) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def least_params(model: RecModel, floor: float) -> int:
    """Parameters ``model`` keeps at the least: one unit per group and the floor."""
    n = model.n_params()
    return Pruner(None, start=n, target=n, total_steps=1, until=1.0, steps=1,
                  floor=floor).least_params(model)


def least_model(model: RecModel, floor: float) -> RecModel:
    """``model`` pruned physically to its least (`least_params`): the smallest student its
    architecture can become, measured as it would be saved."""
    groups = model.structure()
    least = floor_units(groups, floor)
    return prune_plan(model, {g.name: torch.arange(g.units) < least[g.name] for g in groups})


@dataclass(frozen=True)
class Fit:
    """How a drawn budget fits an architecture: the parameter target, or why it cannot."""
    target: int | None
    dense: int
    least: int
    cap_target: float
    reason: str = ""


def bytes_bound(model: RecModel, params: int) -> int:
    """Most bytes a student pruned from the dense ``model`` to ``params`` parameters can
    save to: its parameters' bytes plus every byte the dense model holds beside them
    (histories, token tables, row owners), which pruning never grows - it frees a few
    (a removed item row's owner index), so a student comes out a little under it."""
    per = param_bytes(model) / model.n_params()
    return int(math.ceil(saved_bytes(model) - param_bytes(model) + per * params))


def fit_budget(model: RecModel, floor: float, budget: int, unit: str,
               cap: float | None) -> Fit:
    """The parameter target of a dense ``model`` for a ``budget`` in ``unit`` ("params" or
    "bytes") under ``cap`` (same unit; None: no size cap): at least the model's least, below
    its dense size, never over the cap. Bytes become parameters through `bytes_bound`, so a
    student never saves to more than the cap."""
    dense, least = model.n_params(), least_params(model, floor)
    if unit == "bytes":
        per = param_bytes(model) / dense
        other = saved_bytes(model) - param_bytes(model)
        to_params = lambda b: math.floor((b - other) / per + 1e-9)    # noqa: E731
    else:
        to_params = lambda b: int(b)                                   # noqa: E731
    cap_target = math.inf if cap is None else to_params(cap)
    if least > cap_target:
        return Fit(None, dense, least, cap_target,
                   f"its smallest student keeps {least:,} parameters, over the cap "
                   f"({cap_target:,} parameters)")
    if least >= dense:
        return Fit(None, dense, least, cap_target, "it cannot be pruned below its dense size")
    target = min(max(to_params(budget), least), dense - 1, cap_target)
    return Fit(int(target), dense, least, cap_target)

