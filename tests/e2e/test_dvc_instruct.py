"""``dvc repro instruct`` end to end (demo -> ingest -> instruct) in a temporary repo copy."""

import hashlib
import json
from pathlib import Path

import pytest

from colonpipe.data.check import check_coloninst
from tests.e2e.conftest import copy_repo, run_dvc

SPEC_FILES = [
    "train/ColonINST-train-cap.json",
    "train/ColonINST-train-3tasks.json",
] + [f"{s}/ColonINST-{s}-{t}.json" for s in ("val", "test") for t in ("cls", "reg", "rec", "cap")]

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = copy_repo(tmp_path_factory.mktemp("repo"), {"demo.images_per_category": 4})
    run_dvc(root, "repro", "instruct")
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
    log = run_dvc(repo, "repro", "instruct")
    assert "didn't change" in log or "up to date" in log, log
    assert "Running stage" not in log, log
    assert "up to date" in run_dvc(repo, "status", "instruct")
    run_dvc(repo, "repro", "-f", "-s", "instruct")
    assert _digests(repo / "data/coloninst") == before
