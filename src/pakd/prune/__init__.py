"""Structured pruning: physically remove units of a model's groups."""
from .slicing import group_scores, mask_units, params_after, prune_plan, prune_units

__all__ = ["group_scores", "mask_units", "params_after", "prune_plan", "prune_units"]
