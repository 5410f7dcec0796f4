"""Atomic outputs: a failed write leaves the previous file intact and no temporary behind."""

import json

import pytest

from steerdiff.core.io import atomic_open, write_json


def test_write_json_round_trip_and_failure_keeps_old_version(tmp_path):
    path = tmp_path / "sub" / "summary.json"
    write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    with pytest.raises(RuntimeError):
        with atomic_open(path, "w") as f:
            f.write('{"a": 2, "trunc')
            raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["summary.json"]
