"""Per-shard JSONL journals of finished records, and the fingerprint that guards them.

A journal line is ``{"index": <position>, "prediction": "..."}`` or
``{"index": <position>, "error": "..."}``; the position is the record's index in the input
file (ids repeat, positions do not). Lines are appended one finished batch at a time,
flushed and ``os.fsync``'d, so a killed worker loses at most the batch in flight.
Reading tolerates a torn last line (the kill landed mid-write); the writer truncates such a
tail before appending so the file stays one JSON object per line.

A journal directory holds ``fingerprint.json`` (``runner.job_fingerprint``: input, image
roots, model, code, decoding settings, and one image identity per input position).
``prepare_journal_dir`` runs before any worker starts:
- every key but ``images`` equal: resume. Each journal is compacted first: error entries are
  dropped (a rerun retries them: the fix may have been to the data) and so are predictions
  whose position's image identity changed since the last run (a replaced image);
- a key differs: the old journals are stale and are removed;
- ``fingerprint.json`` cannot be read (missing next to journals, unreadable, not JSON):
  ``JournalStateError``, and nothing is deleted: finished predictions are only removed once
  their fingerprint is *known* to differ.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

from colonpipe import atomic

logger = logging.getLogger(__name__)

FINGERPRINT = "fingerprint.json"
JOURNAL_GLOB = "shard-*.jsonl"
IMAGES_KEY = "images"  # fingerprint key compared position by position, not as a whole


class JournalStateError(RuntimeError):
    """The journals' fingerprint cannot be read; nothing was deleted. The message says what to do."""


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


def encode_entries(entries: Iterable[dict[str, Any]]) -> bytes:
    """Journal lines for ``entries`` (one JSON object per line, keys sorted)."""
    return b"".join(json.dumps(e, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n" for e in entries)


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
        payload = encode_entries(entries)
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


def compact_journals(journal_dir: str | Path, keep: Callable[[dict[str, Any]], bool]) -> tuple[int, int]:
    """Rewrite each shard journal with only the entries ``keep`` accepts (the first per
    position across all journals, in file order); ``(kept, dropped)`` entries.

    Each file is locked while rewritten (``JournalLockedError`` if a live worker holds it)
    and replaced atomically; a journal left empty is removed.
    """
    seen: set[int] = set()
    kept_total = dropped = 0
    for path in sorted(Path(journal_dir).glob(JOURNAL_GLOB)):
        with JournalWriter(path):  # the lock; it also cuts a torn tail
            entries = list(read_journal(path).values())
            kept = [e for e in entries if e["index"] not in seen and keep(e)]
            seen.update(e["index"] for e in kept)
            kept_total, dropped = kept_total + len(kept), dropped + len(entries) - len(kept)
            payload = encode_entries(kept)
            if not kept:
                path.unlink()
            elif payload != path.read_bytes():
                atomic.write_bytes(path, payload)
    return kept_total, dropped


def _read_stamp(journal_dir: Path) -> dict[str, Any] | None:
    """The stored fingerprint; None for a fresh folder; ``JournalStateError`` if it is unknown."""
    stamp = journal_dir / FINGERPRINT

    def kept() -> str:
        return (f"the {len(read_journals(journal_dir))} records journaled in {journal_dir} are kept untouched; "
                f"restore the file (or fix its permissions) and rerun, or delete {journal_dir} to start over")
    try:
        old = json.loads(stamp.read_text(encoding="utf-8"))
        if not isinstance(old, dict):
            raise ValueError(f"a JSON {type(old).__name__}, not an object")
        return old
    except FileNotFoundError:
        if journal_dir.is_dir() and any(journal_dir.glob(JOURNAL_GLOB)):
            raise JournalStateError(f"{stamp}: missing, so what produced the journals is unknown; {kept()}") from None
        return None
    except (OSError, ValueError) as exc:
        raise JournalStateError(f"{stamp}: cannot be read ({exc}); {kept()}") from None


def _still_valid(old_images: Any, new_images: Any) -> Callable[[dict[str, Any]], bool]:
    """Entry filter on resume: a prediction whose position's image identity is unchanged."""
    def keep(entry: dict[str, Any]) -> bool:
        if "prediction" not in entry:  # an error: retried on every rerun
            return False
        if old_images is None and new_images is None:  # a fingerprint without image identities
            return True
        i = entry["index"]
        return (isinstance(old_images, list) and isinstance(new_images, list)
                and 0 <= i < min(len(old_images), len(new_images)) and old_images[i] == new_images[i])
    return keep


def prepare_journal_dir(journal_dir: str | Path, fingerprint: dict[str, Any]) -> bool:
    """Make ``journal_dir`` hold journals for ``fingerprint``; return True if it resumes.

    See the module doc: compacts on resume, wipes on a known difference, raises
    ``JournalStateError`` (deleting nothing) when the stored fingerprint cannot be read.
    """
    journal_dir = Path(journal_dir)
    old = _read_stamp(journal_dir)
    static = {k: v for k, v in fingerprint.items() if k != IMAGES_KEY}
    resumed = old is not None and {k: v for k, v in old.items() if k != IMAGES_KEY} == static
    if resumed:  # compact before the new stamp: a kill in between compacts again next time
        kept, dropped = compact_journals(journal_dir, _still_valid(old.get(IMAGES_KEY), fingerprint.get(IMAGES_KEY)))
        logger.info("%s: resuming with %d finished predictions; %d entries to redo (errors, changed images)",
                    journal_dir, kept, dropped)
    else:
        if old is not None:
            logger.info("%s: fingerprint changed; discarding old journals", journal_dir)
        if journal_dir.exists():  # only stale journals, or none at all (see _read_stamp)
            shutil.rmtree(journal_dir)
        journal_dir.mkdir(parents=True)
    atomic.write_json(journal_dir / FINGERPRINT, fingerprint, indent=1, sort_keys=True, ensure_ascii=True)
    return resumed
