"""Resolve record ids to image files, and load images safely.

A record ``id`` is ``<dataset>/<path inside that dataset's root>`` (for the official
release: the path relative to ``Positive-images``). ``ImageResolver`` maps ids back to
files either through one root folder (``root/id``) or through a JSON file
``{dataset: root}`` written by ``ingest`` (relative roots are taken from the JSON's folder's
working directory, i.e. the repo root). Every resolved path must stay inside its root.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image


class ImageError(ValueError):
    """An image that cannot be resolved or read; the message names the file."""


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


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image fully decoded as 8-bit RGB; ``ImageError`` names the file on failure."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "I;16" or im.mode == "I":
                im = im.point(lambda v: v / 256).convert("L")
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: cannot read image ({exc})") from None
