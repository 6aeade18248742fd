"""Structured pruning, in one place: the `Group` a model declares (`group`), the importance
criteria behind one interface (`importance`), the one greedy selector (`select`), the
schedule (`schedule`) and the exact physical removal (`slicing`)."""
from .group import ArchEntry, Group
from .importance import (DiagonalFisher, Importance, Magnitude, MaskFisher, Random, Taylor,
                         UnitMaskFisher, criterion)
from .pruner import Observer, Pruner
from .schedule import cubic, prune_steps
from .select import Selection, floor_units, ranked, select
from .slicing import (ParamCounter, find_group, group_scores, mask_units, params_after,
                      prune_plan, prune_units, unit_params)

__all__ = ["ArchEntry", "Group", "DiagonalFisher", "Importance", "Magnitude", "MaskFisher",
           "Random", "Taylor", "UnitMaskFisher", "criterion", "Observer", "Pruner", "cubic", "prune_steps", "Selection",
           "floor_units", "ranked", "select",
           "ParamCounter", "find_group", "group_scores", "mask_units", "params_after",
           "prune_plan", "prune_units", "unit_params"]
