"""A stage's errors and Ctrl-C reach the user as one paragraph, not a traceback."""

from __future__ import annotations

import pytest

from pipeline.errors import ThawError, run_main


def test_ctrl_c_in_a_stage_says_what_is_kept_and_exits_130(capsys):
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as caught:
        run_main(interrupted, tensorflow=False)
    assert caught.value.code == 130
    err = capsys.readouterr().err
    assert "interrupted: finished work is kept" in err and "dvc repro" in err
    assert "Traceback" not in err


def test_a_thaw_error_is_its_message_and_status_2(capsys):
    def bad():
        raise ThawError("data.folder 'photos' does not exist")

    with pytest.raises(SystemExit) as caught:
        run_main(bad, tensorflow=False)
    assert caught.value.code == 2
    assert capsys.readouterr().err.strip() == "error: data.folder 'photos' does not exist"
