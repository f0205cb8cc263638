"""What a request to the served model may hold; a bad row is an HTTP 400 naming the row.

Contract (limits and roots come from ``ServeConfig``, see ``serve_config``):
- ``check_frame``: a DataFrame, a list of row dicts or a dict of columns, with ``image`` and
  ``question`` columns and at most ``max_rows`` rows.
- ``human_turn``: a non-empty string of at most ``max_question_chars`` characters, holding at
  most one ``<image>`` (``"<image>\\n"`` is put first when it has none).
- ``decode_image``: the ``image`` cell as an RGB ``PIL.Image``.
  - base64 image bytes (a ``data:image/...;base64,`` prefix and line breaks are fine). The
    encoded length is checked against ``max_image_bytes`` before decoding.
  - an absolute path, only when ``image_roots`` is set and the path is under a root. It is
    resolved (symlinks, ``..``) and must still be under a root; it is opened without following
    a link, non-blocking, and must be a regular file of at most ``max_image_bytes``. A path
    that is missing, unreadable, not a regular file or resolves outside every root gets one
    and the same message. A value that is not under a root is taken as base64, so a path
    elsewhere (``/etc/passwd``) is never touched and is refused as invalid base64.
  - the header's width x height is checked against ``max_pixels`` (and PIL's limit) before
    any pixel is decoded.
  No message echoes the submitted value or a path.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import stat
from pathlib import Path
from typing import Any, Optional

import pandas as pd
from PIL import Image

from colonpipe.coloninst import IMAGE_TOKEN
from colonpipe.data.images import ImageBombError, ImageError, load_rgb
from colonpipe.register.serve_config import ServeConfig, bad_input

MAX_PATH_CHARS = 4096  # PATH_MAX on Linux: anything longer is not a path


def check_frame(model_input: Any, config: ServeConfig) -> pd.DataFrame:
    """The request as a DataFrame (index 0..n-1); 400 for missing columns or too many rows."""
    frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
    missing = {"image", "question"} - set(frame.columns)
    if missing:
        raise bad_input(f"input lacks column(s) {sorted(missing)}; expected image, question[, task]")
    if len(frame) > config.max_rows:
        raise bad_input(f"request has {len(frame)} rows; this model answers at most {config.max_rows} "
                        "per request (serve config max_rows)")
    return frame.reset_index(drop=True)


def human_turn(question: Any, *, row: int, max_chars: int = ServeConfig.max_question_chars) -> str:
    """The ColonINST human turn for ``question``: exactly one ``<image>``, first when added."""
    if not isinstance(question, str) or not question.strip():
        raise bad_input(f"row {row}: 'question' must be a non-empty string, got {type(question).__name__}")
    if len(question) > max_chars:
        raise bad_input(f"row {row}: 'question' is {len(question):,} characters; the limit is {max_chars:,} "
                        "(serve config max_question_chars)")
    count = question.count(IMAGE_TOKEN)
    if count > 1:
        raise bad_input(f"row {row}: 'question' holds {count} {IMAGE_TOKEN} placeholders; one image per row")
    return question if count == 1 else f"{IMAGE_TOKEN}\n{question}"


def decode_image(value: Any, *, row: int, config: Optional[ServeConfig] = None) -> Image.Image:
    """A row's ``image`` cell -> RGB ``PIL.Image`` (module docstring); 400 naming the row otherwise."""
    config = config or ServeConfig()
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("ascii", errors="replace")
    if not isinstance(value, str) or not value.strip():
        raise bad_input(f"row {row}: 'image' must be a non-empty base64 string, got {type(value).__name__}")
    text = value.strip()
    if text.startswith("data:") and "," in text:
        raw, label = _from_base64(text.split(",", 1)[1], row=row, config=config), "base64 image"
    elif _under_roots(text, config.image_roots):
        raw, label = _read_allowed(text, row=row, config=config), "image file"
    else:
        raw, label = _from_base64(text, row=row, config=config), "base64 image"
    try:
        return load_rgb(io.BytesIO(raw), label=f"row {row}: {label} ({len(raw):,} bytes)",
                        max_pixels=config.max_pixels)
    except ImageBombError as exc:
        raise bad_input(f"{exc} (serve config max_pixels)") from None
    except ImageError as exc:
        raise bad_input(str(exc)) from None


def _too_big(row: int, size: int, limit: int) -> Exception:
    return bad_input(f"row {row}: image is {size:,} bytes; the limit is {limit:,} (serve config max_image_bytes)")


def _from_base64(text: str, *, row: int, config: ServeConfig) -> bytes:
    """Decode base64 ``text`` (whitespace ignored) after checking its length against the limit."""
    limit = config.max_image_bytes
    encoded = 4 * -(-limit // 3)  # the base64 length of `limit` bytes
    compact = "".join(text.split()) if len(text) <= 2 * encoded else text  # no copy of a huge value
    if len(compact) > encoded:
        raise _too_big(row, len(compact) * 3 // 4, limit)
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        hint = ("nor an absolute path under the serve config's image_roots" if config.image_roots
                else "(this model takes no file paths: its serve config lists no image_roots)")
        raise bad_input(f"row {row}: 'image' is not valid base64 image data {hint}") from None
    if not raw:
        raise bad_input(f"row {row}: 'image' is empty")
    if len(raw) > limit:
        raise _too_big(row, len(raw), limit)
    return raw


def _under_roots(text: str, roots: tuple[str, ...]) -> bool:
    """Whether ``text`` is an absolute path lexically under a root (``..`` collapsed, no I/O)."""
    if not roots or not text.startswith("/") or len(text) > MAX_PATH_CHARS or "\x00" in text:
        return False
    path = Path(os.path.normpath(text))
    return any(path.is_relative_to(r) or path.is_relative_to(os.path.realpath(r)) for r in roots)


def _read_allowed(text: str, *, row: int, config: ServeConfig) -> bytes:
    """The bytes of the file ``text`` names if it resolves under a root and is a regular file."""
    unreadable = bad_input(f"row {row}: 'image' names no readable image file under the serve config's "
                           "image_roots")
    real = Path(os.path.realpath(text))
    if not any(real.is_relative_to(os.path.realpath(r)) for r in config.image_roots):
        raise unreadable  # a symlink (or a symlinked folder) leading out of every root
    try:
        # No link at the last component (a swap after realpath), no blocking on a FIFO.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        raise unreadable from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # a folder, FIFO, device, socket
            raise unreadable
        if info.st_size > config.max_image_bytes:
            raise _too_big(row, info.st_size, config.max_image_bytes)
        raw = _read_at_most(fd, config.max_image_bytes + 1)
    except OSError:
        raise unreadable from None
    finally:
        os.close(fd)
    if len(raw) > config.max_image_bytes:  # the file grew after fstat
        raise _too_big(row, len(raw), config.max_image_bytes)
    return raw


def _read_at_most(fd: int, limit: int) -> bytes:
    """Up to ``limit`` bytes from ``fd`` (fewer at end of file)."""
    chunks, left = [], limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
