"""MLflow parent runs for flow executions, and their links in the Prefect UI.

Built on ``colonpipe.tracking`` (store, logger): one tracking interface for stages and flows.

Contract:
- ``tracking_uri(repo)``: ``$MLFLOW_TRACKING_URI`` if set, else the project default
  ``sqlite:///<repo>/mlruns/mlflow.db`` (absolute, so it does not depend on the flow's cwd).
- ``open_run(uri, ...)`` creates a run (a pipeline execution's parent, a sweep's parent or one of
  its children); stages find a parent through ``COLONPIPE_PARENT_RUN_ID`` (``parent_env``).
- ``publish_run_link(run)`` records the run id and URL as Prefect artifacts of the current
  flow run (a link and a markdown summary), so the Prefect UI links to MLflow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from colonpipe.tracking.logger import MlflowLogger
from colonpipe.tracking.runs import PARENT_ENV, PARENT_TAG
from colonpipe.tracking.store import get_client, get_experiment_id

UI_URL_ENV = "COLONPIPE_MLFLOW_UI_URL"  # where `mlflow ui` serves, for links from Prefect


@dataclass(frozen=True)
class RunRef:
    """An MLflow run a flow created: ids, tracking URI and a browser URL."""

    run_id: str
    experiment_id: str
    tracking_uri: str
    url: str

    def logger(self) -> MlflowLogger:
        """The project's ``RunLogger`` writing to this run."""
        return MlflowLogger(get_client(self.tracking_uri), self.run_id)


def tracking_uri(repo: str | Path) -> str:
    """The tracking URI stages in ``repo`` use (env override, else sqlite under mlruns/)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri and "://" in uri and not uri.startswith("sqlite:///"):
        return uri
    rel = uri[len("sqlite:///"):] if uri else "mlruns/mlflow.db"
    path = Path(rel) if Path(rel).is_absolute() else Path(repo).resolve() / rel
    return f"sqlite:///{path}"


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    """Browser URL of a run: the tracking server itself, else ``$COLONPIPE_MLFLOW_UI_URL``."""
    base = uri if uri.startswith(("http://", "https://")) else os.environ.get(UI_URL_ENV, "http://127.0.0.1:5000")
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def open_run(
    uri: str, *, run_name: str, experiment: Optional[str] = None, experiment_id: Optional[str] = None,
    tags: Optional[dict[str, str]] = None, parent_run_id: Optional[str] = None,
) -> RunRef:
    """Create a RUNNING run at tracking ``uri`` in ``experiment_id`` or ``experiment`` (default:
    the project's experiment, created if missing), optionally nested under ``parent_run_id``."""
    client = get_client(uri)
    exp_id = experiment_id or get_experiment_id(client, experiment)
    all_tags = dict(tags or {})
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    run = client.create_run(exp_id, run_name=run_name, tags=all_tags)
    return RunRef(run.info.run_id, exp_id, uri, run_url(uri, exp_id, run.info.run_id))


def close_run(run: RunRef, *, ok: bool, killed: bool = False) -> None:
    """Mark ``run`` FINISHED, FAILED or (cancelled / interrupted) KILLED."""
    status = "FINISHED" if ok else "KILLED" if killed else "FAILED"
    get_client(run.tracking_uri).set_terminated(run.run_id, status)


def parent_env(run: RunRef) -> dict[str, str]:
    """Environment a stage subprocess needs to log as a child of ``run``."""
    return {PARENT_ENV: run.run_id, "MLFLOW_TRACKING_URI": run.tracking_uri}


def publish_run_link(run: RunRef, *, key: str, title: str) -> None:
    """Record ``run`` as a link + markdown artifact of the current Prefect flow run."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact

    create_link_artifact(link=run.url, link_text=f"MLflow run {run.run_id}", key=key,
                         description=title)
    create_markdown_artifact(
        key=f"{key}-details",
        description=title,
        markdown=(f"### {title}\n\n| field | value |\n|---|---|\n| run id | `{run.run_id}` |\n"
                  f"| experiment id | `{run.experiment_id}` |\n| tracking URI | `{run.tracking_uri}` |\n"
                  f"| link | [{run.url}]({run.url}) |\n"),
    )


def retry_on_io(task, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry only connection / I/O / store-busy errors."""
    from mlflow.exceptions import MlflowException

    try:
        state.result(raise_on_failure=True)
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError):
        return False  # a wrong path stays wrong
    except (ConnectionError, TimeoutError, OSError):
        return True
    except MlflowException as exc:
        return exc.error_code in ("TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED")
    except BaseException:
        return False
    return False
