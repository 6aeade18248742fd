"""PAKD: distil a teacher into a student while pruning the student progressively.

`distill` is the one training loop (`pakd.train.Trainer`) with the distillation objective
(`pakd.distill.objective.Distillation`) and, for the pruning methods, the `Pruning` callback:
the cubic schedule of Zhu & Gupta (2017) in ``prune_steps`` steps over the first
``prune_until`` share of training; at each step the least important units go - by the
method's criterion (`pakd.prune.importance`), through the one greedy selector - physically,
so the model really shrinks, down to a parameter budget that the last step fills to less
than one unit. Once the budget is reached, training continues to recover and the best
validation epoch at that size is kept (early stopping with patience); for a student whose
rating and ranking outputs share no parameters each output keeps its own best epoch (valid
RMSE, valid NDCG@10), else one epoch by NDCG and RMSE retention together. Every method gets
the same epochs, batches and data; only the criterion and the loss change.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..data.encoding import Encoded
from ..errors import PakdError
from ..models.base import RecModel
from ..prune import Importance, Pruner
from ..train import BestEpoch, Progress, Pruning, Trainer, has_product_ranking
from .objective import Distillation, Losses
from .signals import TeacherSignals

# method: (pruning criterion, distils from the teacher?)
METHODS = {
    "fisher_kd": ("fisher", True),
    "taylor_kd": ("taylor", True),   # first + second order, from the same observed steps
    "magnitude_kd": ("magnitude", True),
    "random_kd": ("random", True),
    "fisher_ft": ("fisher", False),
    "scratch": (None, False),        # the reference's final architecture, labels only
    "final_kd": (None, True),        # the reference's final architecture, KD, never pruned
    "mf_labels": (None, False),      # a plain MF of the budget's size, labels only
    "dense_kd": (None, True),        # the unpruned student with KD (one per sweep)
    "lightweight_kd": ("fisher", True),   # the earlier lightweight_model student, PAKD
}
# baselines that copy the final architecture of a pruning method's student (mf_labels is
# sized by the budget itself)
AFTER_REFERENCE = ("scratch", "final_kd")
# the ablation: fisher_kd with one distillation term left out
ABLATIONS = {f"fisher_kd_no_{t}": t for t in ("ranking", "rating", "feature")}



@dataclass
class StudentResult:
    model: RecModel
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    best_epoch: int = 0
    start_params: int = 0
    prune_log: list[dict] = field(default_factory=list)
    best_epochs: dict = field(default_factory=dict)


def distill(student: RecModel, enc: Encoded, signals: TeacherSignals, *, losses: Losses,
            settings, criterion: Importance | None, target: int | None, prune_until: float,
            prune_steps: int, teacher_valid: dict, relevant_min_rating: float | None = None,
            seed: int = 0, gen: torch.Generator | None = None, quiet: bool = True,
            name: str = "", group_floor: float = 0.0, callbacks=()) -> StudentResult:
    """Train ``student`` on ``signals`` (and the labels) with ``settings`` (epochs, batch
    size, lr, weight decay, l2, negatives, patience), pruning it by ``criterion`` down to
    ``target`` parameters (None: no pruning), each group keeping at least ``group_floor``
    of its units. ``gen`` (default: seeded by ``seed``) draws the batches, negatives and
    candidate lists - and the random criterion's scores, when it shares the generator.
    ``callbacks``: more `pakd.train.Callback`s for the loop (after the built-in ones: they
    see each epoch's record with its valid figures - a tuner's early stopping, say)."""
    if losses.catalogue() and not has_product_ranking(student):
        raise PakdError(f"a {student.kind} student ranks pair by pair, so it cannot be scored "
                        "against the catalogue at every step: use --label-ranking softmax and "
                        "--kd-list candidates")
    gen = gen if gen is not None else torch.Generator().manual_seed(seed)
    objective = Distillation(student, enc, signals, losses, settings, gen=gen,
                             teacher_valid=teacher_valid, relevant_min_rating=relevant_min_rating)
    start = student.n_params()
    pruning = target is not None and criterion is not None and target < start
    pruner = Pruner(criterion, start=start, target=target if pruning else start,
                    total_steps=settings.epochs * objective.steps_per_epoch(),
                    until=prune_until, steps=prune_steps,
                    floor=group_floor if pruning else 0.0)
    if pruning:
        pruner.check(student)
    best = BestEpoch(objective.figures, settings.patience, per_task=True)
    trainer = Trainer(student, objective, settings,
                      [Progress(quiet), Pruning(pruner, [objective]), best, *callbacks], name=name)
    fit = trainer.fit(enc)
    return StudentResult(trainer.model.eval(), fit.history, fit.train_seconds, fit.best_epoch,
                         start, pruner.log, fit.best_epochs)
