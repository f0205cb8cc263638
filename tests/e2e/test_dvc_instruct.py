"""``dvc repro instruct`` end to end (demo -> ingest -> instruct) in a temporary repo copy."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from colonpipe.data.check import check_coloninst

REPO = Path(__file__).resolve().parents[2]
SPEC_FILES = [
    "train/ColonINST-train-cap.json",
    "train/ColonINST-train-3tasks.json",
] + [f"{s}/ColonINST-{s}-{t}.json" for s in ("val", "test") for t in ("cls", "reg", "rec", "cap")]

pytestmark = pytest.mark.slow


def _copy_repo(dst: Path) -> None:
    """Tracked + untracked-but-not-ignored files (so work in progress is tested too)."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def _run(args: list[str], cwd: Path) -> str:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", OMP_NUM_THREADS="1",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    _copy_repo(root)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["demo"]["images_per_category"] = 4
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["repro", "instruct"], root)
    return root


def test_repro_instruct_writes_the_spec_files(repo, monkeypatch):
    out = repo / "data/coloninst"
    written = sorted(p.relative_to(out / "Json-file").as_posix() for p in (out / "Json-file").rglob("*.json"))
    assert written == sorted(SPEC_FILES)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["records_total"] > 0
    assert all(stats["records"]["train"][t] > 0 for t in ("cls", "reg", "rec", "cap"))
    assert stats["records"]["test"]["cls"] > 0
    monkeypatch.chdir(repo)  # image_roots.json holds roots relative to the repo root
    report = check_coloninst(out / "Json-file", Path("data/interim/image_roots.json"))
    assert report["ok"], report["examples"]


def test_second_repro_does_nothing_and_forced_rerun_is_identical(repo):
    before = _digests(repo / "data/coloninst")
    log = _run(["repro", "instruct"], repo)
    assert "didn't change" in log or "up to date" in log, log
    assert "Running stage" not in log, log
    assert "up to date" in _run(["status", "instruct"], repo)
    _run(["repro", "-f", "-s", "instruct"], repo)
    assert _digests(repo / "data/coloninst") == before
