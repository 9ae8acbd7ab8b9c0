import json

import pytest

from data_prep.files.jsonl_log import JsonlLog, read_jsonl


def test_a_torn_last_line_is_dropped_and_a_bad_middle_line_named(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "x": 1.0}\n{"step": 1, "x": 2.0}\n{"step": 2, "x": 3.')  # killed mid-write
    assert read_jsonl(path) == [{"step": 0, "x": 1.0}, {"step": 1, "x": 2.0}]
    path.write_text('{"step": 0}\n{"step": 1, oops}\n{"step": 2}\n')
    with pytest.raises(ValueError, match=r"metrics\.jsonl:line 2: not valid JSON"):
        read_jsonl(path)


def test_truncate_to_a_checkpoint_offset_logs_each_step_once(tmp_path):
    log = JsonlLog(tmp_path / "metrics.jsonl")
    for step in range(2):
        log.append({"step": step})
    at_checkpoint = log.offset()
    log.append({"step": 2})  # logged after the checkpoint, then killed mid-line
    with log.path.open("a") as f:
        f.write('{"step": 3, "lo')
    log.truncate(at_checkpoint)  # the resume
    for step in (2, 3):
        log.append({"step": step})
    assert [r["step"] for r in read_jsonl(log.path)] == [0, 1, 2, 3]
    assert log.path.read_text().endswith("\n")


def test_truncate_without_offset_drops_only_a_torn_tail(tmp_path):
    log = JsonlLog(tmp_path / "log.jsonl")
    log.append({"step": 1})
    with log.path.open("a") as f:
        f.write('{"st')
    log.truncate()
    assert log.path.read_text() == json.dumps({"step": 1}) + "\n"
    log.truncate(0)
    assert log.path.read_text() == ""


def test_a_disabled_log_writes_nothing(tmp_path):
    log = JsonlLog(tmp_path / "x.jsonl", enabled=False)
    log.append({"step": 0})
    log.append_text("hi\n")
    log.truncate(0)
    assert log.offset() == 0 and not log.path.exists()
