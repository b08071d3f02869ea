"""Backbones and what is done to them: the registry, model files, cut points, freeze plans,
strategies, the classifier and analytical FLOPs."""
