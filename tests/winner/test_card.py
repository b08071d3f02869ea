"""The card's words: a transferred configuration or a baseline, and a file that failed."""

from __future__ import annotations

from pipeline.winner import card


def test_a_baseline_and_a_transferred_configuration_are_each_worded():
    pixels = {"kind": "linear_pixels", "plan": "softmax regression on raw pixels",
              "learning_rate": 0.007, "epochs": 15, "image_size": None}  # fmt: skip
    text = card.configuration_text(pixels, stored=224)
    assert text == ("softmax regression on raw pixels (a baseline); learning rate 7.00e-03; "
                    "15 epoch(s); input 224 px")  # fmt: skip
    probe = {"kind": "transfer", "strategy": "linear_probe", "plan": "logistic regression",
             "frozen_fraction": 1.0, "head_units": 0, "learning_rate": None, "epochs": 11,
             "image_size": 160, "augmentation": "none"}  # fmt: skip
    worded = card.configuration_text(probe, stored=224)
    assert "(100% of the backbone's parameters frozen); head linear; 11 epoch(s)" in worded
    assert "input 160 px" in worded and "learning rate" not in worded


def test_a_file_that_failed_shows_its_reason_in_the_table():
    files = {"tflite_int8": {"file": "model_int8.tflite", "error": "ConverterError: op X"}}
    (row,) = card.files_table({"files": files})[2:]
    assert row.startswith("| TFLite int8 | `model_int8.tflite` | not written: ConverterError")
