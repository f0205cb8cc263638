"""The DVC command-line layer under the flows: stage order, errors, process groups, pipes, sweeps' parsing."""

from __future__ import annotations

import os
import sys
import time

import pytest
import yaml

from flows import dvc_cli
from flows import dvc_experiments as dx
from tests.flows.conftest import make_tiny_repo

pytestmark = pytest.mark.integration

EXTRA = "  report:\n    cmd: python -c \"print('report')\"\n    deps: [m.json]\n"


def test_stage_order_is_dag_order_and_targets_take_their_upstream(tmp_path):
    repo = make_tiny_repo(tmp_path / "r", extra_stages=EXTRA)
    assert dvc_cli.stage_order(repo) == ["one", "two", "report"]
    assert dvc_cli.stage_order(repo, ["two"]) == ["one", "two"]
    with pytest.raises(ValueError, match=r"dvc\.yaml.*no stage named \['nope'\]"):
        dvc_cli.stage_order(repo, ["nope"])


def test_error_message_is_the_stage_own_words():
    out = ("Running stage 'two':\n> python two.py\nloading\ntwo: the word 'fail' is not allowed\n"
           "ERROR: failed to reproduce 'two': failed to run: python two.py, exited with 1\n"
           "ERROR: failed to reproduce 'two': failed to run: python two.py, exited with 1\n")
    assert dvc_cli.error_message(out).splitlines() == [
        "loading", "two: the word 'fail' is not allowed",
        "ERROR: failed to reproduce 'two': failed to run: python two.py, exited with 1"]
    tb = ("> python x.py\nTraceback (most recent call last):\n  File \"x.py\", line 3\n"
          "colonpipe.params.ParamsError: params.yaml: 1 problem(s):\n  instruct.seed: expected int\n"
          "ERROR: failed to reproduce 'x'\n")
    assert dvc_cli.error_message(tb).splitlines()[:2] == [
        "colonpipe.params.ParamsError: params.yaml: 1 problem(s):", "  instruct.seed: expected int"]


def test_only_dvc_own_lock_or_network_errors_are_transient():
    assert dvc_cli.is_transient("ERROR: Unable to acquire lock. Most likely another DVC process is running")
    assert not dvc_cli.is_transient("requests: connection refused\nERROR: failed to reproduce 'x': exited 1")


def test_failed_command_raises_with_its_message(tmp_path):
    with pytest.raises(dvc_cli.CommandFailed, match="disk is on fire") as info:
        dvc_cli.run_command([sys.executable, "-c", "import sys; print('x'); sys.exit('disk is on fire')"],
                            cwd=tmp_path, on_line=lambda _l: None)
    assert info.value.returncode == 1 and not isinstance(info.value, dvc_cli.TransientDvcError)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_interrupt_kills_the_whole_process_group(tmp_path):
    code = ("import subprocess, sys, time\n"
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
            "print('pids', c.pid, flush=True)\ntime.sleep(300)\n")
    seen: list[int] = []

    def on_line(line: str) -> None:
        if line.startswith("pids"):
            seen.append(int(line.split()[1]))
            raise KeyboardInterrupt  # what Ctrl-C / Prefect's cancellation does in the caller
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        dvc_cli.run_command([sys.executable, "-c", code], cwd=tmp_path, on_line=on_line, grace_s=5)
    assert seen and time.monotonic() - start < 30
    deadline = time.monotonic() + 5
    while _alive(seen[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(seen[0]), "the grandchild survived"


def test_overrides_use_dvc_set_param_syntax_and_reject_unknown_keys(tmp_path):
    repo = make_tiny_repo(tmp_path / "r")
    dvc_cli.apply_overrides(repo, dvc_cli.format_overrides({"a.n": 5, "b.word": "ok"}))
    text = (repo / "params.yaml").read_text()
    assert yaml.safe_load(text) == {"a": {"n": 5}, "b": {"word": "ok"}}
    assert "# how many" in text  # comments survive, as with dvc exp run -S
    with pytest.raises(ValueError, match=r"params\.yaml: cannot apply overrides"):
        dvc_cli.apply_overrides(repo, ["a.typo=1"])


def test_grid_and_points_expand_to_override_lists():
    assert dx.expand_points({"x.lr": [0.1, 0.2], "x.r": [8]}, [{"x.lr": 1, "x.name": "a"}]) == [
        ["x.lr=0.1", "x.r=8"], ["x.lr=0.2", "x.r=8"], ["x.lr=1", "x.name=\"a\""]]
    with pytest.raises(ValueError, match="non-empty lists"):
        dx.expand_points({"x.lr": 0.1})
    with pytest.raises(ValueError, match="duplicate"):
        dx.expand_points(points=[{"a": 1}, {"a": 1}])
    with pytest.raises(ValueError, match="non-empty grid"):
        dx.expand_points()


def test_exp_show_parsing():
    show = [{"rev": "workspace", "experiments": None},
            {"rev": "abc", "name": "main", "experiments": [
                {"name": "sw-1", "executor": {"state": "success"}, "revs": [
                    {"rev": "r1", "name": "sw-1", "error": None, "data": {
                        "params": {"params.yaml": {"data": {"b": {"word": "ab"}}}},
                        "metrics": {"m.json": {"data": {"score": 6, "nested": {"len": 2}}}}}}]},
                {"name": "sw-2", "executor": {"state": "failed"}, "revs": [
                    {"rev": "r2", "name": "sw-2", "error": {"msg": "Experiment run failed"}, "data": {
                        "params": {}, "metrics": {"m.json": {"error": {"msg": "missing"}}}}}]}]}]
    recs = dx.experiment_records(show)
    assert recs["sw-1"].metrics == {"m.json:score": 6.0, "m.json:nested.len": 2.0}
    assert recs["sw-1"].params == {"b.word": "ab"}
    assert recs["sw-2"].status == "failed" and recs["sw-2"].metrics == {}
    assert dx.metric_value(recs["sw-1"].metrics, "score") == 6.0
    assert dx.best_experiment(recs.values(), "m.json:score").name == "sw-1"
    assert dx.best_experiment(recs.values(), "absent") is None


def test_error_message_prefers_logged_errors_over_the_log_tail():
    out = ("> python stages/evaluate.py\n2026 INFO score: baselines from 48 records\n"
           "2026 ERROR stages.evaluate: pred.json: 4 records but its source has 22\n"
           "ERROR: failed to reproduce 'evaluate': exited with 1\n")
    assert dvc_cli.error_message(out).splitlines() == [
        "2026 ERROR stages.evaluate: pred.json: 4 records but its source has 22",
        "ERROR: failed to reproduce 'evaluate': exited with 1"]


# A daemon that inherits the pipe, as `dvc queue start`'s workers do: own session, sleeps on.
DAEMON_PARENT = (
    "import subprocess, sys\n"
    "d = subprocess.Popen([sys.executable, '-c', 'import time; print(\"daemon up\", flush=True); time.sleep(300)'],"
    " start_new_session=True)\n"
    "print('daemon', d.pid, flush=True)\nprint('parent done', flush=True)\n"
)


def _wait_gone(pid: int, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def _daemon_pid(text: str) -> int:
    return int(next(ln for ln in text.splitlines() if ln.startswith("daemon ")).split()[1])


def test_a_daemon_holding_the_pipe_does_not_hold_the_caller(tmp_path):
    start = time.monotonic()
    text = dvc_cli.run_command([sys.executable, "-c", DAEMON_PARENT], cwd=tmp_path, on_line=lambda _l: None,
                               drain_s=1.0)
    took = time.monotonic() - start
    daemon = _daemon_pid(text)
    try:
        assert took < 10, f"run_command waited {took:.1f}s on a pipe its daemon holds"
        assert "parent done" in text.splitlines()
        assert _alive(daemon)  # a daemon is not the command's to kill on success
    finally:
        os.kill(daemon, 9)
    assert _wait_gone(daemon)


def test_timeout_kills_the_group_and_says_so(tmp_path):
    code = "import time; print('started', flush=True); time.sleep(300)"
    start = time.monotonic()
    with pytest.raises(dvc_cli.CommandTimeout, match=r"no result after 1s") as info:
        dvc_cli.run_command([sys.executable, "-c", code], cwd=tmp_path, on_line=lambda _l: None, timeout_s=1,
                            grace_s=2)
    assert time.monotonic() - start < 10 and "started" in info.value.output


def test_output_is_decoded_like_text_mode_and_long_lines_are_cut(tmp_path):
    code = "import sys; sys.stdout.write('a\\r\\nb\\rc\\n' + 'x' * 200000 + '\\nno newline at end \\xe9')"
    lines: list[str] = []
    text = dvc_cli.run_command([sys.executable, "-c", code], cwd=tmp_path, on_line=lines.append)
    assert lines[:3] == ["a", "b", "c"] and lines[-1] == "no newline at end \u00e9"
    assert "".join(lines[3:-1]) == "x" * 200000 and max(map(len, lines)) <= 2 * 65536
    assert text.endswith("no newline at end \u00e9")


def test_run_logged_never_pipes_waits_with_a_deadline_and_reaps(tmp_path):
    import psutil

    log = tmp_path / "logs" / "start.log"
    start = time.monotonic()
    text = dvc_cli.run_logged([sys.executable, "-c", DAEMON_PARENT], cwd=tmp_path, log_path=log, timeout_s=30)
    daemon = _daemon_pid(text)
    try:
        assert time.monotonic() - start < 10 and "parent done" in text
        assert not [c for c in psutil.Process().children() if c.status() == psutil.STATUS_ZOMBIE]
    finally:
        os.kill(daemon, 9)
    with pytest.raises(dvc_cli.CommandFailed, match="disk is on fire"):
        dvc_cli.run_logged([sys.executable, "-c", "import sys; sys.exit('disk is on fire')"], cwd=tmp_path,
                           log_path=log)
    with pytest.raises(dvc_cli.CommandTimeout, match=r"still running after 1s.*start\.log"):
        dvc_cli.run_logged([sys.executable, "-c", "import time; time.sleep(300)"], cwd=tmp_path, log_path=log,
                           timeout_s=1, grace_s=2)
    assert "parent done" in log.read_text() and "disk is on fire" in log.read_text()  # appended, not replaced
