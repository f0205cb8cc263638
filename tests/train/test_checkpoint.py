"""Checkpoint directories: atomic commit, manifest validation, newest-valid resume choice, pruning."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from colonpipe.train import checkpoint as ck


def fake_checkpoint(root: Path, step: int, *, fingerprint: str = "abc") -> Path:
    target = root / ck.step_name(step)
    tmp = ck.tmp_dir_for(target)
    tmp.mkdir(parents=True)
    (tmp / ck.PROJECTOR_FILE).write_bytes(b"x" * 100)
    ck.write_json_atomic(tmp / ck.TRAINER_STATE, {"global_step": step})
    ck.write_json_atomic(tmp / ck.TRAIN_CONFIG, {"fingerprint": fingerprint})
    ck.write_manifest(tmp)
    return ck.commit_dir(tmp, target)


def test_newest_valid_checkpoint_wins_and_bad_ones_are_skipped(tmp_path, caplog):
    root = tmp_path / "checkpoints"
    for step in (2, 4, 6, 8, 10):
        fake_checkpoint(root, step)
    (root / "step-10" / ck.MANIFEST).unlink()  # killed before the manifest: incomplete
    (root / "step-8" / ck.PROJECTOR_FILE).write_bytes(b"short")  # truncated file
    (root / "step-6" / ck.MANIFEST).write_text("{not json")  # corrupt manifest
    (root / "step-12.tmp").mkdir()  # an unfinished write is never a candidate
    with caplog.at_level(logging.WARNING):
        assert ck.find_latest(root, fingerprint="abc") == root / "step-4"
    text = caplog.text
    assert "step-10: no manifest.json" in text and "step-8: file projector.safetensors has 5 bytes" in text
    assert "step-6: unreadable manifest.json" in text


def test_fingerprint_mismatch_is_skipped(tmp_path):
    fake_checkpoint(tmp_path, 4, fingerprint="other-run")
    fake_checkpoint(tmp_path, 2, fingerprint="abc")
    assert ck.find_latest(tmp_path, fingerprint="abc") == tmp_path / "step-2"
    assert ck.find_latest(tmp_path / "nothing-here") is None


def test_commit_replaces_and_prune_keeps_newest(tmp_path):
    for step in (1, 2, 3):
        fake_checkpoint(tmp_path, step)
    fake_checkpoint(tmp_path, 50, fingerprint="an-older-run")  # must not crowd out this run's
    (tmp_path / "step-9.tmp").mkdir()
    ck.prune(tmp_path, keep=2, fingerprint="abc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-2", "step-3"]
    final = tmp_path / "final"
    for value in (1, 2):  # a second commit replaces the first atomically
        tmp = ck.tmp_dir_for(final)
        tmp.mkdir()
        (tmp / "v.json").write_text(json.dumps(value))
        ck.commit_dir(tmp, final)
    assert json.loads((final / "v.json").read_text()) == 2 and not ck.tmp_dir_for(final).exists()
