"""Atomic writes: the one mechanism every stage uses for its outputs (standard library only).

``write_bytes``/``write_text`` write to a unique temp file in the target's folder, fsync it,
``os.replace`` it over the target and fsync the folder, so a reader (or a killed run) sees the
old file or the new one, never a torn one. The temp file is removed if anything fails.
``write_json``/``write_csv``/``write_png`` serialise through them. ``replace_dir`` swaps a
finished folder in: the old one is moved aside first and deleted only once the new one is in
place, so there is never a moment with no output.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically replace ``path`` with ``data`` (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Atomically replace ``path`` with UTF-8 ``text``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2, sort_keys: bool = False,
               ensure_ascii: bool = False, allow_nan: bool = True,
               default: Callable[[Any], Any] | None = None) -> Path:
    """Atomically write ``json.dumps(obj, ...) + "\n"`` (UTF-8), options as ``json.dumps``'s.

    With ``allow_nan=False`` a NaN or infinity raises ``ValueError`` naming ``path``. A string
    that cannot be UTF-8 encoded (a lone surrogate) is written with ``\\uXXXX`` escapes instead.
    """
    try:
        text = json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii,
                          allow_nan=allow_nan, default=default) + "\n"
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raw = (json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=True,
                          allow_nan=allow_nan, default=default) + "\n").encode("ascii")
    return write_bytes(path, raw)


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Atomically write a CSV (``\\n`` line ends) with ``header`` then ``rows``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return write_bytes(path, buf.getvalue().encode("utf-8", errors="backslashreplace"))


def write_png(path: str | Path, figure: Any, *, dpi: int = 100, metadata: dict | None = None) -> Path:
    """Atomically write a matplotlib ``figure`` as PNG (``metadata={"Software": None}`` drops the
    matplotlib version, so the bytes do not change with it)."""
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=dpi, metadata=metadata)
    return write_bytes(path, buf.getvalue())


def fsync_dir(path: str | Path) -> None:
    """fsync a folder (or file) so a rename inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_dir(new: str | Path, target: str | Path) -> Path:
    """Move the finished folder ``new`` to ``target``, replacing any old ``target``.

    The old folder is renamed aside (``<target>.old``) before the new one is renamed in and is
    deleted only after that, so ``target`` is never missing for longer than between two renames
    and a crash leaves either the old or the new folder (plus ``.old`` to clean). ``new`` must
    be on the same filesystem (make it beside ``target``).
    """
    new, target = Path(new), Path(target)
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    moved = target.exists()
    if moved:
        os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        if moved:
            os.replace(old, target)  # put the old output back
        raise
    fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)
    return target


@contextmanager
def staged_dir(target: str | Path) -> Iterator[Path]:
    """A fresh temp folder beside ``target`` to write a whole output folder into.

    When the block ends normally the folder replaces ``target`` (:func:`replace_dir`); when it
    raises, the temp folder is deleted and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary output folder
    try:
        yield tmp
        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
