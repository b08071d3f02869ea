"""The winner out: the selected configuration as a self-contained Keras model with its
card, and `thaw predict`."""
