"""Run the ``dvc`` command line from flows: streamed output, process groups, typed errors.

Contract:
- ``run_command(argv, cwd=...)`` starts ``argv`` in its **own process group**, streams every
  output line (stdout and stderr merged) to ``on_line``, and returns the collected output.
  On any exception in the caller's thread (Prefect's cancellation raises ``TerminationSignal``,
  Ctrl-C raises ``KeyboardInterrupt``) the whole group (dvc and the stage command it started)
  gets SIGTERM, then SIGKILL after ``grace_s`` seconds, before the exception propagates.
- A non-zero exit raises ``CommandFailed`` whose message is the command's own error text
  (the last exception line and dvc's ``ERROR:`` lines); lock contention raises the
  ``TransientDvcError`` subclass, the only error worth a retry.
- ``stage_order(repo, targets)`` lists the stages ``dvc repro <targets>`` would consider,
  upstream first, in ``dvc.yaml`` order where the graph leaves a choice.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Callable, Iterable, Sequence

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
    proc.wait()


def kill_all_live(*, grace_s: float = 10.0) -> None:
    """Kill every process group started by ``run_command`` that is still running."""
    with _LIVE_LOCK:
        procs = list(_LIVE)
    for proc in procs:
        kill_group(proc, grace_s=grace_s)


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


def run_command(
    argv: Sequence[str],
    *,
    cwd: str | Path,
    env: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    grace_s: float = 10.0,
) -> str:
    """Run ``argv`` in its own process group; stream lines to ``on_line``; return all output."""
    on_line = on_line or logger.info
    proc = subprocess.Popen(
        list(argv), cwd=str(cwd), env=env if env is not None else child_env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        text=True, errors="replace", bufsize=1, start_new_session=True,
    )
    with _LIVE_LOCK:
        _LIVE.add(proc)
    out: deque[str] = deque(maxlen=2000)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            out.append(line)
            if line.strip():
                on_line(line)
        proc.wait()
    except BaseException:
        logger.warning("interrupted: stopping process group %d (%s)", proc.pid, " ".join(argv[:3]))
        kill_group(proc, grace_s=grace_s)
        raise
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(proc)
    text = "\n".join(out)
    if proc.returncode != 0:
        message = error_message(text)
        kind = TransientDvcError if is_transient(text) else CommandFailed
        raise kind(message, returncode=proc.returncode, output=text)
    return text


def _dot_graph(repo: Path, targets: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Nodes and (upstream, downstream) edges from ``dvc dag --dot [targets]``."""
    nodes: list[str] = []
    edges: list[tuple[str, str]] = []
    for target in list(targets) or [None]:
        argv = [dvc_executable(), "dag", "--dot"] + ([target] if target else [])
        dot = run_command(argv, cwd=repo, on_line=lambda _l: None)
        for a, b in re.findall(r'^"([^"]+)"\s*->\s*"([^"]+)";?$', dot, flags=re.M):
            edges.append((a, b))
        nodes += [n for n in re.findall(r'^"([^"]+)";?$', dot, flags=re.M) if n not in nodes]
    return nodes, sorted(set(edges))


def stage_order(repo: str | Path, targets: Sequence[str] | None = None) -> list[str]:
    """Stages needed for ``targets`` (all when empty), upstream first, ties in dvc.yaml order."""
    repo = Path(repo)
    listed = run_command([dvc_executable(), "stage", "list", "--all", "--name-only"],
                         cwd=repo, on_line=lambda _l: None).split()
    unknown = [t for t in (targets or []) if t not in listed and not any(s.startswith(f"{t}@") for s in listed)]
    if unknown:
        raise ValueError(f"{repo / 'dvc.yaml'}: no stage named {unknown} (stages: {listed})")
    nodes, edges = _dot_graph(repo, targets or [])
    rank = {name: i for i, name in enumerate(listed)}
    indeg = {n: 0 for n in nodes}
    for _, b in edges:
        indeg[b] += 1
    ready = sorted((n for n, d in indeg.items() if d == 0), key=lambda n: rank.get(n, len(rank)))
    order: list[str] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for a, b in edges:
            if a == node:
                indeg[b] -= 1
                if indeg[b] == 0:
                    ready.append(b)
        ready.sort(key=lambda n: rank.get(n, len(rank)))
    return order


def format_overrides(overrides: dict[str, object] | Sequence[str] | None) -> list[str]:
    """``{"demo.seed": 1}`` or ``["demo.seed=1"]`` -> ``["demo.seed=1"]`` (``dvc exp run -S`` syntax)."""
    if not overrides:
        return []
    if isinstance(overrides, dict):
        import json

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
