"""Resolve record ids to image files, and load images safely.

A record ``id`` is ``<dataset>/<path inside that dataset's root>`` (for the official
release: the path relative to ``Positive-images``). ``ImageResolver`` maps ids back to
files either through one root folder (``root/id``) or through a JSON file
``{dataset: root}`` written by ``ingest`` (relative roots are taken from the JSON's folder's
working directory, i.e. the repo root). Every resolved path must stay inside its root.

Decompression bombs: ``open_image`` and ``load_rgb`` read the header first and refuse an image
that declares more pixels than allowed (``ImageBombError``, kind ``decompression_bomb``) before
any pixel is decoded. The limit is PIL's ``Image.MAX_IMAGE_PIXELS`` (PIL itself only warns
between that and twice that), or a lower ``max_pixels`` the caller passes (the served model's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

BOMB_KIND = "decompression_bomb"  # the skip / error kind reported for a refused bomb
BOMB_REFUSED = "decompression bomb refused before decoding"
# What PIL raises for a bomb: the error above 2 x MAX_IMAGE_PIXELS, and the warning above
# MAX_IMAGE_PIXELS when warnings are errors (``-W error``); otherwise check_pixels refuses those.
PIL_BOMBS = (Image.DecompressionBombError, Image.DecompressionBombWarning)


class ImageError(ValueError):
    """An image that cannot be resolved or read; the message names the file."""


class ImageBombError(ImageError):
    """An image whose header declares more pixels than allowed: refused before decoding."""

    kind = BOMB_KIND


@dataclass(frozen=True)
class ImageResolver:
    roots: dict[str, Path] | None = None  # dataset -> root; None means single root
    root: Path | None = None

    @classmethod
    def from_path(cls, path: str | Path) -> "ImageResolver":
        """A folder is a single image root; a ``.json`` file is a ``{dataset: root}`` map."""
        path = Path(path)
        if path.is_dir():
            return cls(root=path)
        if path.suffix == ".json" and path.is_file():
            data = json.loads(path.read_text())
            return cls(roots={k: Path(v) for k, v in data.items()})
        raise ImageError(f"{path}: image root is neither a folder nor a roots .json file")

    def resolve(self, record_id: str) -> Path:
        """Path of the image for ``record_id``; raises ``ImageError`` if it escapes its root."""
        if self.root is not None:
            base, rel = self.root, record_id
        else:
            dataset, _, rel = record_id.partition("/")
            if dataset not in (self.roots or {}):
                raise ImageError(f"{record_id}: unknown dataset {dataset!r} (no image root)")
            base = self.roots[dataset]
        path = (base / rel).resolve()
        if not path.is_relative_to(base.resolve()):
            raise ImageError(f"{record_id}: path escapes image root {base}")
        return path


def pixel_limit(max_pixels: int | None = None) -> int | None:
    """The tighter of ``max_pixels`` and PIL's ``Image.MAX_IMAGE_PIXELS`` (None: no limit)."""
    limits = [n for n in (max_pixels, Image.MAX_IMAGE_PIXELS) if n is not None]
    return min(limits) if limits else None


def check_pixels(size: tuple[int, int], *, label: str = "", max_pixels: int | None = None) -> None:
    """Raise ``ImageBombError`` when ``size`` (width, height) exceeds :func:`pixel_limit`."""
    limit = pixel_limit(max_pixels)
    w, h = size
    if limit is not None and w * h > limit:
        raise ImageBombError(_named(label, f"{BOMB_REFUSED}: the header declares {w}x{h} = {w * h:,} pixels, "
                                           f"over the limit of {limit:,}"))


def _pil_bomb(label: str, exc: Exception) -> ImageBombError:
    # PIL: "Image size (N pixels) exceeds limit of M pixels, could be decompression bomb DOS attack."
    return ImageBombError(_named(label, f"{BOMB_REFUSED}: {str(exc).split(', could be')[0]}"))


def _named(label: str, text: str) -> str:
    return f"{label}: {text}" if label else text


def _reason(exc: Exception) -> str:
    # PIL's message for an unknown format repeats the file object (or a BytesIO repr): say it plainly.
    return "not a known image format" if isinstance(exc, UnidentifiedImageError) else str(exc)


def open_image(source, *, label: str | None = None, max_pixels: int | None = None) -> Image.Image:
    """``Image.open(source)`` (header only, nothing decoded) with bombs refused.

    ``source`` is a path or a binary file object; ``label`` starts its messages (default: the
    path; "" for none). Raises ``ImageBombError`` for a bomb and ``ImageError`` for an
    unreadable file. The caller closes the image (use it as a context manager).
    """
    label = str(source) if label is None else label
    try:
        im = Image.open(source)
    except PIL_BOMBS as exc:
        raise _pil_bomb(label, exc) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(_named(label, f"cannot open image ({_reason(exc)})")) from None
    try:
        check_pixels(im.size, label=label, max_pixels=max_pixels)
    except ImageBombError:
        im.close()
        raise
    return im


def load_rgb(source, *, label: str | None = None, max_pixels: int | None = None) -> Image.Image:
    """Open an image fully decoded as 8-bit RGB; bombs are refused from the header first.

    ``source``/``label``/``max_pixels`` as for :func:`open_image`. Raises ``ImageBombError`` or
    ``ImageError`` (both name the file).
    """
    label = str(source) if label is None else label
    with open_image(source, label=label, max_pixels=max_pixels) as im:
        try:
            im.load()
            if im.mode == "I;16" or im.mode == "I":
                im = im.point(lambda v: v / 256).convert("L")
            return im.convert("RGB")
        except PIL_BOMBS as exc:  # a format whose true size is only known when loading
            raise _pil_bomb(label, exc) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(_named(label, f"cannot read image ({_reason(exc)})")) from None
