"""Per-shard JSONL journals of finished records, and the fingerprint that guards them.

A journal line is ``{"index": <position>, "prediction": "..."}`` or
``{"index": <position>, "error": "..."}``; the position is the record's index in the input
file (ids repeat, positions do not). Lines are appended one finished batch at a time,
flushed and ``os.fsync``'d, so a killed worker loses at most the batch in flight.
Reading tolerates a torn last line (the kill landed mid-write); the writer truncates such a
tail before appending so the file stays one JSON object per line.

A journal directory holds ``fingerprint.json`` (model, input and decoding settings). If it
differs from the current run's fingerprint, the old journals are stale and are removed.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

from colonpipe import atomic

logger = logging.getLogger(__name__)

FINGERPRINT = "fingerprint.json"
JOURNAL_GLOB = "shard-*.jsonl"


def journal_path(journal_dir: str | Path, shard: int, num_shards: int) -> Path:
    """File of shard ``shard`` of ``num_shards`` inside ``journal_dir``."""
    return Path(journal_dir) / f"shard-{shard:03d}-of-{num_shards:03d}.jsonl"


def read_journal(path: str | Path) -> dict[int, dict[str, Any]]:
    """``{position: entry}`` from one journal; a torn or garbled line is skipped with a warning."""
    path = Path(path)
    out: dict[int, dict[str, Any]] = {}
    if not path.exists():
        return out
    *lines, tail = path.read_bytes().split(b"\n")
    if tail:  # no newline yet: the write was cut short; the writer truncates it on reopen
        logger.warning("%s: ignoring a torn last line (that record will be redone)", path)
    for lineno, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
            index = entry["index"]
            if not isinstance(index, int) or not ({"prediction", "error"} & entry.keys()):
                raise ValueError("not a journal entry")
        except (ValueError, KeyError, TypeError):
            logger.warning("%s: skipping garbled line %d (that record will be redone)", path, lineno)
            continue
        out.setdefault(index, entry)
    return out


def read_journals(journal_dir: str | Path) -> dict[int, dict[str, Any]]:
    """Union of every shard journal in ``journal_dir`` (any shard count): ``{position: entry}``."""
    done: dict[int, dict[str, Any]] = {}
    for path in sorted(Path(journal_dir).glob(JOURNAL_GLOB)):
        for index, entry in read_journal(path).items():
            done.setdefault(index, entry)
    return done


class JournalLockedError(RuntimeError):
    """Another live process is writing this journal."""


class JournalWriter:
    """Append-only writer for one shard journal; each ``append`` is durable when it returns.

    Holds an exclusive ``flock`` on the file while open, so two workers (e.g. an orphan of
    a killed run and its rerun) can never interleave lines in one journal.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+b")
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            raise JournalLockedError(f"{self.path}: another worker is writing this journal") from None
        self._repair_tail()

    def _repair_tail(self) -> None:
        """Cut a torn last line (no trailing newline) so new lines start on a fresh line."""
        size = self._fh.seek(0, os.SEEK_END)
        if size == 0:
            return
        self._fh.seek(size - 1)
        if self._fh.read(1) == b"\n":
            return
        self._fh.seek(0)
        data = self._fh.read()
        keep = data.rfind(b"\n") + 1
        logger.warning("%s: truncating a torn last line (%d bytes)", self.path, size - keep)
        self._fh.truncate(keep)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def append(self, entries: Iterable[dict[str, Any]]) -> None:
        """Write ``entries`` as JSON lines in one write, then flush and fsync."""
        payload = b"".join(
            json.dumps(e, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n" for e in entries
        )
        if not payload:
            return
        self._fh.seek(0, os.SEEK_END)
        self._fh.write(payload)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "JournalWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def prepare_journal_dir(journal_dir: str | Path, fingerprint: dict[str, Any]) -> bool:
    """Make ``journal_dir`` hold journals for ``fingerprint``; return True if it resumes.

    A missing, unreadable or different ``fingerprint.json`` wipes the folder (the journals
    were written by another model, input or decoding setting) and writes the new one.
    """
    journal_dir = Path(journal_dir)
    stamp = journal_dir / FINGERPRINT
    try:
        if json.loads(stamp.read_text()) == fingerprint:
            return True
    except (OSError, ValueError):
        pass
    if journal_dir.exists():
        logger.info("%s: fingerprint changed or missing; discarding old journals", journal_dir)
        shutil.rmtree(journal_dir)
    journal_dir.mkdir(parents=True)
    atomic.write_text(stamp, json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")
    return False
