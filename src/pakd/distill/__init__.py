"""Pruning-aware knowledge distillation: losses, teacher signals, the loop, the sweep."""
