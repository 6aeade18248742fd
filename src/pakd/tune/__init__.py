"""`pakd tune`: a multi-objective Optuna search for the best student under a size or
latency cap, measured on the valid part only.

- `space`: what a trial draws (student kind and dimensions, the budget within the cap, the
  distillation weights, temperature, learning rate, epochs, group floor, criterion) and
  the settings it becomes; sizes of a student (parameters, saved bytes, latency);
- `trial`: one trial - distil, evaluate on the valid part, measure, report each epoch to
  the pruner;
- `study`: the storage, the study and its caps, the pruner, the Pareto front and the
  chosen trial, workers and progress.
The recipe `pakd.recipes.tune` puts them together.
"""
