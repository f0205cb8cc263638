"""``prefect.yaml``: every deployment names a real flow with valid parameters, and deploys."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.flows.conftest import BIN, PROJECT

pytestmark = pytest.mark.integration

SPEC = yaml.safe_load((PROJECT / "prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in SPEC["deployments"]}


def test_the_required_schedules_exist():
    crons = {name: [s["cron"] for s in d.get("schedules") or []] for name, d in DEPLOYMENTS.items()}
    assert crons["nightly-champion-eval"] == ["0 2 * * *"]
    assert crons["weekly-retrain"] == ["0 3 * * 0"]
    assert crons["sweep"] == [] and DEPLOYMENTS["sweep"]["entrypoint"] == "flows/sweep.py:sweep"
    assert DEPLOYMENTS["weekly-retrain"]["parameters"]["targets"] == ["register"]


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_deployment_loads_its_flow_and_parameters_validate(name):
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import load_flow_from_entrypoint
    from prefect.utilities.callables import parameter_schema

    dep = DEPLOYMENTS[name]
    path, _, func = dep["entrypoint"].partition(":")
    assert (PROJECT / path).is_file(), f"{name}: entrypoint file {path} missing"
    cwd = os.getcwd()
    os.chdir(PROJECT)  # Prefect resolves entrypoints from the deployment's working directory
    try:
        fl = load_flow_from_entrypoint(dep["entrypoint"])
    finally:
        os.chdir(cwd)
    assert fl.fn.__name__ == func
    params = dep.get("parameters") or {}
    schema = parameter_schema(fl.fn)
    assert set(params) <= set(schema.properties), f"{name}: unknown parameters {set(params) - set(schema.properties)}"
    if dep.get("schedules"):  # a scheduled run gets exactly these: they must be complete and typed
        fl.validate_parameters(params)
    for key, value in params.items():  # each given value is valid on its own
        fl.validate_parameters({**_required_dummies(schema, params), key: value})
    for sched in dep.get("schedules") or []:
        CronSchedule(cron=sched["cron"], timezone=sched.get("timezone"))
    assert dep["work_pool"]["name"] in {"colonpipe-process", "colonpipe-gpu"}


def _required_dummies(schema, given: dict) -> dict:
    """Placeholder values for required parameters the deployment leaves to each run."""
    return {k: {} for k in schema.required or [] if k not in given}


@pytest.mark.slow
def test_prefect_deploy_all_registers_every_deployment_with_its_schedule(prefect_api, tmp_path):
    """What the README does: create the pools, `prefect --no-prompt deploy --all` from the repo root."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        for pool in ("colonpipe-process", "colonpipe-gpu"):
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"), overwrite=True)
    env = dict(os.environ, PREFECT_API_URL=prefect_api, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with get_client(sync_client=True) as client:
        deployed = {d.name: d for d in client.read_deployments()}
        for name, dep in DEPLOYMENTS.items():
            got = deployed[name]
            assert got.entrypoint == dep["entrypoint"] and got.work_pool_name == dep["work_pool"]["name"]
            assert [s.schedule.cron for s in got.schedules] == [s["cron"] for s in dep.get("schedules") or []]
            assert got.parameters == (dep.get("parameters") or {})
            assert Path(got.path or PROJECT).resolve() == PROJECT or any(
                str(PROJECT) in str(step) for step in got.pull_steps or [])
