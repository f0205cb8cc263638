"""The cross-machine registry slot: a Prefect global concurrency limit on the test server.

Prefect 3.8.8 skips a limit that does not exist (a warning, no serialisation at all);
``registry_slot`` creates it with one slot instead, waits for it with a deadline, and the
pipeline flow holds it exactly while its ``register`` stage runs.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound

from flows.pipeline import pipeline
from flows.registry_slot import REGISTRY_LIMIT, registry_slot
from tests.flows.conftest import make_tiny_repo

pytestmark = pytest.mark.integration

HOLD_PY = """\
import pathlib, time
pathlib.Path("started").touch()
deadline = time.monotonic() + 60
while not pathlib.Path("release").exists():
    if time.monotonic() > deadline:
        raise SystemExit("register: no release within 60 s")
    time.sleep(0.05)
pathlib.Path("registered.txt").write_text("ok")
"""


def _limit():
    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(REGISTRY_LIMIT)
        except ObjectNotFound:
            return None


@pytest.fixture
def no_limit(prefect_api):
    """The server without the registry limit (as on a fresh server); removed again afterwards."""
    def drop():
        with get_client(sync_client=True) as client:
            try:
                client.delete_global_concurrency_limit_by_name(REGISTRY_LIMIT)
            except ObjectNotFound:
                pass
    drop()
    yield
    drop()


def test_prefect_skips_a_missing_limit_so_the_slot_creates_it(no_limit):
    with concurrency(REGISTRY_LIMIT, strict=False):  # Prefect's default: nothing is held ...
        with concurrency(REGISTRY_LIMIT, strict=False, timeout_seconds=1):  # ... so both get in
            pass
    assert _limit() is None
    with registry_slot():
        limit = _limit()
        assert (limit.limit, limit.active, limit.active_slots) == (1, True, 1)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match=r"'colonpipe-registry': no free slot after 1 s"):
            with registry_slot(timeout_s=1):
                pass
        assert time.monotonic() - t0 < 30
    assert _limit().active_slots == 0


def test_a_misconfigured_limit_is_used_and_reported(no_limit, caplog):
    with registry_slot():
        pass
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(REGISTRY_LIMIT, GlobalConcurrencyLimitUpdate(limit=3))
    with caplog.at_level(logging.WARNING, logger="flows.registry_slot"):
        with registry_slot():
            with registry_slot(timeout_s=5):  # three slots: a second holder gets in
                pass
    assert "promotions are not serialised by Prefect" in caplog.text


def test_the_pipeline_holds_the_slot_while_register_runs(no_limit, tmp_path):
    root = tmp_path / "tiny"
    root.mkdir()
    (root / "hold.py").write_text(HOLD_PY)
    repo = make_tiny_repo(root, extra_stages=(
        "  register:\n    cmd: python hold.py\n    deps: [hold.py]\n    outs: [registered.txt]\n"))
    seen: dict[str, object] = {}

    def observe():
        deadline = time.monotonic() + 120
        while not (repo / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen["during"] = _limit()
        (repo / "release").touch()

    watcher = threading.Thread(target=observe)
    watcher.start()
    try:
        state = pipeline(repo=str(repo), targets=["register"], return_state=True)
    finally:
        (repo / "release").touch()
        watcher.join(timeout=150)
    assert state.is_completed(), state.message
    assert state.result() == [{"stage": "register", "ran": True}]
    during = seen["during"]
    assert during is not None and (during.limit, during.active_slots) == (1, 1)
    assert _limit().active_slots == 0
