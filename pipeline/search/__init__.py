"""The Optuna search: one trial, the coordinator and workers, budget, pruning, studies and
their storage."""
