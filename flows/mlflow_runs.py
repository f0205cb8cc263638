"""The Prefect side of MLflow runs: links in the Prefect UI and a retry rule.

Runs themselves (``open_run``, ``close_run``, ``parent_env``, ``RunRef``) and the tracking URI
(``tracking_uri(repo)``) are ``colonpipe.tracking``'s, shared with the stages.

- ``publish_run_link(run)`` records the run id and URL as Prefect artifacts of the current
  flow run (a link and a markdown summary), so the Prefect UI links to MLflow.
- ``retry_on_io``: a ``retry_condition_fn`` that retries only I/O and store-busy errors.
"""

from __future__ import annotations

from colonpipe.tracking.runs import RunRef

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
