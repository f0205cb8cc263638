"""Store URIs: every spelling of one store is one canonical URI and shares one lock;
what counts as remote; locks that give up at a deadline."""

from __future__ import annotations

import os

import pytest

from colonpipe.tracking.store import canonical_uri, file_lock, is_remote, lock_dir


@pytest.fixture
def in_root(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path.resolve()


def test_sqlite_spellings_are_one_store(in_root):
    (in_root / "real").mkdir()
    os.symlink(in_root / "real", in_root / "link")
    canon = f"sqlite:///{in_root}/real/a.db"
    assert canon.startswith("sqlite:////")
    for spelling in ("sqlite:///./real/a.db", "sqlite:///real/a.db", f"sqlite:///{in_root}/real/a.db",
                     f"SQLite:///{in_root}/real/../real/a.db", "sqlite:///link/a.db", " sqlite:///real/a.db?timeout=5"):
        assert canonical_uri(spelling) == canon, spelling
        assert lock_dir(spelling) == in_root / "real" / ".locks"
    assert canonical_uri("sqlite:///real/b.db") != canon


def test_server_spellings_are_one_store():
    same = ["http://mlflow.team:5000", "HTTP://MLflow.Team:5000/", "http://user:secret@mlflow.team:5000//"]
    assert {canonical_uri(u) for u in same} == {"http://mlflow.team:5000"}
    assert canonical_uri("https://Host:443/api/") == canonical_uri("https://host/api") == "https://host/api"
    assert canonical_uri("http://host:80") == "http://host"
    assert canonical_uri("http://host:5001") != canonical_uri("http://host:5000")
    assert canonical_uri("https://host/A") != canonical_uri("https://host/a")  # paths keep their case
    assert canonical_uri("postgresql+psycopg2://u:p@DB:5432/mlflow") == "postgresql://db/mlflow"
    assert canonical_uri("Databricks") == "databricks://"
    assert canonical_uri("databricks://prod/") == "databricks://prod"
    assert len({lock_dir(u) for u in same}) == 1


def test_local_folders_and_files_are_one_store(in_root):
    assert canonical_uri("./mlruns/") == canonical_uri(f"file://{in_root}/mlruns") == f"file://{in_root}/mlruns"


@pytest.mark.parametrize("uri,remote", [
    ("sqlite:///mlruns/mlflow.db", False), ("./mlruns", False), ("file:///srv/mlruns", False),
    ("http://mlflow.team:5000", True), ("HTTPS://mlflow.team", True), ("databricks", True),
    ("databricks-uc://prof", True), ("postgresql://db/mlflow", True), ("mysql+pymysql://db/mlflow", True),
])
def test_is_remote(uri, remote, in_root):
    assert is_remote(uri) is remote


def test_two_spellings_of_one_store_exclude_each_other(in_root):
    with file_lock("registry-m", uri="sqlite:///./a.db") as held:
        with pytest.raises(TimeoutError, match=r"registry-m\.lock: still held"):
            with file_lock("registry-m", uri=f"SQLITE:///{in_root}/a.db", timeout_s=0.3):
                pass
        with file_lock("registry-m", uri="sqlite:///./other/b.db", timeout_s=0.3):  # another store: free
            pass
        with file_lock("registry-other", uri="sqlite:///./a.db", timeout_s=0.3):  # another model: free
            pass
    with file_lock("registry-m", uri=f"sqlite:///{in_root}/a.db", timeout_s=0.3) as again:  # released
        assert again == held
    with file_lock("registry-x", uri="http://Lock.Test:5000/"):
        with pytest.raises(TimeoutError):
            with file_lock("registry-x", uri="http://lock.test:5000", timeout_s=0.2):
                pass
