"""Checkpoint directories: atomic commit, manifest validation, newest-valid resume choice, pruning."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from colonpipe.model import checkpoint_files as ck


def fake_checkpoint(root: Path, step: int, *, fingerprint: str = "abc") -> Path:
    target = root / ck.step_name(step)
    tmp = ck.tmp_dir_for(target)
    tmp.mkdir(parents=True)
    (tmp / ck.PROJECTOR_FILE).write_bytes(b"x" * 100)
    ck.write_json(tmp / ck.TRAINER_STATE, {"global_step": step})
    ck.write_json(tmp / ck.TRAIN_CONFIG, {"fingerprint": fingerprint})
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


# --------------------------------------------------------------------------- integrity
def _flip_byte(path: Path, offset: int = 10) -> None:
    """Change one byte in place: same size, same mtime granularity, different content."""
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def deepspeed_checkpoint(root: Path, step: int) -> Path:
    """A checkpoint with DeepSpeed's file layout (``deepspeed/<tag>/mp_rank_00_model_states.pt``...)."""
    target = root / ck.step_name(step)
    tmp = ck.tmp_dir_for(target)
    state = tmp / ck.DEEPSPEED_DIR / "state"
    state.mkdir(parents=True)
    (state / "mp_rank_00_model_states.pt").write_bytes(bytes(range(256)) * 4)
    (state / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(b"o" * 512)
    (tmp / ck.PROJECTOR_FILE).write_bytes(b"p" * 64)
    ck.write_json(tmp / ck.TRAINER_STATE, {"global_step": step})
    ck.write_json(tmp / ck.TRAIN_CONFIG, {"fingerprint": "abc"})
    ck.write_manifest(tmp)
    return ck.commit_dir(tmp, target)


def test_manifest_records_every_files_sha256(tmp_path):
    path = deepspeed_checkpoint(tmp_path, 2)
    files = json.loads((path / ck.MANIFEST).read_text())["files"]
    on_disk = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() and p.name != ck.MANIFEST)
    assert sorted(files) == on_disk
    for rel, entry in files.items():
        data = (path / rel).read_bytes()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert ck.check_dir(path) is None


def test_a_same_size_tampered_deepspeed_file_is_refused_and_set_aside(tmp_path, caplog):
    for step in (2, 4):
        deepspeed_checkpoint(tmp_path, step)
    pickle = tmp_path / "step-4" / "deepspeed" / "state" / "mp_rank_00_model_states.pt"
    _flip_byte(pickle)
    assert ck.check_dir(tmp_path / "step-4", verify=False) is None  # sizes alone cannot tell
    problem = ck.check_dir(tmp_path / "step-4")
    assert problem == ("file deepspeed/state/mp_rank_00_model_states.pt does not match its sha256 in "
                       "manifest.json (changed after it was written)")
    with pytest.raises(ck.CheckpointError, match=r"step-4: refusing to load: file deepspeed/state/mp_rank_00"):
        ck.verify_dir(tmp_path / "step-4")
    with caplog.at_level(logging.ERROR):
        assert ck.find_latest(tmp_path, fingerprint="abc", set_aside=True) == tmp_path / "step-2"
    assert "mp_rank_00_model_states.pt does not match its sha256" in caplog.text
    assert [s for s, _ in ck.list_steps(tmp_path)] == [2]  # never a resume candidate again ...
    assert (tmp_path / "step-4.rejected" / "deepspeed" / "state" / pickle.name).is_file()  # ... but kept
    _flip_byte(tmp_path / "step-2" / ck.PROJECTOR_FILE)
    assert ck.find_latest(tmp_path, fingerprint="abc", set_aside=True) is None  # nothing verifies: step 0


def test_unlisted_files_a_loader_could_read_are_refused(tmp_path):
    path = deepspeed_checkpoint(tmp_path, 2)
    (path / "README.txt").write_text("notes")  # never read by a loader: allowed
    assert ck.check_dir(path) is None
    (path / "deepspeed" / "state" / "zero_pp_rank_1_mp_rank_00_optim_states.pt").write_bytes(b"evil")
    assert "zero_pp_rank_1_mp_rank_00_optim_states.pt is not in manifest.json" in ck.check_dir(path)
    (path / "deepspeed" / "state" / "zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink()
    (path / "extra.bin").write_bytes(b"evil")
    assert "file extra.bin is not in manifest.json" in ck.check_dir(path)


def test_a_manifest_without_hashes_cannot_be_verified(tmp_path):
    path = deepspeed_checkpoint(tmp_path, 2)
    manifest = json.loads((path / ck.MANIFEST).read_text())
    legacy = {"files": {rel: entry["size"] for rel, entry in manifest["files"].items()}}  # the old format
    (path / ck.MANIFEST).write_text(json.dumps(legacy))
    assert ck.check_dir(path, verify=False) is None
    assert "manifest.json records no sha256 for" in ck.check_dir(path)
