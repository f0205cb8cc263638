"""The sweep flow: a grid or a list of param overrides, run as DVC experiments.

The mechanism is the one a user types by hand (docs/orchestration.md): every point is
queued with ``dvc exp run --queue -S key=value -n <name>``, then ``dvc queue start -j N``
runs them, N at a time, each in its own temp workspace sharing DVC's cache. So
``dvc exp show`` lists exactly the experiments the flow ran, with their metrics columns.

Every point's overrides are checked first (``flows.overrides``): a bad key or value fails
the flow before any experiment is queued. ``dvc queue start`` detaches its workers, so
its output goes to ``.dvc/tmp/colonpipe/queue-start.log`` (never a pipe) and the flow
decides completion by polling the queue through DVC's Python API (``flows.dvc_queue``),
each poll bounded. When every experiment of the sweep is final the workers are stopped:
``dvc queue stop``, then SIGTERM / SIGKILL for a worker that lingers (DVC's workers can
outlive an empty queue), unless other experiments still use them.

The flow then reads DVC's ``exp show`` records, names the best experiment by ``metric``, and
logs one MLflow parent run with one child per experiment (params, metrics, status; a
failed experiment's child carries its error). A failed experiment is reported (its task
run fails with the experiment's own error text) while the others go on; the flow fails
only when every experiment failed.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run as current_flow_run

from flows import dvc_cli
from flows import dvc_experiments as dx
from flows import dvc_queue as dq
from flows import overrides as ovr
from colonpipe.tracking.runs import RunRef, close_run, open_run
from colonpipe.tracking.store import tracking_uri
from flows.mlflow_runs import publish_run_link

EXP_NAME_TAG = "colonpipe.dvc_exp_name"  # set by colonpipe.tracking on a dvc exp's parent run


class ExperimentFailed(RuntimeError):
    """One sweep point failed; the message is the experiment's own error."""


QUEUE_LOG = Path(".dvc") / "tmp" / "colonpipe" / "queue-start.log"  # `dvc queue start`'s output
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _dvc(args: list[str], repo: str, *, quiet: bool = False, timeout_s: float = 600.0) -> str:
    log = get_run_logger()
    return dvc_cli.run_command([dvc_cli.dvc_executable(), *args], cwd=repo, env=_queue_env(),
                               on_line=(lambda _l: None) if quiet else log.info, timeout_s=timeout_s)


def _queue_env() -> dict[str, str]:
    """Queue workers must not inherit an outer flow's parent run: each exp groups its own."""
    env = dvc_cli.child_env()
    env.pop("COLONPIPE_PARENT_RUN_ID", None)
    return env


@task(cache_policy=NO_CACHE, name="check-overrides")
def check_points(repo: str, overrides: dict[str, list[str]], targets: Optional[list[str]]) -> None:
    """Every point's overrides and the targets are valid (``flows.overrides``) before any is queued."""
    for i, ov in enumerate(overrides.values(), start=1):
        ovr.check_point(repo, ov, point=f"sweep point {i} ({' '.join(ov)})")
    ovr.check_targets(repo, targets or [], what="sweep targets")
    get_run_logger().info("%d sweep points checked against %s", len(overrides), Path(repo) / ovr.PARAMS_FILE)


@task(cache_policy=NO_CACHE, name="queue-snapshot")
def queue_snapshot(repo: str) -> list[str]:
    """Stash revs already in the queue: earlier tasks that may share this sweep's names."""
    return sorted(t.rev for t in dq.bounded(dq.queue_tasks, repo, timeout_s=120))


@task(cache_policy=NO_CACHE, name="queue-experiment", task_run_name="queue-{name}", retries=3, retry_delay_seconds=5,
      retry_condition_fn=dvc_cli.retry_transient)
def queue_experiment(repo: str, name: str, overrides: list[str], targets: Optional[list[str]] = None) -> None:
    """``dvc exp run --queue -S <override>... -n <name> [targets]``."""
    sets = [arg for o in overrides for arg in ("-S", o)]
    _dvc(["exp", "run", "--queue", *sets, "-n", name, *(targets or [])], repo)


def _start_workers(repo: str, jobs: int) -> None:
    """``dvc queue start -j jobs``: its workers detach, so its output goes to a log file, never a pipe."""
    log = get_run_logger()
    text = dvc_cli.run_logged([dvc_cli.dvc_executable(), "queue", "start", "-j", str(jobs)], cwd=repo,
                              log_path=Path(repo) / QUEUE_LOG, env=_queue_env(), timeout_s=120)
    for line in filter(str.strip, text.splitlines()):
        log.info("dvc queue start: %s", line)


def _stop_unfinished(repo: str, names: list[str], mine: dict[str, dq.QueueTask]) -> None:
    """After a timeout or cancellation: kill this sweep's running tasks, drop its queued ones."""
    log = get_run_logger()
    pending = [n for n in names if n not in mine or mine[n].state in dq.ACTIVE_STATES]
    log.warning("stopping unfinished experiments %s", pending)
    for args in (["queue", "kill", *pending], ["queue", "remove", *pending]):
        try:
            _dvc(args, repo, quiet=True, timeout_s=120)
        except Exception as exc:  # best effort: they may have finished meanwhile
            log.warning("dvc %s: %s", " ".join(args[:2]), exc)


def _release_workers(repo: str, mine: dict[str, dq.QueueTask]) -> None:
    """Stop the queue's workers (they may linger, see docs/orchestration.md) unless other
    experiments still wait on them."""
    log = get_run_logger()
    try:
        others = [t.name or t.rev[:7] for t in dq.bounded(dq.queue_tasks, repo, timeout_s=120)
                  if t.state in dq.ACTIVE_STATES and t.rev not in {m.rev for m in mine.values()}]
        if others:
            log.info("leaving the DVC queue workers running: other experiments use them: %s", others)
            return
        killed = dq.stop_workers(repo, log=log)
    except Exception as exc:  # never hide the sweep's own result or error behind the cleanup's
        log.warning("could not stop the DVC queue workers: %s", exc)
        return
    log.info("DVC queue workers stopped%s", f"; killed {'; '.join(killed)}" if killed else "")


@task(cache_policy=NO_CACHE, name="run-queue")
def run_queue(repo: str, names: list[str], *, jobs: int, timeout_s: float, known_revs: Optional[list[str]] = None,
              poll_s: float = 3.0) -> dict[str, dict]:
    """Start the workers, poll until every named experiment is final, then stop the workers.

    Returns ``{name: {"state": success|failed, "rev": stash rev}}``.
    """
    mine: dict[str, dq.QueueTask] = {}
    try:
        _start_workers(repo, jobs)
        states = dq.wait_final(repo, names, known_revs=set(known_revs or []), mine=mine, log=get_run_logger(),
                               restart=lambda: _start_workers(repo, jobs), timeout_s=timeout_s, poll_s=poll_s)
    except BaseException:
        _stop_unfinished(repo, names, mine)
        raise
    finally:
        _release_workers(repo, mine)
    return {n: {"state": s, "rev": mine[n].rev if n in mine else None} for n, s in states.items()}


@task(cache_policy=NO_CACHE, name="collect-experiments")
def collect(repo: str, names: list[str], states: dict[str, dict]) -> dict[str, dict]:
    """Records of ``names`` from DVC's ``exp show``; failed ones get their task log's error."""
    shown = dq.bounded(dq.show_records, repo, timeout_s=600)
    failed = {n: st["rev"] for n, st in states.items() if st["state"] != "success" and st["rev"]}
    logs = dq.bounded(dq.task_logs, repo, list(failed.values()), timeout_s=120) if failed else {}
    out: dict[str, dict] = {}
    for name in names:
        rec = shown.get(name) or dx.ExpRecord(name=name, status=states[name]["state"])
        if rec.status != "success" or states[name]["state"] != "success":
            rec.status = "failed"
            text = logs.get(failed.get(name, ""), "")
            rec.error = dvc_cli.error_message(text) if text.strip() else (
                rec.error or "no task log (it failed before its stages ran; see .dvc/tmp/exps/celery/*.out)")
        out[name] = asdict(rec)
    return out


def _exp_parent_run(sweep_run: RunRef, name: str) -> Optional[str]:
    """The run ``colonpipe.tracking`` opened for experiment ``name``'s stages, if any."""
    client = sweep_run.logger().client
    runs = client.search_runs([sweep_run.experiment_id], filter_string=f"tags.`{EXP_NAME_TAG}` = '{name}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


@task(cache_policy=NO_CACHE, name="report-experiment", task_run_name="{name}")
def report_experiment(name: str, record: dict, overrides: list[str], sweep_run: RunRef) -> dict:
    """Log experiment ``name`` as a child of the sweep's MLflow run; fail if the experiment did."""
    child_id = _exp_parent_run(sweep_run, name)
    if child_id is None:
        child = open_run(sweep_run.tracking_uri, run_name=name, parent_run_id=sweep_run.run_id,
                         experiment_id=sweep_run.experiment_id, tags={EXP_NAME_TAG: name})
    else:  # adopt the experiment's own pipeline run (parent of its stage runs) under the sweep
        child = RunRef(child_id, sweep_run.experiment_id, sweep_run.tracking_uri, "")
    mlog = child.logger()
    mlog.set_tags({"mlflow.parentRunId": sweep_run.run_id, "mlflow.runName": name,
                   "colonpipe.sweep_overrides": " ".join(overrides), "colonpipe.dvc_exp_rev": record["rev"] or "", "colonpipe.sweep_status": record["status"],
                   **({"colonpipe.error": record["error"]} if record["error"] else {})})
    mlog.log_params(record["params"])
    mlog.log_metrics(record["metrics"])
    close_run(child, ok=record["status"] == "success")
    if record["status"] != "success":
        raise ExperimentFailed(f"experiment {name} ({' '.join(overrides)}) failed: {record['error']}")
    get_run_logger().info("experiment %s: %d metrics logged to MLflow run %s",
                          name, len(record["metrics"]), child.run_id)
    return {"name": name, "run_id": child.run_id}


def _summary_markdown(records: dict[str, dict], overrides: dict[str, list[str]], metric: Optional[str],
                      best: Optional[str]) -> str:
    rows = ["| experiment | status | overrides | " + (metric or "metric") + " | error |", "|---|---|---|---|---|"]
    for name, rec in records.items():
        value = dx.metric_value(rec["metrics"], metric) if metric else None
        err = (rec["error"] or "").replace("\n", " ").replace("|", "/")[:300]
        mark = " **(best)**" if name == best else ""
        rows.append(f"| `{name}`{mark} | {rec['status']} | `{' '.join(overrides[name])}` | "
                    f"{'' if value is None else f'{value:.6g}'} | {err} |")
    head = f"### Sweep: best experiment `{best}` by `{metric}`\n\n" if best else "### Sweep: no best experiment\n\n"
    return head + "\n".join(rows) + "\n"


def _publish_best(parent: RunRef, records: dict[str, dict], overrides: dict[str, list[str]], *,
                  metric: Optional[str], mode: str, title: str) -> Optional[dx.ExpRecord]:
    """Name the best experiment: Prefect summary table, MLflow parent tag + metric, the log."""
    best = dx.best_experiment([dx.ExpRecord(**r) for r in records.values()], metric, mode=mode) if metric else None
    create_markdown_artifact(_summary_markdown(records, overrides, metric, best.name if best else None),
                             key="sweep-summary", description=title)
    parent.logger().set_tags({"colonpipe.best_experiment": best.name if best else ""})
    if best is None and metric and any(r["status"] == "success" for r in records.values()):
        get_run_logger().warning(
            "no successful experiment has metric %r in `dvc exp show`; a metrics file declared "
            "`cache: false` inside a git-ignored folder is invisible to DVC experiments: cache it "
            "(drop `cache: false`) or let git track it", metric)
    if best is not None:
        value = dx.metric_value(best.metrics, metric)
        parent.logger().log_metrics({f"best/{metric}": value})
        get_run_logger().info("best experiment: %s (%s = %s)", best.name, metric, value)
    return best


@flow(name="colonpipe-sweep", log_prints=True)
def sweep(
    repo: str = ".",
    grid: Optional[dict[str, list[Any]]] = None,
    points: Optional[list[dict[str, Any]]] = None,
    targets: Optional[list[str]] = None,
    metric: Optional[str] = None,
    mode: str = "max",
    jobs: int = 2,
    name: Optional[str] = None,
    experiment: Optional[str] = None,
    timeout_s: float = 12 * 3600,
) -> dict[str, Any]:
    """Run every point as a queued DVC experiment, ``jobs`` at a time; name the best.

    Args:
        repo: the DVC repository (a git repo with at least one commit).
        grid: ``{"finetune.lora.r": [8, 16]}``: one experiment per combination.
        points: explicit override dicts, ``[{"finetune.lora.r": 8, "finetune.lr": 1e-4}]``.
        targets: stages to reproduce (``dvc exp run <targets>``); the whole pipeline if empty.
        metric: ``<metrics file>:<dotted key>`` (or a key unique across files) to rank by.
        mode: ``max`` or ``min``.
        jobs: experiments run in parallel (``dvc queue start -j``).
        name: prefix of the experiment names (default ``sweep-<flow run name>``).
        experiment: MLflow experiment (default: the project's).
        timeout_s: give up (and stop the queue's unfinished experiments) after this long.
    Returns ``{"best", "metric", "experiments": {name: record}, "mlflow_run_id"}``.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"sweep: mode must be 'max' or 'min', got {mode!r}")
    repo = str(Path(repo).resolve())
    point_overrides = dx.expand_points(grid, points)
    prefix = name or f"sweep-{current_flow_run.name or time.strftime('%Y%m%d-%H%M%S')}"
    if not NAME_RE.fullmatch(prefix):
        raise ValueError(f"sweep: name {prefix!r} must start with a letter or digit and hold only "
                         "letters, digits, '.', '_' and '-' (it names DVC experiments)")
    overrides = {f"{prefix}-{i + 1}": ov for i, ov in enumerate(point_overrides)}
    check_points(repo, overrides, targets)  # a bad point fails here, before any is queued
    known = queue_snapshot(repo)
    parent = open_run(tracking_uri(repo), run_name=prefix, experiment=experiment,
                      tags={"colonpipe.kind": "sweep", "prefect.flow_run_id": str(current_flow_run.id),
                            "colonpipe.sweep_metric": metric or ""})
    publish_run_link(parent, key="mlflow-sweep-run", title="MLflow parent run of this sweep")
    ok = False
    try:
        try:
            for exp_name, ov in overrides.items():
                queue_experiment(repo, exp_name, ov, targets)
        except BaseException:  # no half-queued sweep left for the next `dvc queue start`
            _stop_unfinished(repo, list(overrides), {})
            raise
        states = run_queue(repo, list(overrides), jobs=jobs, timeout_s=timeout_s, known_revs=known)
        records = collect(repo, list(overrides), states)
        reports = {n: report_experiment(n, records[n], overrides[n], parent, return_state=True) for n in records}
        best = _publish_best(parent, records, overrides, metric=metric, mode=mode, title=f"sweep {prefix}")
        failed = [n for n, st in reports.items() if st.is_failed()]
        if len(failed) == len(records):
            raise ExperimentFailed(f"sweep {prefix}: every experiment failed: "
                                   + "; ".join(f"{n}: {records[n]['error']}" for n in failed))
        ok = True
        return {"best": best.name if best else None, "metric": metric, "experiments": records,
                "failed": failed, "mlflow_run_id": parent.run_id}
    finally:
        close_run(parent, ok=ok)


if __name__ == "__main__":
    sweep()
