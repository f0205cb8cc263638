"""Registry promotion against a real MLflow sqlite store: win, lose, guard, first model,
rollback, a broken decision log, two racing register processes, and the register stage."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from colonpipe.params import RegisterParams
from colonpipe.register.registry import (
    CHAMPION, PREVIOUS, RegistryError, alias_version, promote, register_candidate, rollback,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cfg(request) -> RegisterParams:
    return RegisterParams(
        model_name="m_" + re.sub(r"[^A-Za-z0-9]", "_", request.node.name),
        primary_metric="test.cls.accuracy",
        guards={"test.reg.accuracy": 0.05},
        floors={"test.cls.accuracy": 0.3},
    )


def _submit(client, cfg, tmp_path, cls, reg=0.9):
    """Register a candidate with these metrics and apply the rule."""
    metrics = {"test.cls.accuracy": cls, "test.reg.accuracy": reg}
    model_dir = tmp_path / f"model-{cls}-{reg}"
    model_dir.mkdir(exist_ok=True)
    mv = register_candidate(client, cfg.model_name, str(model_dir), run_id=None, metrics=metrics)
    return promote(client, cfg, str(mv.version), metrics, registry_path=tmp_path / "registry.json")


def _aliases(client, cfg):
    return alias_version(client, cfg.model_name, CHAMPION), alias_version(client, cfg.model_name, PREVIOUS)


def test_first_model_needs_floors_then_wins_loses_and_guards(tracking_env, cfg, tmp_path):
    client = MlflowClient(tracking_env)
    d = _submit(client, cfg, tmp_path, cls=0.2)
    assert not d.promoted and "floors not met" in d.reason and _aliases(client, cfg) == (None, None)
    d = _submit(client, cfg, tmp_path, cls=0.5)
    assert d.promoted and _aliases(client, cfg) == ("2", None)
    d = _submit(client, cfg, tmp_path, cls=0.6)  # win: old champion becomes previous
    assert d.promoted and d.champion_before == "2" and _aliases(client, cfg) == ("3", "2")
    d = _submit(client, cfg, tmp_path, cls=0.6)  # tie on the primary metric: a loss
    assert not d.promoted and _aliases(client, cfg) == ("3", "2")
    d = _submit(client, cfg, tmp_path, cls=0.9, reg=0.8)  # better primary, guard broken
    assert not d.promoted and "test.reg.accuracy" in d.reason and _aliases(client, cfg) == ("3", "2")
    guard = [c for c in d.comparisons if c.rule == "guard"][0]
    assert (guard.candidate, guard.reference, guard.tolerance, guard.ok) == (0.8, 0.9, 0.05, False)

    log = json.loads((tmp_path / "registry.json").read_text())["decisions"]
    assert [r["promoted"] for r in log] == [False, True, True, False, False]
    assert [r["candidate_version"] for r in log] == ["1", "2", "3", "4", "5"]
    assert log[3]["comparisons"][0] == {"metric": "test.cls.accuracy", "rule": "beat", "candidate": 0.6,
                                        "reference": 0.6, "higher_is_better": True, "tolerance": 0.0,
                                        "ok": False, "note": ""}
    tags = client.get_model_version(cfg.model_name, "5").tags
    assert tags["metric.test.cls.accuracy"] == "0.9" and tags["metric.test.reg.accuracy"] == "0.8"


def test_rollback_restores_previous_and_is_recorded(tracking_env, cfg, tmp_path):
    client = MlflowClient(tracking_env)
    for cls in (0.4, 0.5, 0.6):
        assert _submit(client, cfg, tmp_path, cls=cls).promoted
    assert _aliases(client, cfg) == ("3", "2")
    d = rollback(client, cfg.model_name, registry_path=tmp_path / "registry.json")
    assert (d.champion_before, d.champion_after, d.previous_after) == ("3", "2", "1")
    assert _aliases(client, cfg) == ("2", "1")
    rollback(client, cfg.model_name, registry_path=tmp_path / "registry.json")
    assert _aliases(client, cfg) == ("1", None)
    with pytest.raises(RegistryError, match="no 'previous' alias"):
        rollback(client, cfg.model_name, registry_path=tmp_path / "registry.json")
    log = json.loads((tmp_path / "registry.json").read_text())["decisions"]
    assert [r["action"] for r in log] == ["register"] * 3 + ["rollback"] * 2
    # the next candidate is judged against the rolled-back champion
    assert _submit(client, cfg, tmp_path, cls=0.45).promoted and _aliases(client, cfg) == ("4", "1")


def test_broken_decision_log_stops_before_any_alias_moves(tracking_env, cfg, tmp_path):
    client = MlflowClient(tracking_env)
    (tmp_path / "registry.json").write_text("{truncated")
    with pytest.raises(RegistryError, match="registry.json: not valid JSON"):
        _submit(client, cfg, tmp_path, cls=0.9)
    assert _aliases(client, cfg) == (None, None)


def _strict_json(path: Path):
    """Parse ``path`` as strict JSON (``NaN``/``Infinity`` tokens, which Python writes by default, raise)."""
    def refuse(token):
        raise ValueError(f"{path}: non-standard JSON token {token}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_nan_champion_is_replaced_and_a_nan_candidate_is_refused_and_logged(tracking_env, cfg, tmp_path):
    client = MlflowClient(tracking_env)
    metrics = {"test.cls.accuracy": float("nan"), "test.reg.accuracy": 0.9}
    broken = register_candidate(client, cfg.model_name, str(tmp_path), run_id=None, metrics=metrics)
    assert broken.tags["metric.test.cls.accuracy"] == "nan"
    # a champion left by an older rule that compared NaN with nothing
    client.set_registered_model_alias(cfg.model_name, CHAMPION, broken.version)
    d = _submit(client, cfg, tmp_path, cls=0.4)
    assert d.promoted and d.champion_before == "1" and "champion's test.cls.accuracy is nan" in d.reason
    assert _aliases(client, cfg) == ("2", "1")

    mv = register_candidate(client, cfg.model_name, str(tmp_path), run_id=None, metrics=metrics)
    d = promote(client, cfg, str(mv.version), metrics, registry_path=tmp_path / "registry.json")
    assert not d.promoted and "non-finite" in d.reason and _aliases(client, cfg) == ("2", "1")
    log = _strict_json(tmp_path / "registry.json")["decisions"]
    assert log[-1]["comparisons"][0]["candidate"] == "nan" and log[-1]["comparisons"][0]["note"] == "non-finite"
    assert log[-1]["reason"] == "non-finite candidate metric(s), never promoted: test.cls.accuracy=nan"


RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from colonpipe.params import RegisterParams
    from colonpipe.register.registry import promote, register_candidate
    from colonpipe.tracking.store import get_client

    name, cls, go, out = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    cfg = RegisterParams(model_name=name, guards={"test.reg.accuracy": 0.05})
    metrics = {"test.cls.accuracy": cls, "test.reg.accuracy": 0.9}
    client = get_client()
    Path(f"{go}.ready.{cls}").touch()
    while not go.exists():  # start line: both processes are warm before either registers
        time.sleep(0.01)
    mv = register_candidate(client, name, str(out.parent), run_id=None, metrics=metrics)
    promote(client, cfg, str(mv.version), metrics, registry_path=out)
    """
)


def test_racing_registers_leave_consistent_aliases(tracking_env, venv_env, cfg, tmp_path):
    client = MlflowClient(tracking_env)
    assert _submit(client, cfg, tmp_path, cls=0.5).promoted  # v1 is the champion
    registry, go = tmp_path / "registry.json", tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", RACER, cfg.model_name, str(cls), str(go), str(registry)],
                         env=venv_env(), cwd=tmp_path)
        for cls in (0.6, 0.7)
    ]
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}.ready.{cls}").exists() for cls in (0.6, 0.7)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "racers died"
        time.sleep(0.05)
    go.touch()  # both are warm with the store open: release them together
    assert [p.wait(timeout=120) for p in procs] == [0, 0]

    log = json.loads(registry.read_text())["decisions"]  # valid JSON with all three decisions
    assert len(log) == 3
    by_version = {str(mv.version): mv for mv in client.search_model_versions(f"name = '{cfg.model_name}'")}
    best = max(by_version, key=lambda v: float(by_version[v].tags["metric.test.cls.accuracy"]))
    champion, previous = _aliases(client, cfg)
    assert float(by_version[champion].tags["metric.test.cls.accuracy"]) == 0.7 and champion == best
    promoted = [r["candidate_version"] for r in log if r["promoted"]]
    assert previous in promoted and previous != champion  # a real, older champion
    assert promoted.index(previous) == promoted.index(champion) - 1
    for before, after in zip(log, log[1:]):  # each decision saw the previous one's outcome
        assert after["champion_before"] == before["champion_after"]


def test_register_stage_logs_model_and_decision_to_its_run(tracking_env, git_repo, monkeypatch, tiny_model_dir):
    sys.path.insert(0, str(REPO / "stages"))
    monkeypatch.setattr(sys, "path", sys.path)
    import register as stage

    name = "colongpt_stage_test"  # the session store is shared: a model name of this test's own
    (git_repo / "params.yaml").write_text((REPO / "params.yaml").read_text().replace("model_name: colongpt", f"model_name: {name}"))
    (git_repo / "metrics").mkdir()
    (git_repo / "models").mkdir()
    shutil.copytree(tiny_model_dir, git_repo / "models" / "final")
    (git_repo / "metrics" / "val.json").write_text(json.dumps({"cls": {"accuracy": 0.4}}))
    argv = ["--metrics", "metrics/test.json", "--metrics-val", "metrics/val.json",
            "--model-dir", "models/final", "--out", "registry.json"]
    (git_repo / "metrics" / "test.json").write_text("{}")
    assert stage.main(argv) == 1  # guarded metrics missing: a clear error, nothing registered

    for cls in (0.5, 0.5):
        metrics = {"cls": {"accuracy": cls}, "reg": {"accuracy": 0.9}, "rec": {"avg_iou": 0.4}}
        (git_repo / "metrics" / "test.json").write_text(json.dumps(metrics))
        assert stage.main(argv) == 0

    client = MlflowClient(tracking_env)
    log = json.loads((git_repo / "registry.json").read_text())["decisions"]
    assert [r["promoted"] for r in log] == [True, False]
    run = client.get_run(log[1]["source_run_id"])
    assert run.data.tags["colonpipe.registry.promoted"] == "false"
    assert run.data.metrics["test.cls.accuracy"] == 0.5 and run.data.metrics["val.cls.accuracy"] == 0.4
    assert run.data.params["register.primary_metric"] == "test.cls.accuracy"
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"registry", "lineage"} <= arts
    mv = client.get_model_version(name, log[1]["candidate_version"])
    assert mv.tags["source_run_id"] == run.info.run_id
    assert mv.source.startswith("models:/m-")
    logged = client.get_logged_model(mv.source[len("models:/"):])  # the servable pyfunc of this run
    assert logged.source_run_id == run.info.run_id and logged.name == "model"


def test_register_stage_refuses_a_folder_that_is_no_model(tracking_env, git_repo, monkeypatch):
    sys.path.insert(0, str(REPO / "stages"))
    monkeypatch.setattr(sys, "path", sys.path)
    import register as stage

    name = "colongpt_stage_test"  # the session store is shared: a model name of this test's own
    (git_repo / "params.yaml").write_text((REPO / "params.yaml").read_text().replace("model_name: colongpt", f"model_name: {name}"))
    (git_repo / "metrics").mkdir()
    (git_repo / "models" / "final").mkdir(parents=True)
    (git_repo / "models" / "final" / "adapter.safetensors").write_bytes(b"w" * 10)
    metrics = {"cls": {"accuracy": 0.5}, "reg": {"accuracy": 0.9}, "rec": {"avg_iou": 0.4}}
    (git_repo / "metrics" / "test.json").write_text(json.dumps(metrics))
    assert stage.main(["--metrics", "metrics/test.json", "--model-dir", "models/final"]) == 1
    assert not (git_repo / "registry.json").exists()  # nothing registered, nothing decided


def test_rollback_and_registry_commands(tracking_env, cfg, tmp_path, monkeypatch, capsys):
    from colonpipe.cli import main as cli

    client = MlflowClient(tracking_env)
    for cls in (0.4, 0.5):
        _submit(client, cfg, tmp_path, cls=cls)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    assert cli(["registry", "--model", cfg.model_name]) == 0
    out = capsys.readouterr().out
    assert "champion=2 previous=1" in out and "test.cls.accuracy=0.5" in out
    assert cli(["rollback", "--model", cfg.model_name, "--registry", "registry.json"]) == 0
    assert _aliases(client, cfg) == ("1", None)
    assert cli(["rollback", "--model", cfg.model_name]) == 1  # nothing left to roll back to
    assert cli(["registry", "--model", "never_registered"]) == 1
