"""The Prefect global concurrency limit that serialises promotions across machines.

Every flow step that can move the registry's ``champion`` alias runs inside
``registry_slot()``: one slot of the global concurrency limit ``colonpipe-registry``
(``prefect gcl create colonpipe-registry --limit 1``, see docs/orchestration.md).
The registry's file lock only serialises one machine; this limit is held on the Prefect
server, so two workers on two machines never promote at the same time.

Prefect 3.8.8 with ``strict=False`` (its default) logs a warning and runs *unserialised*
when the limit does not exist. That would silently drop the guarantee, so here a missing
limit is created with ``limit=1`` (logged), then the slot is taken with ``strict=True``.
An existing limit is used as its owner configured it; an inactive one or one with more
than one slot is logged as a warning (promotion is then not serialised by Prefect).
Waiting is bounded: ``TimeoutError`` after ``timeout_s`` seconds, naming the limit. The
slot is a lease (renewed while held, freed by the server if the holder dies).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.asyncio import AcquireConcurrencySlotTimeoutError
from prefect.concurrency.sync import concurrency
from prefect.exceptions import MissingContextError, ObjectAlreadyExists, ObjectNotFound

REGISTRY_LIMIT = "colonpipe-registry"
REGISTERING_STAGES = frozenset({"register"})  # DVC stages that can move `champion`
SLOT_TIMEOUT_S = 3600.0  # a register step logs and merges a model: minutes, not hours

logger = logging.getLogger(__name__)


def _log():
    try:
        return get_run_logger()
    except MissingContextError:  # outside a flow or task run (a script, a test)
        return logger


def ensure_limit(name: str = REGISTRY_LIMIT) -> None:
    """Create the global concurrency limit ``name`` with one slot if it does not exist."""
    with get_client(sync_client=True) as client:
        try:
            found = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
                _log().info("created global concurrency limit %r (limit 1): promotions are serialised", name)
            except ObjectAlreadyExists:  # another flow created it just now
                pass
            return
    if not found.active or found.limit != 1:
        _log().warning("global concurrency limit %r is %s with limit %d: promotions are not serialised by "
                       "Prefect (set it with `prefect gcl update %s --limit 1 --enable`)",
                       name, "active" if found.active else "inactive", found.limit, name)


@contextlib.contextmanager
def registry_slot(name: str = REGISTRY_LIMIT, *, timeout_s: float = SLOT_TIMEOUT_S) -> Iterator[None]:
    """Hold one slot of ``name`` for the ``with`` block (created with limit 1 if missing)."""
    ensure_limit(name)
    try:
        with concurrency(name, occupy=1, strict=True, timeout_seconds=timeout_s):
            yield
    except AcquireConcurrencySlotTimeoutError as exc:  # the wait, not the body, timed out
        raise TimeoutError(f"global concurrency limit {name!r}: no free slot after {timeout_s:.0f} s "
                           "(another register step holds it; see `prefect gcl inspect "
                           f"{name}`)") from exc


def slot_for(stage: str) -> contextlib.AbstractContextManager:
    """``registry_slot()`` for a stage that can move ``champion``, else a no-op context."""
    return registry_slot() if stage in REGISTERING_STAGES else contextlib.nullcontext()
