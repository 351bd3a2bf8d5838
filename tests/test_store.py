"""Records: atomic writes, skipping complete runs, unreadable files, schema migration."""

from __future__ import annotations

import json

import pytest

from clbench import atomic
from clbench import record as record_mod
from clbench.atomic import write_json_atomic
from clbench.errors import ClbenchError
from clbench.store import Store, load_record

CONFIG = {"method": "m", "scenario": "gg", "benchmark": "permuted", "dataset": "synthetic",
          "seed": 0, "tags": []}


def record(status="complete"):
    return {"schema_version": 1, "run_id": "abc123", "status": status, "config": dict(CONFIG)}


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    write_json_atomic(path, {"a": 1})

    class Boom(Exception):
        pass

    def explode(*args, **kwargs):
        raise Boom

    monkeypatch.setattr(atomic.json, "dump", explode)
    with pytest.raises(Boom):
        write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_only_complete_records_count(tmp_path):
    s = Store(tmp_path)
    assert s.complete("abc123") is None
    path = s.write(record("failed"))
    assert s.complete("abc123") is None
    s.write(record())
    assert s.complete("abc123") == path
    path.write_text('{"schema_version": 1, "status": "compl')  # half-written
    assert s.complete("abc123") is None
    (found,) = list(s.records())
    assert found[1] is None and "unreadable" in found[2]


def test_results_path_that_is_a_file_is_refused(tmp_path):
    file = tmp_path / "f"
    file.write_text("x")
    with pytest.raises(ClbenchError, match="is a file"):
        Store(file)


def test_a_complete_record_retires_the_checkpoint_beside_it(tmp_path):
    s = Store(tmp_path)
    failed = s.write(record("failed"))
    checkpoint = failed.with_name("checkpoint.pt")
    checkpoint.write_bytes(b"state")
    s.write(record("failed"))
    assert checkpoint.exists()  # a failed run may still resume
    s.write(record())
    assert not checkpoint.exists()


def test_tags_are_merged(tmp_path):
    s = Store(tmp_path)
    path = s.write(record())
    s.add_tags(path, ["b", "a"])
    assert load_record(path)["config"]["tags"] == ["a", "b"]


def test_schema_migration(tmp_path, monkeypatch):
    old = record()
    old["schema_version"] = 0
    path = tmp_path / "r.json"
    write_json_atomic(path, old)
    with pytest.raises(ClbenchError, match="cannot be migrated"):
        load_record(path)

    def to_v1(rec):
        return {**rec, "schema_version": 1, "migrated": True}

    monkeypatch.setitem(record_mod.MIGRATIONS, 0, to_v1)
    assert load_record(path)["migrated"] is True
    newer = record()
    newer["schema_version"] = 99
    write_json_atomic(path, newer)
    with pytest.raises(ClbenchError, match="newer"):
        load_record(path)
