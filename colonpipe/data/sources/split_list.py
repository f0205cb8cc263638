"""Benchmark splits given as lists: ``split: list`` with ``split_lists: {split: list}``.

A list is a text file (one image per line: a path relative to the source root, a file name
or a stem; blank lines and ``#`` comments ignored), or a folder whose image files are the
list (e.g. PraNet's ``TestDataset/CVC-ClinicDB/images`` naming the CVC-ClinicDB test frames).
A list path is taken relative to the source root when it exists there, else as given.
Kvasir-Instrument ships ``train.txt`` / ``test.txt`` of stems this way.

Contract of ``assign(root, lists, images, unlisted)``: ``({image: split}, problems)``.
- Entries are resolved with ``NameResolver`` (path, then name, then stem, whole root);
  entries matching no image or several are counted per list in one problem each.
- An image named by two lists is ``split_conflict`` (skipped); an image in no list goes to
  ``unlisted`` when set, else is ``not_in_split_list`` (skipped).
"""

from __future__ import annotations

from pathlib import Path

from colonpipe.data.sources.common import SKIPPED, Problem, display_path, is_image, read_text
from colonpipe.data.sources.pairing import NameResolver


def list_path(root: Path, entry: str) -> Path:
    """Where a ``split_lists`` entry lives: under the source root if it exists there, else as given."""
    inside = root / entry
    return inside if inside.exists() else Path(entry)


def _entries(path: Path) -> list[str]:
    if path.is_dir():
        return sorted(p.name for p in path.rglob("*") if p.is_file() and is_image(p.name))
    return [line.strip() for line in read_text(path).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _read_list(root: Path, split: str, entry: str, resolver: NameResolver,
               problems: list[Problem]) -> set[str]:
    path = list_path(root, entry)
    try:
        keys = _entries(path)
    except (OSError, ValueError) as exc:
        problems.append(Problem(path.as_posix(), "malformed_split_list", f"{split} list cannot be read ({exc})"))
        return set()
    found: set[str] = set()
    missing, ambiguous = [], []
    for key in keys:
        image, others, _ = resolver.resolve(key)
        if image is not None:
            found.add(image)
        else:
            (ambiguous if others else missing).append(key)
    for kind, bad in (("split_list_unmatched", missing), ("split_list_ambiguous", ambiguous)):
        if bad:
            what = "match no image" if kind == "split_list_unmatched" else "match several images"
            problems.append(Problem(path.as_posix(), kind, f"{len(bad)} of {len(keys)} {split} entries {what} "
                                    f"(e.g. {', '.join(bad[:5])}); ignored"))
    return found


def assign(root: Path, lists: dict[str, str], images: list[str],
           unlisted: str | None) -> tuple[dict[str, str], list[Problem]]:
    """``({image: split}, problems)`` for the source's annotated ``images`` (module docstring)."""
    problems: list[Problem] = []
    resolver = NameResolver(images)
    named: dict[str, list[str]] = {}
    for split in sorted(lists):
        for image in _read_list(root, split, lists[split], resolver, problems):
            named.setdefault(image, []).append(split)
    out: dict[str, str] = {}
    for image in images:
        splits = named.get(image, [])
        if len(splits) > 1:
            problems.append(Problem(display_path(root, image), "split_conflict",
                                    f"listed in several splits ({', '.join(splits)})", SKIPPED))
        elif splits:
            out[image] = splits[0]
        elif unlisted is not None:
            out[image] = unlisted
        else:
            problems.append(Problem(display_path(root, image), "not_in_split_list",
                                    "source split is list but no split list names this image"))
    return out, problems
