"""The screen: backbones and cuts scored on their frozen features, before anything trains."""
