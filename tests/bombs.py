"""Hand-built decompression bombs: PNG files of a few dozen bytes whose header declares a huge size.

Layout (PNG spec, https://www.w3.org/TR/png/#5DataRep): the 8-byte signature, then chunks of
``length (4, big-endian) | type (4) | data | CRC-32 of type+data (4)``. ``IHDR`` (13 bytes:
width, height, bit depth, colour type, compression, filter, interlace) declares the size;
one ``IDAT`` holds a deflate stream far too short for that size, then ``IEND``. PIL reads the
header lazily, so ``Image.open`` sees the declared size before any pixel is decoded.
"""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

from PIL import Image

# PIL's limits: a warning above MAX_IMAGE_PIXELS, DecompressionBombError above twice that.
ERROR_SIDE = 100_000  # 100000 x 100000 = 1e10 pixels: PIL raises DecompressionBombError at open
WARNING_SIDE = 10_000  # 1e8 pixels: above MAX_IMAGE_PIXELS (89.5 M), below 2x: only a warning in PIL


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int, height: int) -> bytes:
    """A tiny 1-bit greyscale PNG whose IHDR declares ``width`` x ``height`` pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 64, 9))
            + _chunk(b"IEND", b""))


def write_bomb(path: Path, side: int = ERROR_SIDE) -> Path:
    """Write a ``side`` x ``side`` PNG bomb to ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bomb(side, side))
    return path


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_declares(data: bytes, side: int) -> None:
    """Sanity check of a fixture: PIL parses the header and sees ``side`` x ``side``."""
    import io
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(io.BytesIO(data)) as im:
                assert im.size == (side, side) and im.format == "PNG"
        finally:
            Image.MAX_IMAGE_PIXELS = old
