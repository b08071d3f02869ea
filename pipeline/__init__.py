"""Thaw: which pretrained backbone, how much of it frozen, at what cost."""

import os

# TensorFlow's C++ start-up chatter buries the pipeline's own output; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
