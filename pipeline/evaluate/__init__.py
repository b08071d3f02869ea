"""Retraining the chosen configurations over seeds and testing once, beside the scratch and
linear baselines and the freeze-depth curve."""
