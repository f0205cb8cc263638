"""DVC's experiment queue through its Python API: task states, results, logs and workers.

Contract:
- ``queue_tasks(repo)``: every task of the repo's celery queue as a ``QueueTask`` (name,
  stash rev, ``queued | running | success | failed``), read from
  ``Repo(repo).experiments.celery_queue`` (``iter_queued`` / ``iter_active`` / ``iter_done``:
  the calls behind ``dvc queue status``, without its table). The Repo is closed after.
- ``show_records(repo)``: ``{name: ExpRecord}`` from ``Repo.experiments.show()`` (what
  ``dvc exp show --json`` prints), with metrics named ``<file>:<key>``.
- ``task_logs(repo, revs)``: ``{rev: the tail of that task's own log}``.
- ``live_workers(repo)``: the queue workers of this repo that are alive, found by the pid
  files DVC writes (``.dvc/tmp/exps/celery/dvc-exp-worker-<n>.pid``) and checked by their
  command line (``exp queue-worker dvc-exp-<hash of this repo>-<n>@localhost``), so a
  stale pid file never names another process.
- ``celery_dir(repo)``: DVC's celery folder of ``repo`` and its workers' node-name prefix.
- ``stop_workers(repo, ...)``: ``dvc queue stop`` (bounded), then SIGTERM, then SIGKILL for
  any worker still alive; returns what it had to kill.
- ``wait_final(repo, names, ...)``: poll (each poll bounded) until every named task of
  this sweep is final; restart the workers when none is alive while tasks wait, raise
  ``QueueStalled`` when running tasks have no live worker, ``TimeoutError`` at the deadline.
- ``bounded(fn, *args, timeout_s=...)``: one poll, given up (``PollTimeout``) after
  ``timeout_s`` seconds.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import psutil  # a dependency of dvc

from flows import dvc_cli
from flows import dvc_experiments as dx

logger = logging.getLogger(__name__)

ACTIVE_STATES = {"queued", "running"}


class PollTimeout(TimeoutError):
    """A read of DVC's queue state did not return in time."""


class QueueStalled(RuntimeError):
    """Experiments wait on the queue but no worker is alive to run them."""


@dataclass(frozen=True)
class QueueTask:
    """One task of the experiment queue."""

    name: Optional[str]
    rev: str  # the stash rev DVC queued it as (names can repeat across sweeps; revs do not)
    state: str  # queued | running | success | failed


@dataclass(frozen=True)
class Worker:
    """A live ``dvc exp queue-worker`` process of this repo."""

    name: str  # pid file stem, dvc-exp-worker-<n>
    pid: int
    node: str  # celery node name
    proc: psutil.Process = field(compare=False, repr=False)  # signals check it is still that process


def bounded(fn: Callable[..., Any], *args: Any, timeout_s: float) -> Any:
    """``fn(*args)`` in a daemon thread; ``PollTimeout`` if it has not returned in ``timeout_s``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name=f"dvc-poll-{fn.__name__}")
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise PollTimeout(f"{fn.__name__}: DVC did not answer within {timeout_s:.0f}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _open(repo: str | Path):
    from dvc.repo import Repo  # heavy: imported when a sweep first needs it

    return Repo(str(repo))


def queue_tasks(repo: str | Path) -> list[QueueTask]:
    """Every task of the queue; a task seen twice (it moved on while being read) keeps its later state."""
    with _open(repo) as dvc_repo:
        queue = dvc_repo.experiments.celery_queue
        # read in the order tasks move (queued -> active -> done) so none is missed in transit
        found = {e.stash_rev: QueueTask(e.name, e.stash_rev, "queued") for e in queue.iter_queued()}
        found |= {e.stash_rev: QueueTask(e.name, e.stash_rev, "running") for e in queue.iter_active()}
        for entry, result in queue.iter_done():
            ok = result is not None and bool(result.exp_hash) and result.ref_info is not None
            found[entry.stash_rev] = QueueTask(entry.name, entry.stash_rev, "success" if ok else "failed")
    return list(found.values())


def show_records(repo: str | Path) -> dict[str, dx.ExpRecord]:
    """``dvc exp show --json``'s records, through the API (``dvc.api.exp_show`` flattens the
    metrics to bare names when they are unique, losing the ``<file>:`` the sweep ranks by)."""
    with _open(repo) as dvc_repo:
        return dx.experiment_records([exp.dumpd() for exp in dvc_repo.experiments.show()])


def task_logs(repo: str | Path, revs: Iterable[str], *, limit: int = 1 << 16) -> dict[str, str]:
    """The last ``limit`` bytes of each task's own log (``dvc queue logs``); '' when it has none."""
    out: dict[str, str] = {}
    with _open(repo) as dvc_repo:
        proc = dvc_repo.experiments.celery_queue.proc
        for rev in revs:
            info = proc.get(rev)
            path = Path(info.stdout) if info is not None and info.stdout else None
            out[rev] = dvc_cli.read_log(path, limit=limit) if path is not None and path.is_file() else ""
    return out


def celery_dir(repo: str | Path) -> tuple[Path, str]:
    """DVC's celery folder and the node-name prefix of this repo's workers (as DVC derives it)."""
    with _open(repo) as dvc_repo:
        wdir = dvc_repo.experiments.celery_queue.wdir
    return Path(wdir), f"dvc-exp-{hashlib.sha256(wdir.encode('utf-8')).hexdigest()[:6]}-"


def _worker_at(pid_file: Path, node_prefix: str) -> Optional[Worker]:
    try:
        pid = int(pid_file.read_text().strip())
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        cmdline = proc.cmdline()
    except (OSError, ValueError, psutil.Error):
        return None  # gone, unreadable, or not ours to inspect
    nodes = [arg for arg in cmdline if arg.startswith(node_prefix)]
    if "queue-worker" not in cmdline or not nodes:
        return None  # the pid was reused by an unrelated process
    return Worker(pid_file.stem, pid, nodes[0], proc)


def live_workers(repo: str | Path) -> list[Worker]:
    """The live queue workers of ``repo``, by DVC's pid files."""
    wdir, prefix = celery_dir(repo)
    found = (_worker_at(p, prefix) for p in sorted(wdir.glob("dvc-exp-worker-*.pid")))
    return [w for w in found if w is not None]


def _signal_and_wait(workers: list[Worker], sig: Optional[int], wait_s: float) -> list[Worker]:
    """Send ``sig`` (None: none) to each worker; those still alive after ``wait_s`` seconds."""
    sent = []
    for w in workers:
        try:
            if sig is not None:
                w.proc.send_signal(sig)  # NoSuchProcess if the pid now names another process
            sent.append(w)
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs([w.proc for w in sent], timeout=wait_s)
    alive_pids = {p.pid for p in alive}
    return [w for w in sent if w.pid in alive_pids]


def stop_workers(repo: str | Path, *, stop_timeout_s: float = 60.0, exit_wait_s: float = 5.0,
                 grace_s: float = 5.0, log: logging.Logger | logging.LoggerAdapter = logger) -> list[str]:
    """Stop every queue worker of ``repo``: ``dvc queue stop``, then by pid file.

    A worker still alive ``exit_wait_s`` seconds after ``dvc queue stop`` gets SIGTERM, and
    SIGKILL ``grace_s`` seconds later. Returns one line per worker that had to be killed.
    """
    workers = live_workers(repo)
    if not workers:
        return []
    try:
        dvc_cli.run_command([dvc_cli.dvc_executable(), "queue", "stop"], cwd=repo,
                            on_line=lambda _l: None, timeout_s=stop_timeout_s)
    except dvc_cli.CommandFailed as exc:
        log.warning("dvc queue stop: %s", exc)
    killed: list[str] = []
    survivors = _signal_and_wait(workers, None, exit_wait_s)
    steps = ((signal.SIGTERM, grace_s, f"alive {exit_wait_s:.0f}s after `dvc queue stop`"),
             (signal.SIGKILL, 10.0, f"ignored SIGTERM for {grace_s:.0f}s"))
    for sig, wait_s, why in steps:
        for w in survivors:
            log.warning("queue worker %s (pid %d, %s) %s: sending %s", w.name, w.pid, w.node, why,
                        signal.Signals(sig).name)
        now_alive = _signal_and_wait(survivors, sig, wait_s)
        killed += [f"{w.name} (pid {w.pid}, {w.node}): {signal.Signals(sig).name}"
                   for w in survivors if w not in now_alive]
        survivors = now_alive
    for w in survivors:
        log.error("queue worker %s (pid %d) survived SIGKILL (stuck in the kernel?)", w.name, w.pid)
    return killed


def _log_changes(old: dict[str, QueueTask], new: dict[str, QueueTask], log) -> None:
    for name, task in new.items():
        if name not in old or old[name].state != task.state:
            log.info("experiment %s: %s", name, task.state)


def _no_worker(mine: dict[str, QueueTask], names: Iterable[str], restarts_left: int) -> bool:
    """With no worker alive: True to restart the workers, else ``QueueStalled``."""
    waiting = {n: mine[n].state if n in mine else "not in the queue" for n in names
               if n not in mine or mine[n].state not in dx.FINAL_STATES}
    if restarts_left > 0 and "queued" in waiting.values():
        return True
    raise QueueStalled(f"no DVC queue worker is alive, and these experiments will never finish: {waiting} "
                       "(worker logs: .dvc/tmp/exps/celery/dvc-exp-worker-*.out)")


def wait_final(repo: str | Path, names: list[str], *, known_revs: set[str], mine: dict[str, QueueTask],
               restart: Callable[[], None], log, timeout_s: float, poll_s: float = 3.0,
               poll_timeout_s: float = 60.0, stall_s: float = 60.0, max_poll_errors: int = 10,
               max_restarts: int = 2) -> dict[str, str]:
    """``{name: final state}`` once every task named ``names`` and not in ``known_revs`` is final.

    ``mine`` is filled as tasks are seen (the caller's view when this raises). A poll that
    fails or hangs is retried next round; ``max_poll_errors`` in a row raise.
    """
    deadline, errors, restarts = time.monotonic() + timeout_s, 0, 0
    worker_seen = time.monotonic()  # last time a worker was alive (or the workers were started)
    while True:
        try:
            tasks = bounded(queue_tasks, repo, timeout_s=poll_timeout_s)
            alive = bounded(live_workers, repo, timeout_s=poll_timeout_s)
            errors = 0
        except Exception as exc:  # DVC mid-write, a hung read: poll again, up to a limit
            errors += 1
            log.warning("polling the DVC queue failed (%d in a row): %s", errors, exc)
            if errors >= max_poll_errors:
                raise
        else:
            new = {t.name: t for t in tasks if t.name in names and t.rev not in known_revs}
            _log_changes(mine, new, log)
            mine.update(new)
            states = {n: mine[n].state if n in mine else "unknown" for n in names}
            if all(s in dx.FINAL_STATES for s in states.values()):
                return states
            now = time.monotonic()
            worker_seen = now if alive else worker_seen
            if now - worker_seen > stall_s and _no_worker(mine, names, max_restarts - restarts):
                log.warning("no DVC queue worker alive for %.0fs while experiments wait: restarting them", stall_s)
                restart()
                restarts, worker_seen = restarts + 1, time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"sweep: experiments not finished after {timeout_s:.0f}s: "
                               f"{ {n: t.state for n, t in mine.items()} }")
        time.sleep(poll_s)
