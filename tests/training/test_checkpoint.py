"""The metrics log survives a crash mid-write: a torn last line is dropped, appended lines are fsynced."""

from __future__ import annotations

import json
import os

import pytest

from res2net.training.checkpoint import CheckpointError, append_jsonl, read_jsonl


def test_append_is_one_fsynced_line(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"epoch": 1, "train_loss": 2.5})
    append_jsonl(path, {"epoch": 2, "train_loss": None})
    assert len(synced) == 2
    assert path.read_text() == '{"epoch": 1, "train_loss": 2.5}\n{"epoch": 2, "train_loss": null}\n'
    assert read_jsonl(path) == ([{"epoch": 1, "train_loss": 2.5}, {"epoch": 2, "train_loss": None}], False)


@pytest.mark.parametrize(
    "tail, kept",
    [
        (b'{"epoch": 2, "step": 18, "train_lo', 1),  # torn mid-record: dropped
        (b"\xe2\x82", 1),  # torn inside a multi-byte character
        (b'{"epoch": 2}', 2),  # complete record, only its newline lost: kept
        (b"   ", 1),  # whitespace only
    ],
)
def test_torn_last_line_is_dropped_and_flagged_for_rewrite(tmp_path, caplog, tail, kept):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b'{"epoch": 1}\n' + tail)
    rows, rewrite = read_jsonl(path)
    assert [r["epoch"] for r in rows] == [1, 2][:kept] and rewrite
    assert ("dropping its torn last line" in caplog.text) == (tail.strip() not in (b"", b'{"epoch": 2}'))


def test_damage_before_the_last_line_names_the_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1}\n{"epoch": 2, oops}\n{"epoch": 3}\n')
    with pytest.raises(CheckpointError, match=r"metrics.jsonl:2: not a line of JSON"):
        read_jsonl(path)
    path.write_text("[1, 2]\n" + json.dumps({"epoch": 2}) + "\n")
    with pytest.raises(CheckpointError, match=r"metrics.jsonl:1: expected a JSON object, got list"):
        read_jsonl(path)
    assert read_jsonl(tmp_path / "missing.jsonl") == ([], False)
