"""Self-describing, atomic training checkpoints (``step-N/`` and ``final/``).

Layout of one checkpoint directory::

    adapter/                 PEFT adapter (adapter_config.json + adapter_model.safetensors), when LoRA
    projector.safetensors    multi_modal_projector weights (keys relative to the projector)
    full_parts.safetensors   other parts trained in full (keys relative to the ColonGPT model), if any
    config.json              the ColonGPT config (multimodal fields included)
    tokenizer / processor    files written by the processor's ``save_pretrained``
    train_config.json        resolved hyperparameters, base model path, fingerprint
    trainer_state.json       global step, loss history, throughput counters
    optimizer.pt, scheduler.pt   resume state (plain loop), or deepspeed/ (DeepSpeed engine)
    manifest.json            written LAST: every other file with its size and sha256

A directory is built as ``<name>.tmp`` and renamed into place, so a crash leaves either the
old state or a ``.tmp`` that is ignored. ``find_latest`` returns the newest ``step-N`` whose
manifest matches its files and whose fingerprint matches the run; anything else is skipped
with a log line.

Integrity: DeepSpeed's own ``load_checkpoint`` unpickles its files (``weights_only=False``),
so nothing is loaded that this code did not write. ``check_dir`` (``verify=True``, the
default, used before every load) re-hashes every file and refuses one whose sha256 differs
from the manifest (a same-size edit included), a manifest without hashes (an older
colonpipe: retrain, or re-save the checkpoint), and an unlisted file that a loader could
pick up (anything under ``deepspeed/``, which DeepSpeed globs, or a pickle suffix).
On resume such a ``step-N`` is *set aside*, not deleted: renamed ``step-N.rejected`` (kept
for inspection, never loaded, logged as an error naming the file) and the run falls back to
the newest checkpoint that verifies, or starts at step 0 if none does. ``prune`` checks
sizes only (it runs after every save and only decides what to delete).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from colonpipe import atomic
from colonpipe.hashing import sha256_path

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
TRAIN_CONFIG = "train_config.json"
TRAINER_STATE = "trainer_state.json"
PROJECTOR_FILE = "projector.safetensors"
FULL_PARTS_FILE = "full_parts.safetensors"
ADAPTER_DIR = "adapter"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
DEEPSPEED_DIR = "deepspeed"
REJECTED_SUFFIX = ".rejected"
_STEP_RE = re.compile(r"^step-(\d+)$")
_PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".pkl", ".pickle"}  # a loader would unpickle these


class CheckpointError(ValueError):
    """A checkpoint that must not be loaded; the message names the directory and the file."""


def write_json(path: Path, obj: Any) -> Path:
    """Atomically write a checkpoint's JSON (indented, sorted keys, ASCII, ``str`` for the rest)."""
    return atomic.write_json(path, obj, sort_keys=True, ensure_ascii=True, default=str)


def step_name(step: int) -> str:
    return f"step-{step}"


def tmp_dir_for(target: Path) -> Path:
    return target.with_name(target.name + ".tmp")


def write_manifest(directory: Path) -> dict[str, dict[str, Any]]:
    """fsync every file under ``directory`` and record ``{relative path: {"size", "sha256"}}``."""
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        atomic.fsync_dir(path)
        files[path.relative_to(directory).as_posix()] = {"size": path.stat().st_size, "sha256": sha256_path(path)}
    write_json(directory / MANIFEST, {"version": 2, "files": files})
    return files


def commit_dir(tmp: Path, target: Path) -> Path:
    """Move a finished ``tmp`` directory to ``target`` (``atomic.replace_dir``: the old one is
    deleted only once the new one is in place)."""
    return atomic.replace_dir(tmp, target)


def _entry(value: Any) -> tuple[Any, Any]:
    """``(size, sha256)`` of a manifest entry (a bare size in manifests of older versions)."""
    return (value, None) if isinstance(value, int) else (value.get("size"), value.get("sha256"))


def _problem(directory: Path, fingerprint: str | None, verify: bool) -> tuple[str, str] | None:
    """``(kind, why)`` when ``directory`` is not usable: kind ``incomplete``, ``foreign`` or
    ``tampered`` (its bytes are not the ones written); None when it is."""
    try:
        files = json.loads((directory / MANIFEST).read_text())["files"]
        entries = {rel: _entry(v) for rel, v in files.items()}
    except FileNotFoundError:
        return "incomplete", "no manifest.json (incomplete write)"
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return "incomplete", f"unreadable manifest.json ({exc})"
    for rel, (size, _) in entries.items():
        path = directory / rel
        if not path.is_file():
            return "incomplete", f"missing file {rel}"
        if path.stat().st_size != size:
            return "incomplete", f"file {rel} has {path.stat().st_size} bytes, manifest says {size}"
    try:
        state = json.loads((directory / TRAINER_STATE).read_text())
        config = json.loads((directory / TRAIN_CONFIG).read_text())
    except (OSError, ValueError) as exc:
        return "incomplete", f"unreadable state ({exc})"
    if not isinstance(state.get("global_step"), int):
        return "incomplete", "trainer_state.json has no integer global_step"
    if fingerprint is not None and config.get("fingerprint") != fingerprint:
        return "foreign", "written by a run with different hyperparameters (fingerprint differs)"
    return _verify(directory, entries) if verify else None


def _verify(directory: Path, entries: dict[str, tuple[Any, Any]]) -> tuple[str, str] | None:
    """Hash every listed file against the manifest; refuse unlisted files a loader could read."""
    for rel, (_, digest) in entries.items():
        if not digest:
            return "tampered", f"manifest.json records no sha256 for {rel} (written by an older colonpipe: retrain)"
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        rel = path.relative_to(directory).as_posix()
        if rel not in entries and (rel.startswith(DEEPSPEED_DIR + "/") or path.suffix in _PICKLE_SUFFIXES):
            return "tampered", f"file {rel} is not in manifest.json (added after the checkpoint was written)"
    for rel, (_, digest) in entries.items():
        if sha256_path(directory / rel) != digest:
            return "tampered", f"file {rel} does not match its sha256 in manifest.json (changed after it was written)"
    return None


def check_dir(directory: Path, *, fingerprint: str | None = None, verify: bool = True) -> str | None:
    """Why ``directory`` is not a usable checkpoint, or ``None`` if it is.

    ``verify`` (default) re-hashes every file against the manifest: do it before any load.
    ``verify=False`` checks presence, sizes, state and fingerprint only (cheap).
    """
    problem = _problem(Path(directory), fingerprint, verify)
    return None if problem is None else problem[1]


def verify_dir(directory: Path) -> None:
    """Raise ``CheckpointError`` naming the file unless every file of ``directory`` verifies."""
    problem = check_dir(directory)
    if problem:
        raise CheckpointError(f"{directory}: refusing to load: {problem}")


def list_steps(root: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step-N`` directory under ``root``, newest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_RE.match(p.name))]
    return sorted(found, reverse=True)


def _set_aside(path: Path) -> Path:
    """Rename a rejected checkpoint ``step-N`` to ``step-N.rejected`` (replacing an older one)."""
    target = path.with_name(path.name + REJECTED_SUFFIX)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(path, target)
    return target


def find_latest(root: Path, *, fingerprint: str | None = None, set_aside: bool = False) -> Path | None:
    """Newest ``step-N`` under ``root`` that verifies; others are skipped with a warning.

    ``set_aside``: a checkpoint whose bytes differ from its manifest is renamed
    ``step-N.rejected`` (logged as an error) so it never shadows the older valid ones.
    """
    for _, path in list_steps(root):
        problem = _problem(path, fingerprint, verify=True)
        if problem is None:
            return path
        kind, why = problem
        if kind == "tampered":
            moved = _set_aside(path) if set_aside else path
            logger.error("refusing checkpoint %s: %s%s", path, why, f"; set aside as {moved}" if set_aside else "")
        else:
            logger.warning("skipping checkpoint %s: %s", path, why)
    return None


def prune(root: Path, *, keep: int, fingerprint: str | None = None) -> None:
    """Delete stale ``*.tmp`` dirs, ``step-N`` dirs this run cannot use (incomplete, or another
    run's fingerprint: they would otherwise crowd out this run's newer checkpoints), and all
    but the ``keep`` newest usable ones."""
    for path in root.glob("*.tmp"):
        if path.is_dir():
            logger.info("removing unfinished checkpoint %s", path)
            shutil.rmtree(path, ignore_errors=True)
    usable = []
    for _, path in list_steps(root):
        problem = check_dir(path, fingerprint=fingerprint, verify=False)
        if problem is None:
            usable.append(path)
        else:
            logger.info("removing unusable checkpoint %s: %s", path, problem)
            shutil.rmtree(path, ignore_errors=True)
    for path in usable[keep:]:
        logger.info("removing old checkpoint %s", path)
        shutil.rmtree(path, ignore_errors=True)


def read_state(directory: Path) -> dict[str, Any]:
    return json.loads((directory / TRAINER_STATE).read_text())


def read_train_config(directory: Path) -> dict[str, Any]:
    return json.loads((directory / TRAIN_CONFIG).read_text())
