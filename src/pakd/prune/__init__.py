"""Structured pruning, in one place: the `Group` a model declares (`group`), the importance
criteria behind one interface (`importance`), the one greedy selector (`select`), the
schedule (`schedule`) and the exact physical removal (`slicing`)."""
from .group import ArchEntry, Group
from .importance import (DiagonalFisher, Importance, Magnitude, MaskFisher, Random, Taylor,
                         criterion)
from .schedule import cubic, prune_steps
from .select import Selection, ranked, select
from .slicing import (ParamCounter, find_group, group_scores, mask_units, params_after,
                      prune_plan, prune_units, unit_params)

__all__ = ["ArchEntry", "Group", "DiagonalFisher", "Importance", "Magnitude", "MaskFisher",
           "Random", "Taylor", "criterion", "cubic", "prune_steps", "Selection", "ranked", "select",
           "ParamCounter", "find_group", "group_scores", "mask_units", "params_after",
           "prune_plan", "prune_units", "unit_params"]
