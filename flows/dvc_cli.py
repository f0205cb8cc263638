"""Run the ``dvc`` command line from flows: streamed output, process groups, typed errors.

Contract:
- ``run_command(argv, cwd=...)`` starts ``argv`` in its **own process group**, streams every
  output line (stdout and stderr merged) to ``on_line``, and returns the collected output.
  On any exception in the caller's thread (Prefect's cancellation raises ``TerminationSignal``,
  Ctrl-C raises ``KeyboardInterrupt``) the whole group (dvc and the stage command it started)
  gets SIGTERM, then SIGKILL after ``grace_s`` seconds, before the exception propagates.
  The pipe is read with a deadline, never to EOF: once the command itself has exited, a
  descendant that inherited the pipe (a daemon) gets ``drain_s`` seconds, then is ignored.
  ``timeout_s`` bounds the whole command (``CommandTimeout``).
- ``run_logged(argv, cwd=..., log_path=...)`` runs a command that detaches daemons
  (``dvc queue start``): output to a log file, stdin /dev/null, own session, waited for with
  a timeout and reaped.
- A non-zero exit raises ``CommandFailed`` whose message is the command's own error text
  (the last exception line and dvc's ``ERROR:`` lines); lock contention raises the
  ``TransientDvcError`` subclass, the only error worth a retry.
- ``stage_order(repo, targets)`` (DVC's Python API) lists the stages ``dvc repro <targets>`` would consider,
  upstream first, in ``dvc.yaml`` order where the graph leaves a choice.
"""

from __future__ import annotations

import codecs
import io
import json
import logging
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, Optional, Sequence

logger = logging.getLogger(__name__)

# dvc error texts that mean "try again later", not "the stage is wrong".
TRANSIENT_PATTERNS = (
    "unable to acquire lock",
    "lock file exists",
    "connection reset",
    "connection refused",
    "temporary failure in name resolution",
    "timed out",
)
_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()


class CommandFailed(RuntimeError):
    """A command exited non-zero; ``str(exc)`` is its own error message."""

    def __init__(self, message: str, *, returncode: int, output: str):
        super().__init__(message)
        self.returncode = returncode
        self.output = output


class TransientDvcError(CommandFailed):
    """A failure worth retrying (a held lock, a network hiccup), not a broken stage."""


class CommandTimeout(CommandFailed):
    """A command ran past its ``timeout_s``; its process group was killed."""


def dvc_executable() -> str:
    """The ``dvc`` next to the running interpreter (the venv's), else the one on PATH."""
    candidate = Path(sys.executable).with_name("dvc")
    return str(candidate) if candidate.exists() else "dvc"


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child: ours, offline-safe, unbuffered, plus ``extra``."""
    env = dict(os.environ)
    env.setdefault("DVC_NO_ANALYTICS", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env.update(extra or {})
    return env


def kill_group(proc: subprocess.Popen, *, grace_s: float = 10.0) -> None:
    """SIGTERM the process group of ``proc``, SIGKILL it after ``grace_s`` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        logger.warning("process group %d ignored SIGTERM for %.0fs; sending SIGKILL", proc.pid, grace_s)
    except ProcessLookupError:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:  # stuck in the kernel (D state): report, do not hang
        logger.error("process %d survived SIGKILL for %.0fs; leaving it", proc.pid, grace_s)


def kill_all_live(*, grace_s: float = 10.0) -> None:
    """Kill every process group started by ``run_command`` that is still running."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        kill_group(proc, grace_s=grace_s)


def retry_transient(task, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry a DVC step only when it failed on a lock or the network
    (``TransientDvcError``), never on a real error."""
    try:
        state.result(raise_on_failure=True)
    except TransientDvcError:
        return True
    except BaseException:
        return False
    return False


def is_transient(output: str) -> bool:
    """True when dvc itself (its ``ERROR:`` lines, not the stage) reports a lock or network error."""
    dvc_errors = [ln.lower() for ln in output.splitlines() if ln.startswith("ERROR")]
    return any(p in ln for ln in dvc_errors for p in TRANSIENT_PATTERNS)


def error_message(output: str, *, limit: int = 6) -> str:
    """The command's own error, then dvc's ``ERROR:`` lines. The stage's words are its final
    exception (``SomeError: ...`` and what follows), else its ERROR/CRITICAL log lines, else
    its last ``limit`` lines."""
    lines = [ln.rstrip() for ln in output.splitlines() if ln.strip()]
    dvc_errors = list(dict.fromkeys(ln for ln in lines if ln.startswith("ERROR")))
    starts = [i for i, ln in enumerate(lines) if ln.startswith("> ")]  # dvc echoes "> <cmd>"
    body = [ln for ln in lines[(starts[-1] + 1 if starts else 0):] if not ln.startswith("ERROR")]
    exc_re = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b")
    hits = [i for i, ln in enumerate(body) if exc_re.match(ln)]
    logged = [ln for ln in body if re.search(r"\b(ERROR|CRITICAL)\b", ln)]  # logging's level names
    if hits:
        stage_words = body[hits[-1]:][:limit]
    else:
        stage_words = logged[-limit:] if logged else body[-limit:]
    return "\n".join(stage_words + dvc_errors) or "(no output)"


def _sink(out: deque[str], on_line: Callable[[str], None]) -> Callable[[str], None]:
    def take(line: str) -> None:
        out.append(line)
        if line.strip():
            on_line(line)
    return take


class _PipeLines:
    """Lines from a pipe, read with a selector: no read blocks longer than its timeout.

    Text is decoded like ``text=True`` would (UTF-8, errors replaced, universal newlines); a
    line longer than ``MAX_LINE`` characters is cut into pieces so memory stays bounded.
    """

    MAX_LINE = 65536

    def __init__(self, pipe):
        self._pipe = pipe
        self._selector = selectors.DefaultSelector()
        self._selector.register(pipe, selectors.EVENT_READ)
        self._text = io.IncrementalNewlineDecoder(codecs.getincrementaldecoder("utf-8")(errors="replace"),
                                                  translate=True)
        self._partial = ""
        self.eof = False

    def read(self, timeout: float) -> list[str]:
        """Complete lines that arrived within ``timeout`` seconds (at EOF, the unfinished one too)."""
        if self.eof or not self._selector.select(timeout):
            return []
        chunk = os.read(self._pipe.fileno(), 65536)
        self.eof = not chunk
        self._partial += self._text.decode(chunk, final=self.eof)
        *lines, self._partial = self._partial.split("\n")
        if self._partial and (self.eof or len(self._partial) > self.MAX_LINE):
            lines.append(self._partial)
            self._partial = ""
        return lines

    def close(self) -> None:
        self._selector.close()
        self._pipe.close()


def _pump(proc: subprocess.Popen, lines: _PipeLines, take: Callable[[str], None], *,
          timeout_s: Optional[float], drain_s: float) -> bool:
    """Stream ``proc``'s lines to ``take`` until it exits; False if ``timeout_s`` ran out first.

    Once ``proc`` has exited, output its descendants still write is taken for ``drain_s``
    seconds at most: a daemon that inherited the pipe must not hold the caller.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    drain_until = None
    while True:
        if lines.eof:
            try:
                proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        for line in lines.read(0.2):
            take(line)
        now = time.monotonic()
        if proc.poll() is not None:
            if lines.eof:
                return True
            drain_until = drain_until or now + drain_s
            if now >= drain_until:
                logger.warning("%s exited but a process it started still holds its output open; "
                               "not reading it further", " ".join(proc.args[:3]))
                return True
        elif deadline is not None and now >= deadline:
            return False


def run_command(
    argv: Sequence[str],
    *,
    cwd: str | Path,
    env: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    grace_s: float = 10.0,
    timeout_s: Optional[float] = None,
    drain_s: float = 2.0,
) -> str:
    """Run ``argv`` in its own process group; stream lines to ``on_line``; return all output.

    ``on_line`` runs in the caller's thread, so an exception it raises (or a signal's) kills the
    group like any other. ``timeout_s`` (None: no limit) kills the group and raises
    ``CommandTimeout``. The output is never read to EOF blindly (see ``_pump``).
    """
    proc = subprocess.Popen(
        list(argv), cwd=str(cwd), env=env if env is not None else child_env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    with _LIVE_LOCK:
        _LIVE.add(proc)
    out: deque[str] = deque(maxlen=2000)
    lines = _PipeLines(proc.stdout)
    try:
        finished = _pump(proc, lines, _sink(out, on_line or logger.info), timeout_s=timeout_s, drain_s=drain_s)
    except BaseException:
        logger.warning("interrupted: stopping process group %d (%s)", proc.pid, " ".join(argv[:3]))
        kill_group(proc, grace_s=grace_s)
        raise
    finally:
        lines.close()
        with _LIVE_LOCK:
            _LIVE.discard(proc)
    text = "\n".join(out)
    if not finished:
        kill_group(proc, grace_s=grace_s)
        raise CommandTimeout(f"{' '.join(argv[:4])}: no result after {timeout_s:.0f}s; stopped it\n"
                             + error_message(text), returncode=proc.returncode, output=text)
    return _checked(proc.returncode, text)


def _checked(returncode: int, text: str) -> str:
    """``text`` for a zero exit; else the typed error carrying the command's own message."""
    if returncode != 0:
        kind = TransientDvcError if is_transient(text) else CommandFailed
        raise kind(error_message(text), returncode=returncode, output=text)
    return text


def run_logged(
    argv: Sequence[str],
    *,
    cwd: str | Path,
    log_path: str | Path,
    env: dict[str, str] | None = None,
    timeout_s: float = 120.0,
    grace_s: float = 10.0,
) -> str:
    """Run a command that leaves daemons behind (``dvc queue start``) without a pipe to it.

    Its stdout and stderr are appended to ``log_path`` (which its daemons inherit), stdin is
    /dev/null, and it gets its own session. It is waited for at most ``timeout_s`` seconds
    and reaped (no zombie); past that its process group is killed and ``CommandTimeout``
    raised. Returns what it wrote to the log (its last 1 MiB); a non-zero exit raises
    ``CommandFailed`` / ``TransientDvcError`` as ``run_command`` does.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        start = log.tell()
        proc = subprocess.Popen(list(argv), cwd=str(cwd), env=env if env is not None else child_env(),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    with _LIVE_LOCK:
        _LIVE.add(proc)
    try:
        proc.wait(timeout=timeout_s)
    except BaseException as exc:
        kill_group(proc, grace_s=grace_s)
        if isinstance(exc, subprocess.TimeoutExpired):
            raise CommandTimeout(f"{' '.join(argv[:4])}: still running after {timeout_s:.0f}s; stopped it "
                                 f"(log: {log_path})", returncode=proc.returncode, output="") from None
        raise
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(proc)
    return _checked(proc.returncode, read_log(log_path, start=start))


def read_log(path: str | Path, *, start: int = 0, limit: int = 1 << 20) -> str:
    """Text of log ``path`` from byte ``start`` on, at most its last ``limit`` bytes."""
    path = Path(path)
    with path.open("rb") as fh:
        fh.seek(max(start, path.stat().st_size - limit))
        return fh.read().decode("utf-8", errors="replace")


def stage_order(repo: str | Path, targets: Sequence[str] | None = None) -> list[str]:
    """Stages needed for ``targets`` (all when empty), upstream first, ties in dvc.yaml order.

    Read through DVC's Python API (the repo index and its graph), not by scraping ``dvc dag``.
    An unknown target raises ``ValueError`` naming the stages there are.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    repo = Path(repo).resolve()
    dvcfile = repo / "dvc.yaml"
    with Repo(str(repo)) as dvc_repo:
        stages = [st for st in dvc_repo.index.stages
                  if isinstance(st, PipelineStage) and Path(st.path).resolve() == dvcfile]
        names = [st.name for st in stages]  # "infer@cls" for a foreach stage
        needed: set[str] = set(names) if not targets else set()
        unknown = []
        for target in targets or []:
            try:  # "<dvc.yaml>:<stage>" does not depend on the working directory
                needed |= {st.name for st in dvc_repo.stage.collect(f"{dvcfile}:{target}", with_deps=True)}
            except DvcException:
                unknown.append(target)
        if unknown:
            raise ValueError(f"{dvcfile}: no stage named {unknown} (stages: {names})")
        upstream: dict[str, set[str]] = {name: set() for name in needed}
        for dependent, dependency in dvc_repo.index.graph.edges():  # DVC's edges point at what a stage needs
            if dependent.name in needed and dependency.name in needed:
                upstream[dependent.name].add(dependency.name)
    order: list[str] = []
    while len(order) < len(needed):
        ready = [n for n in names if n in needed and n not in order and upstream[n] <= set(order)]
        if not ready:
            raise ValueError(f"{dvcfile}: the stages {sorted(needed - set(order))} form a cycle")
        order.append(ready[0])
    return order


def format_overrides(overrides: dict[str, object] | Sequence[str] | None) -> list[str]:
    """``{"demo.seed": 1}`` or ``["demo.seed=1"]`` -> ``["demo.seed=1"]`` (``dvc exp run -S`` syntax)."""
    if not overrides:
        return []
    if isinstance(overrides, dict):
        return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]  # strings double-quoted
    return [str(o) for o in overrides]


def apply_overrides(repo: str | Path, overrides: Sequence[str], *, params_file: str = "params.yaml") -> None:
    """Edit ``params_file`` in place with DVC's own ``-S`` machinery (unknown keys are an error)."""
    from dvc.utils.hydra import apply_overrides as dvc_apply

    path = Path(repo) / params_file
    try:
        dvc_apply(path, list(overrides))
    except Exception as exc:
        raise ValueError(f"{path}: cannot apply overrides {list(overrides)}: {exc.__cause__ or exc}") from exc
