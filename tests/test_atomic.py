"""Atomic writers: JSON/CSV bytes, and directory swaps that never leave the target missing."""

from __future__ import annotations

import json

import pytest

from colonpipe import atomic


def test_write_json_matches_json_dumps_for_each_option_set(tmp_path):
    obj = {"b": [1, 2.5], "a": "é", "c": None}
    for kwargs in ({}, {"indent": 1, "sort_keys": True}, {"indent": None, "ensure_ascii": True}):
        path = atomic.write_json(tmp_path / "x.json", obj, **kwargs)
        want = json.dumps(obj, **{"indent": 2, "ensure_ascii": False, **kwargs}) + "\n"
        assert path.read_bytes() == want.encode("utf-8")
    with pytest.raises(ValueError, match="bad.json"):
        atomic.write_json(tmp_path / "bad.json", {"x": float("nan")}, allow_nan=False)
    assert not (tmp_path / "bad.json").exists()
    atomic.write_json(tmp_path / "s.json", {"k": "\ud800"})
    assert json.loads((tmp_path / "s.json").read_text()) == {"k": "\ud800"}


def test_write_csv(tmp_path):
    path = atomic.write_csv(tmp_path / "t.csv", ["a", "b"], [[1, "x,y"], [2.5, ""]])
    assert path.read_text() == 'a,b\n1,"x,y"\n2.5,\n'


def test_replace_dir_keeps_the_old_output_until_the_new_is_in_place(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic.staged_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
        assert (target / "old.txt").read_text() == "old"  # still there while the new one is written
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp or .old folder left


def test_a_failed_staged_dir_leaves_the_old_output(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.staged_dir(target) as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("boom")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_replace_dir_puts_the_old_folder_back_when_the_swap_fails(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(OSError):
        atomic.replace_dir(tmp_path / "does-not-exist", target)
    assert (target / "old.txt").read_text() == "old"
