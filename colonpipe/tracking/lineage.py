"""Lineage of a stage run: git state, params, input hashes, and the dvc.lock entries.

Contract:
- ``git_state(root)`` -> ``{"commit": sha|None, "dirty": bool|None}`` (None outside git).
- ``input_hashes(paths, lock)``: for each input path, the hash DVC recorded for the *upstream
  stage that produced it* (an ``outs`` entry of ``dvc.lock`` equal to the path, or enclosing
  it) when the recorded size/file count still matches; otherwise a sha256 computed here.
  During ``dvc repro`` the running stage's *own* ``dvc.lock`` entry is the previous run's
  (DVC writes it after the command ends), so upstream outs are the trustworthy record.
- ``stage_lineage(...)`` gathers all of it into one JSON-able dict; ``lineage_tags`` picks
  the short parts that become run tags.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import yaml

from colonpipe.hashing import sha256_path

logger = logging.getLogger(__name__)


def git_state(root: Path) -> dict[str, Any]:
    """HEAD commit and whether tracked files differ from it (untracked files ignored)."""

    def git(*args: str) -> Optional[str]:
        try:
            out = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def read_lock(lockfile: Path) -> dict[str, Any]:
    """The ``stages`` mapping of a ``dvc.lock`` file ({} when absent or unreadable)."""
    try:
        data = yaml.safe_load(Path(lockfile).read_text()) or {}
    except FileNotFoundError:
        return {}
    except yaml.YAMLError as exc:
        logger.warning("%s: not valid YAML (%s); lineage falls back to computed hashes", lockfile, exc)
        return {}
    stages = data.get("stages") if isinstance(data, dict) else None
    return stages if isinstance(stages, dict) else {}


def _size_matches(path: Path, out: Mapping[str, Any]) -> bool:
    """Cheap staleness check of a dvc.lock out against the workspace."""
    if path.is_file():
        return out.get("size") in (None, path.stat().st_size)
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file()]
        return out.get("nfiles") in (None, len(files)) and out.get("size") in (
            None,
            sum(p.stat().st_size for p in files),
        )
    return False


def _producer(rel: str, lock: Mapping[str, Any]) -> Optional[tuple[str, dict]]:
    """(stage, out) of the dvc.lock out equal to ``rel`` or enclosing it."""
    best = None
    for stage, entry in lock.items():
        for out in (entry or {}).get("outs") or []:
            opath = str(out.get("path", "")).rstrip("/")
            if rel == opath or rel.startswith(opath + "/"):
                if best is None or len(opath) > len(best[1]["path"].rstrip("/")):
                    best = (stage, out)
    return best


def input_hashes(paths: Sequence[str | Path], lock: Mapping[str, Any], *, root: Path) -> dict:
    """``{path: {"hash", "algo", "source"[, "out"]}}`` for every input (see module doc)."""
    result: dict[str, dict] = {}
    for p in paths:
        path = Path(p)
        absolute = path if path.is_absolute() else root / path
        try:
            rel = absolute.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            rel = str(p)
        if not absolute.exists():
            logger.warning("lineage: input %s does not exist", absolute)
            result[rel] = {"hash": None, "algo": None, "source": "missing"}
            continue
        found = _producer(rel, lock)
        if found and (found[1]["path"].rstrip("/") != rel or _size_matches(absolute, found[1])):
            stage, out = found
            algo = out.get("hash", "md5")
            result[rel] = {"hash": out.get(algo) or out.get("md5"), "algo": algo,
                           "source": f"dvc.lock:{stage}", "out": out["path"]}
        else:
            result[rel] = {"hash": sha256_path(absolute), "algo": "sha256", "source": "computed"}
    return result


def stage_lineage(
    stage: str,
    *,
    params: Mapping[str, Any],
    inputs: Sequence[str | Path],
    root: Path,
    lockfile: Path,
) -> dict[str, Any]:
    """Everything that identifies what a stage run consumed (JSON-able)."""
    lock = read_lock(lockfile)
    hashes = input_hashes(inputs, lock, root=root)
    producers = sorted({h["source"].split(":", 1)[1] for h in hashes.values() if h["source"].startswith("dvc.lock:")})
    digest = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()
    return {
        "stage": stage,
        "git": git_state(root),
        "params": dict(params),
        "inputs": hashes,
        "inputs_digest": digest,
        "upstream_dvc_lock": {s: lock[s] for s in producers},
        "own_dvc_lock_at_start": lock.get(lock_key(stage)),
    }


def lock_key(stage: str) -> str:
    """dvc.lock key of a DVC stage address (``sub/dvc.yaml:train`` -> ``train``)."""
    return stage.rsplit(":", 1)[-1]


def lineage_tags(lineage: Mapping[str, Any]) -> dict[str, str]:
    """The short lineage facts as run tags (full record goes to ``lineage/lineage.json``)."""
    git = lineage["git"]
    tags = {
        "colonpipe.stage": lineage["stage"],
        "colonpipe.inputs_digest": lineage["inputs_digest"],
        "colonpipe.git.dirty": str(git["dirty"]).lower(),
    }
    if git["commit"]:
        tags["colonpipe.git.commit"] = git["commit"]
        tags["mlflow.source.git.commit"] = git["commit"]
    for path, h in lineage["inputs"].items():
        tags[f"colonpipe.input.{path}"] = f"{h['algo']}:{h['hash']}"
    return tags
