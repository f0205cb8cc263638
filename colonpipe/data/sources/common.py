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
"""

from __future__ import annotations

import math
import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

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


@dataclass(frozen=True)
class SourceListing:
    """Sorted regular files under a source root (relative posix paths), with listing problems."""

    root: Path  # as given in params (may be relative to the working directory)
    files: tuple[str, ...]
    problems: tuple[Problem, ...] = ()

    def display(self, rel: str) -> str:
        """The user-facing path of ``rel``: the root as given, joined with ``rel``."""
        return display_path(self.root, rel)

    def images(self) -> list[str]:
        return [f for f in self.files if is_image(f)]

    def with_suffix(self, *suffixes: str) -> list[str]:
        wanted = {s.lower() for s in suffixes}
        return [f for f in self.files if PurePosixPath(f).suffix.lower() in wanted]


def display_path(root: Path, rel: str) -> str:
    return (PurePosixPath(root.as_posix()) / rel).as_posix()


def is_image(rel: str) -> bool:
    return PurePosixPath(rel).suffix.lower() in IMAGE_SUFFIXES


def list_source(root: Path) -> SourceListing:
    """List regular files under ``root`` (sorted, posix, relative); report escaping symlinks.

    A symlinked file is kept when its target stays inside the root. Symlinked folders are
    never descended into (no loops); one pointing outside the root is reported.
    """
    real_root = root.resolve()
    files: list[str] = []
    problems: list[Problem] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        for name in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
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
    return SourceListing(root, tuple(sorted(files)), tuple(problems))


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


def to_pixel(value: float) -> int:
    """Round a coordinate half-up (not banker's rounding), the same on every platform."""
    return int(math.floor(value + 0.5))


def parent_dir(rel: str) -> str:
    parent = PurePosixPath(rel).parent.as_posix()
    return "" if parent == "." else parent


def stem_index(paths: list[str]) -> dict[tuple[str, str], list[str]]:
    """``{(parent folder lower-cased, stem): [paths]}``: find an image by its annotation's stem."""
    index: dict[tuple[str, str], list[str]] = {}
    for rel in paths:
        p = PurePosixPath(rel)
        index.setdefault((parent_dir(rel).lower(), p.stem), []).append(rel)
    return index


def swap_folder(rel_dir: str, names: set[str], replacements: tuple[str, ...]) -> list[str]:
    """Candidate folders for ``rel_dir`` with its last component in ``names`` replaced.

    ``labels/a`` with names {"labels"} and replacements ("images",) gives ``images/a``.
    Matching is case-insensitive on the component; the folder itself is always a candidate.
    """
    parts = rel_dir.split("/") if rel_dir else []
    out: list[str] = []
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].lower() in names:
            for rep in replacements:
                out.append("/".join(parts[:i] + [rep] + parts[i + 1:]))
            break
    out.append(rel_dir)
    return out


def find_image(ann_rel: str, index: dict[tuple[str, str], list[str]], *,
               ann_dirs: set[str], image_dirs: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """The image paired with an annotation file by stem: ``(image or None, other matches)``.

    The image is looked up in the annotation's folder with an annotation-folder component
    swapped for an image-folder one (``labels/x.txt`` -> ``images/x.jpg``), then beside it.
    Several images with the same stem: the first in sorted order wins, the rest are returned.
    """
    stem = PurePosixPath(ann_rel).stem
    for folder in swap_folder(parent_dir(ann_rel), ann_dirs, image_dirs):
        hits = [h for h in index.get((folder.lower(), stem), []) if h != ann_rel]
        if hits:
            return hits[0], hits[1:]
    return None, []


def read_text(path) -> str:
    """A small annotation text file; ``ValueError`` when not UTF-8."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason})") from None


def pair_text_files(listing: SourceListing, ann_dirs: set[str], image_dirs: tuple[str, ...],
                    result: ReadResult, *, skip: frozenset[str] = frozenset()):
    """Yield ``(txt rel, image rel, text)`` for each ``.txt`` with a matching image; report the rest."""
    index = stem_index(result.images)
    for rel in listing.with_suffix(".txt"):
        if rel.rsplit("/", 1)[-1].lower() in skip:
            continue
        image, others = find_image(rel, index, ann_dirs=ann_dirs, image_dirs=image_dirs)
        if image is None:
            result.problems.append(Problem(listing.display(rel), "annotation_without_image",
                                           "no image with the same stem"))
            continue
        result.claimed.add(image)
        if others:
            result.problems.append(Problem(listing.display(rel), "ambiguous_image",
                                           f"several images match; using {image}, ignoring {', '.join(others)}"))
        try:
            text = read_text(listing.root / rel)
        except (OSError, ValueError) as exc:
            result.problems.append(Problem(listing.display(rel), "malformed_annotation", str(exc)))
            continue
        if not any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines()):
            result.problems.append(Problem(listing.display(rel), "empty_annotation",
                                           f"annotation file lists no objects (image {image})"))
            continue
        yield rel, image, text
