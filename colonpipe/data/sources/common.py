"""Types shared by the source readers, the source file listing and path-safety helpers.

Contract:
- A reader turns one source folder into ``RawObject``s (one per annotated object, raw label,
  raw box) plus ``Problem``s for inputs it cannot use. It never opens images: ``ingest``
  checks images, maps labels and validates boxes for every format the same way.
- Paths inside a source are posix strings relative to the source root. ``list_source`` never
  returns a path that leaves the root: symlinks pointing outside are reported, not followed.
- Boxes are ``(x1, y1, x2, y2)`` in inclusive 0-based source pixels; readers convert their
  format's convention (VOC is 1-based, YOLO normalised centre/size) and may return floats,
  out-of-image or inverted boxes: ``ingest`` decides what to clip or skip.
- Finding the image an annotation means: ``colonpipe.data.sources.pairing``.
"""

from __future__ import annotations

import fnmatch
import math
import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from colonpipe.params import SourceParams

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp"})

Box = tuple[float, float, float, float]

# Folder names (lower-cased) that mark an official split, and the split they mean.
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}

# Problem actions: the input was dropped, or kept after a repair the report describes.
SKIPPED = "skipped"
REPAIRED = "repaired"


@dataclass(frozen=True, order=True)
class Problem:
    """One skipped or repaired input; ``file`` is the path as the user would type it."""

    file: str
    kind: str  # machine-readable, e.g. "corrupt_image", "unknown_category"
    reason: str  # one human sentence
    action: str = SKIPPED

    def as_dict(self, source: str) -> dict[str, str]:
        return {"source": source, "file": self.file, "kind": self.kind, "action": self.action,
                "reason": self.reason}


@dataclass(frozen=True)
class RawObject:
    """One annotated object as the source states it, before any checking."""

    image: str  # image path relative to the source root (posix)
    label: str  # raw label as written in the source (folder name, class id, XML name, ...)
    box: Box | None  # inclusive 0-based pixels; None for label-only sources
    annotation: str  # path (relative to root) of the file that states this object
    size: tuple[int, int] | None = None  # (width, height) the annotation implies, e.g. a mask's
    normalized: bool = False  # box is in 0..1 image fractions (pixel edges), e.g. YOLO


@dataclass
class ReadResult:
    """What a reader found: objects, the images it owns, and problems."""

    objects: list[RawObject] = field(default_factory=list)
    # All image files of the source (sorted); ingest reports those neither an object refers
    # to nor ``claimed`` (an image whose annotation a problem already reports).
    images: list[str] = field(default_factory=list)
    claimed: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)  # image -> video/case id the annotation states


@dataclass(frozen=True)
class ReadOptions:
    """A source's reading options, resolved to concrete values (``None``: the reader's default)."""

    official_split: bool = False
    split_aliases: Mapping[str, str] = field(default_factory=lambda: dict(SPLIT_FOLDERS))  # lower-case name
    yolo_classes: tuple[str, ...] = ()
    workers: int = 1
    image_dirs: tuple[str, ...] | None = None  # folder-name globs
    annotation_dirs: tuple[str, ...] | None = None
    annotation_suffix: str | None = None
    annotation_files: tuple[str, ...] | None = None  # coco: path globs of the JSON files
    box_format: str = "xywh"  # coco bbox convention
    category_key: str = "name"  # coco raw label: category name or id
    label_level: int | None = None  # class_folders: folder index naming the label
    table: Any = None  # TableParams for label_table (and image labels of other formats)

    @classmethod
    def from_source(cls, spec: SourceParams, *, workers: int = 1) -> "ReadOptions":
        """Options of a resolved source (preset already applied)."""
        aliases = dict(SPLIT_FOLDERS)
        aliases.update({k.lower(): v for k, v in spec.split_folders.items()})
        tup = lambda v: None if v is None else tuple(v)  # noqa: E731 - tiny local converter
        return cls(official_split=spec.split == "official", split_aliases=aliases,
                   yolo_classes=tuple(spec.yolo_classes), workers=workers, image_dirs=tup(spec.image_dirs),
                   annotation_dirs=tup(spec.annotation_dirs), annotation_suffix=spec.annotation_suffix or None,
                   annotation_files=tup(spec.annotation_files), box_format=spec.box_format or "xywh",
                   category_key=spec.category_key or "name", label_level=spec.label_level, table=spec.table)


def split_of(rel: str, aliases: Mapping[str, str] = SPLIT_FOLDERS) -> str | None:
    """``train``/``val``/``test`` from the first split folder in ``rel`` (case-insensitive); None without one."""
    for part in rel.split("/")[:-1]:
        if part.lower() in aliases:
            return aliases[part.lower()]
    return None


@dataclass(frozen=True)
class SourceListing:
    """Sorted regular files under a source root (relative posix paths), with listing problems."""

    root: Path  # as given in params (may be relative to the working directory)
    files: tuple[str, ...]
    problems: tuple[Problem, ...] = ()
    ignored: int = 0  # files left out by the source's ignore globs

    def display(self, rel: str) -> str:
        """The user-facing path of ``rel``: the root as given, joined with ``rel``."""
        return display_path(self.root, rel)

    def images(self) -> list[str]:
        return [f for f in self.files if is_image(f)]

    def with_suffix(self, *suffixes: str) -> list[str]:
        wanted = {s.lower() for s in suffixes}
        return [f for f in self.files if PurePosixPath(f).suffix.lower() in wanted]


def display_path(root: Path, rel: str) -> str:
    """``root/rel`` as the user would type it (``../`` steps resolved: a release's JSON files)."""
    joined = (PurePosixPath(root.as_posix()) / rel).as_posix()
    return posixpath.normpath(joined) if rel.startswith("../") else joined


def is_image(rel: str) -> bool:
    return PurePosixPath(rel).suffix.lower() in IMAGE_SUFFIXES


def matches_any(name: str, globs: Sequence[str]) -> bool:
    """Case-insensitive ``fnmatch`` of ``name`` against any of ``globs``."""
    low = name.lower()
    return any(fnmatch.fnmatchcase(low, g.lower()) for g in globs)


def list_source(root: Path, ignore: Sequence[str] = ()) -> SourceListing:
    """List regular files under ``root`` (sorted, posix, relative); report escaping symlinks.

    A symlinked file is kept when its target stays inside the root. Symlinked folders are
    never descended into (no loops); one pointing outside the root is reported. Paths
    matching an ``ignore`` glob (``*`` crosses folders: ``imagesAll_positive/*``) are left
    out silently and only counted.
    """
    real_root = root.resolve()
    files: list[str] = []
    problems: list[Problem] = []
    ignored = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if ignore and matches_any(rel, ignore):
                ignored += 1
                continue
            full = Path(dirpath) / name
            if full.is_symlink():
                target = full.resolve()
                if not target.is_relative_to(real_root):
                    problems.append(Problem(
                        display_path(root, rel), "path_escape",
                        f"symlink points outside the source root (to {os.readlink(full)})"))
                    continue
                if target.is_dir():
                    problems.append(Problem(display_path(root, rel), "symlinked_folder",
                                            "symlinked folder inside the root is not followed"))
                    continue
                if not target.exists():
                    problems.append(Problem(display_path(root, rel), "broken_symlink",
                                            f"symlink target does not exist ({os.readlink(full)})"))
                    continue
            if full.is_file():
                files.append(rel)
    return SourceListing(root, tuple(sorted(files)), tuple(problems), ignored)


def safe_relpath(base_dir: str, name: str) -> str | None:
    """Join ``name`` (from an annotation) to ``base_dir`` (relative to the root), normalised.

    Returns None when the result would leave the source root (``..`` past the root or an
    absolute path): the caller reports it as a path escape.
    """
    name = name.replace("\\", "/").strip()
    if not name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    joined = posixpath.normpath(posixpath.join(base_dir, name) if base_dir not in ("", ".") else name)
    if joined == ".." or joined.startswith("../") or joined == ".":
        return None
    return joined


def to_coord(value: Any) -> float:
    """A JSON/table number as a float; ``ValueError`` for non-numbers and integers too large
    for a float (a 400-digit integer would otherwise raise ``OverflowError`` much later)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"coordinate {value!r} is not a number")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"coordinate is an integer of {value.bit_length()} bits, too large for a pixel "
                         "position") from None


def to_pixel(value: float) -> int:
    """Round a coordinate half-up (not banker's rounding), the same on every platform."""
    return int(math.floor(value + 0.5))


def parent_dir(rel: str) -> str:
    parent = PurePosixPath(rel).parent.as_posix()
    return "" if parent == "." else parent


def read_text(path) -> str:
    """A small annotation text file; ``ValueError`` when not UTF-8."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason})") from None
