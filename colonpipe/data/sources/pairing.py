"""Finding the image an annotation file or cell means.

- ``PairIndex`` pairs an annotation file with its image: same stem (an annotation suffix
  such as ``_mask`` removed), in a parallel folder (the last folder matching the annotation
  folder globs and the last one matching the image folder globs are treated as the same
  slot, so ``data_C1/masks_C1/x_mask.jpg`` pairs with ``data_C1/images_C1/x.jpg``) or beside
  it; the first sorted match wins, the others are returned for the report.
- ``PathIndex`` looks a spelled-out path up exactly first, then ignoring case; two files
  differing only in case are reported as ambiguous, never guessed (``case_problem``).
- ``NameResolver`` adds file-name and stem lookups for tables and COCO files.
- ``pair_text_files`` drives the per-image box text readers (SUN, YOLO).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath

from colonpipe.data.sources.common import (REPAIRED, Problem, ReadResult, SourceListing, matches_any, parent_dir,
                                           read_text, safe_relpath)


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


_SLOT = "\0"  # stands for "the image-or-annotation folder" in pairing keys


def slot_key(folder: str, globs: Sequence[str]) -> str | None:
    """``folder`` lower-cased with its last component matching ``globs`` replaced by a slot marker."""
    parts = folder.split("/") if folder else []
    for i in range(len(parts) - 1, -1, -1):
        if matches_any(parts[i], globs):
            return "/".join(parts[:i] + [_SLOT] + parts[i + 1:]).lower()
    return None


def in_folder(rel: str, globs: Sequence[str]) -> bool:
    """Does any folder of ``rel`` match ``globs``?"""
    return any(matches_any(part, globs) for part in rel.split("/")[:-1])


def below_folder(rel: str, globs: Sequence[str]) -> str | None:
    """The folder right below the last folder of ``rel`` matching ``globs`` (None: directly in it)."""
    parts = rel.split("/")[:-1]
    for i in range(len(parts) - 1, -1, -1):
        if matches_any(parts[i], globs):
            return parts[i + 1] if i + 1 < len(parts) else None
    return None


class PairIndex:
    """Images by (folder key, stem), to pair annotation files with them (module docstring)."""

    def __init__(self, images: Sequence[str], image_dirs: Sequence[str]) -> None:
        self._by: dict[tuple[str, str], list[str]] = {}
        for rel in images:
            parent, stem = parent_dir(rel), PurePosixPath(rel).stem
            keys = [parent.lower()]
            slot = slot_key(parent, image_dirs)
            if slot is not None:
                keys.append(slot)
            for key in keys:
                self._by.setdefault((key, stem), []).append(rel)

    def find(self, ann_rel: str, ann_dirs: Sequence[str], suffix: str | None = None, *,
             stem: str | None = None) -> tuple[str | None, list[str]]:
        """``(image or None, other matches)`` for an annotation file (or an explicit ``stem`` it
        names); the first sorted match wins."""
        parent, stem = parent_dir(ann_rel), stem or PurePosixPath(ann_rel).stem
        stems = [stem[: -len(suffix)]] if suffix and stem.endswith(suffix) and len(stem) > len(suffix) else []
        stems.append(stem)
        keys = [k for k in (slot_key(parent, ann_dirs), parent.lower()) if k is not None]
        for key in keys:
            for s in stems:
                hits = sorted(h for h in self._by.get((key, s), []) if h != ann_rel)
                if hits:
                    return hits[0], hits[1:]
        return None, []


class PathIndex:
    """Exact-then-case-insensitive lookup of a relative path among the source's images."""

    def __init__(self, images: Sequence[str]) -> None:
        self._exact = set(images)
        self._lower: dict[str, list[str]] = {}
        for rel in sorted(images):
            self._lower.setdefault(rel.lower(), []).append(rel)

    def lookup(self, rel: str) -> tuple[str | None, list[str]]:
        """``(image, other case variants)``; image None with several variants means ambiguous."""
        variants = self._lower.get(rel.lower(), [])
        if rel in self._exact:
            return rel, [v for v in variants if v != rel]
        if len(variants) == 1:
            return variants[0], []
        return None, variants


class NameResolver:
    """Find the image an annotation names by a path, a file name or a stem.

    Order: the key as a path relative to the root, then relative to ``base`` (the annotation
    file's folder), exact case first (``PathIndex``); then the images under ``scope`` (a
    folder prefix; "" = the whole root) whose path ends with the key (``train/a.jpg`` under
    an images folder the annotation does not name), then those with the key's file name,
    then its stem. Several matches -> ``(None, matches)``: ambiguous, never guessed.
    """

    def __init__(self, images: Sequence[str], *, base: str = "", scope: str = "",
                 paths: PathIndex | None = None) -> None:
        self.base, self.paths = base, paths or PathIndex(images)
        self._names: dict[str, list[str]] = {}
        self._stems: dict[str, list[str]] = {}
        prefix = scope.rstrip("/") + "/" if scope else ""
        for rel in images:
            if rel.startswith(prefix):
                p = PurePosixPath(rel)
                self._names.setdefault(p.name, []).append(rel)
                self._stems.setdefault(p.stem, []).append(rel)

    def resolve(self, key: str) -> tuple[str | None, list[str], bool]:
        """``(image or None, other matches, escaped)`` for one key."""
        key = key.strip().replace("\\", "/")
        if not key:
            return None, [], False
        escaped = False
        for base in dict.fromkeys(("", self.base)):
            joined = safe_relpath(base, key)
            if joined is None:
                escaped = True
                continue
            image, others = self.paths.lookup(joined)
            if image is not None or others:
                return image, others, False
        if escaped:
            return None, [], True
        name = PurePosixPath(key).name
        hits = self._names.get(name, []) if PurePosixPath(name).suffix else []
        if "/" in key and hits:
            hits = [h for h in hits if h.endswith("/" + key)]
        if not hits:  # no extension, or another one (a table naming .png files stored as .jpg)
            hits = self._stems.get(PurePosixPath(name).stem if PurePosixPath(name).suffix else name, [])
        if len(hits) == 1:
            return hits[0], [], False
        return None, sorted(hits), False


def case_problem(shown: str, name: str, image: str | None, others: list[str]) -> Problem | None:
    """The report entry for a name that matches files differing only in case (None if unique)."""
    if not others:
        return None
    if image is None:
        return Problem(shown, "ambiguous_image", f"{name!r} matches {', '.join(others)}, which differ only in "
                       "case; cannot tell which one is meant")
    return Problem(shown, "ambiguous_image", f"{name!r} also matches {', '.join(others)} (differs only in case); "
                   "used the exact-case match", REPAIRED)


def pair_text_files(listing: SourceListing, ann_dirs: Sequence[str], image_dirs: Sequence[str],
                    result: ReadResult, *, suffix: str | None = None, skip: frozenset[str] = frozenset()):
    """Yield ``(txt rel, image rel, text)`` for each ``.txt`` with a matching image; report the rest."""
    index = PairIndex(result.images, image_dirs)
    for rel in listing.with_suffix(".txt"):
        if rel.rsplit("/", 1)[-1].lower() in skip:
            continue
        image, others = index.find(rel, ann_dirs, suffix)
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
