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
    manifest.json            written LAST: every other file with its size

A directory is built as ``<name>.tmp`` and renamed into place, so a crash leaves either the
old state or a ``.tmp`` that is ignored. ``find_latest`` returns the newest ``step-N`` whose
manifest matches its files and whose fingerprint matches the run; anything else is skipped
with a log line.
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
_STEP_RE = re.compile(r"^step-(\d+)$")


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON via a same-folder temp file, fsync and ``os.replace``."""
    atomic.write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def step_name(step: int) -> str:
    return f"step-{step}"


def tmp_dir_for(target: Path) -> Path:
    return target.with_name(target.name + ".tmp")


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(directory: Path) -> dict[str, int]:
    """fsync every file under ``directory`` and record ``{relative path: size}`` in the manifest."""
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        _fsync_path(path)
        files[path.relative_to(directory).as_posix()] = path.stat().st_size
    write_json_atomic(directory / MANIFEST, {"files": files})
    return files


def commit_dir(tmp: Path, target: Path) -> Path:
    """Move a finished ``tmp`` directory to ``target`` (replacing an old one) and fsync the parent."""
    if target.exists():
        old = target.with_name(target.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)
    _fsync_path(target.parent)
    return target


def check_dir(directory: Path, *, fingerprint: str | None = None) -> str | None:
    """Why ``directory`` is not a usable checkpoint, or ``None`` if it is."""
    try:
        files = json.loads((directory / MANIFEST).read_text())["files"]
    except FileNotFoundError:
        return "no manifest.json (incomplete write)"
    except (ValueError, KeyError, TypeError) as exc:
        return f"unreadable manifest.json ({exc})"
    for rel, size in files.items():
        path = directory / rel
        if not path.is_file():
            return f"missing file {rel}"
        if path.stat().st_size != size:
            return f"file {rel} has {path.stat().st_size} bytes, manifest says {size}"
    try:
        state = json.loads((directory / TRAINER_STATE).read_text())
        config = json.loads((directory / TRAIN_CONFIG).read_text())
    except (OSError, ValueError) as exc:
        return f"unreadable state ({exc})"
    if not isinstance(state.get("global_step"), int):
        return "trainer_state.json has no integer global_step"
    if fingerprint is not None and config.get("fingerprint") != fingerprint:
        return "written by a run with different hyperparameters (fingerprint differs)"
    return None


def list_steps(root: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step-N`` directory under ``root``, newest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_RE.match(p.name))]
    return sorted(found, reverse=True)


def find_latest(root: Path, *, fingerprint: str | None = None) -> Path | None:
    """Newest valid ``step-N`` under ``root``; invalid ones are skipped with a warning."""
    for _, path in list_steps(root):
        problem = check_dir(path, fingerprint=fingerprint)
        if problem is None:
            return path
        logger.warning("skipping checkpoint %s: %s", path, problem)
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
        problem = check_dir(path, fingerprint=fingerprint)
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
