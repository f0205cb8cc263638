"""The evaluation flow: a registered tiny model (champion and an older version) scored on a split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.flows.conftest import PROJECT

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _instruction_files(repo: Path) -> None:
    """test-split CLS and REC files in the reference layout, images and image_roots.json."""
    from tests.infer.conftest import make_dataset

    src = make_dataset(repo / "raw", 8)
    records = json.loads(src.read_text())
    cls = [dict(r, conversations=[{"from": "human", "value": "<image>\nCategorize the object."},
                                  {"from": "gpt", "value": "polyp"}]) for r in records]
    rec = [dict(r, conversations=[{"from": "human", "value": "<image>\nWhere is the location of polyp?"},
                                  {"from": "gpt", "value": "{<10><10><40><30>}"}]) for r in records[:5]]
    out = repo / "data" / "coloninst" / "Json-file" / "test"
    out.mkdir(parents=True)
    (out / "ColonINST-test-cls.json").write_text(json.dumps(cls))
    (out / "ColonINST-test-rec.json").write_text(json.dumps(rec))
    (repo / "data" / "interim").mkdir(parents=True)
    (repo / "data" / "interim" / "image_roots.json").write_text(
        json.dumps({"Synth": str(repo / "raw" / "images" / "Synth")}))


def _register(uri: str, model_dir: Path, name: str, *, alias: str | None) -> str:
    from colonpipe.tracking.logger import MlflowLogger
    from colonpipe.register.registry import log_model_dir, register_candidate
    from colonpipe.tracking.store import get_client, get_experiment_id

    client = get_client(uri)
    run = client.create_run(get_experiment_id(client, "register-fixture"), run_name="register")
    log = MlflowLogger(client, run.info.run_id)
    mv = register_candidate(client, name, log_model_dir(log, model_dir), run_id=run.info.run_id,
                            metrics={"test.cls.accuracy": 0.5})
    client.set_terminated(run.info.run_id)
    if alias:
        client.set_registered_model_alias(name, alias, mv.version)
    return str(mv.version)


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A project-like folder with test data and two versions of a tiny model (v2 = champion)."""
    from colonpipe.model.base_model import build_base
    from colonpipe.params import ModelParams
    from tests.infer.conftest import make_dataset

    repo = tmp_path_factory.mktemp("evalrepo")
    shutil.copy2(PROJECT / "params.yaml", repo / "params.yaml")
    _instruction_files(repo)
    model = build_base(ModelParams(), corpus_files=[make_dataset(repo / "corpus", 30)], out_dir=repo / "tiny")
    uri = f"sqlite:///{repo}/mlruns/mlflow.db"
    old = _register(uri, Path(model), "colongpt", alias=None)
    champion = _register(uri, Path(model), "colongpt", alias="champion")
    return repo, uri, old, champion


def test_champion_is_scored_and_the_result_is_logged_against_its_version(prefect_api, registered, monkeypatch):
    from colonpipe.tracking.store import get_client
    from flows.evaluate import evaluate_model

    repo, uri, old, champion = registered
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    state = evaluate_model(repo=str(repo), split="test", tasks=["cls", "rec"], return_state=True)
    assert state.is_completed(), state.message
    out = state.result()
    assert out["version"] == champion and set(out["metrics"]) == {"cls", "rec"}
    preds = json.loads((repo / "models" / "eval" / f"colongpt-v{champion}" / "pred" / "test_pred_cls.json").read_text())
    assert len(preds) == 8 and preds[0]["conversations"][-1]["from"] == "prediction"

    client = get_client(uri)
    run = client.get_run(out["run_id"])
    assert run.data.tags["colonpipe.model_version"] == champion and run.data.tags["colonpipe.model_alias"] == "champion"
    assert run.data.metrics["test.cls.accuracy"] == pytest.approx(out["metrics"]["cls"]["accuracy"])
    assert run.info.status == "FINISHED"
    tags = client.get_model_version("colongpt", champion).tags
    assert tags["eval.test.run_id"] == out["run_id"]
    assert float(tags["eval.test.cls.accuracy"]) == pytest.approx(run.data.metrics["test.cls.accuracy"])
    assert tags["metric.test.cls.accuracy"] == repr(0.5)  # the promotion rule's numbers are untouched
    assert "eval.test.run_id" not in client.get_model_version("colongpt", old).tags


def test_a_named_version_and_a_missing_alias(prefect_api, registered, monkeypatch):
    from colonpipe.tracking.store import get_client
    from flows.evaluate import evaluate_model

    repo, uri, old, _ = registered
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    state = evaluate_model(repo=str(repo), version=int(old), alias=None, split="test", tasks=["cls"],
                           return_state=True)
    assert state.is_completed(), state.message
    assert get_client(uri).get_model_version("colongpt", old).tags["eval.test.run_id"] == state.result()["run_id"]
    missing = evaluate_model(repo=str(repo), alias="nonexistent", split="test", return_state=True)
    assert missing.is_failed() and "no version with alias 'nonexistent'" in missing.message
