"""Training: the one loop (`Trainer`) with its callbacks, and the teachers' supervised
objective (`Supervised`, `fit`). Distillation is another objective of the same loop
(`pakd.distill.objective`); closed-form fits pick their setting on valid (`select`)."""
from .callbacks import AllReduce, BestEpoch, BestKeeper, Checkpoint, Progress, Pruning
from .supervised import (Loss, NegativeSampler, Supervised, backward_step, catalogue_lse, fit,
                         full_softmax_loss, has_product_ranking, l2_rows, ranking_loss,
                         step_losses, validation_loss)
from .trainer import Callback, FitResult, Trainer

__all__ = ["AllReduce", "BestEpoch", "BestKeeper", "Callback", "Checkpoint", "FitResult",
           "Loss", "NegativeSampler", "Progress", "Pruning", "Supervised", "Trainer", "backward_step",
           "catalogue_lse", "fit", "full_softmax_loss", "has_product_ranking", "l2_rows",
           "ranking_loss", "step_losses", "validation_loss"]
