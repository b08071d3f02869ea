"""Training: the lean loop and its step pool, strategy phases, the activation cache, devices,
precise BatchNorm, pretraining, and the per-backbone run context."""
