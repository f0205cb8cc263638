"""Label-only sources laid out as ``<root>/[<Split>/]<category-folder>/.../<file>``.

The raw label is the folder right below the split folder (or the first folder when the
source has no official split), exactly as spelt on disk (``accessory_tool``). Deeper
sub-folders are allowed. ``label_level`` picks another folder instead: its index in the
file's folder list, negative from the end (``-1`` = the folder holding the file, as in
HyperKvasir's ``labeled-images/lower-gi-tract/<finding-group>/<class>/x.jpg``). A folder such as EDD2020's ``all-images`` is just an unmapped label:
``ingest`` reports its images as unknown category unless params map it. Images lying
directly in the root (or directly in a split folder) have no category and are reported.
"""

from __future__ import annotations

from collections.abc import Mapping

from colonpipe.data.sources.common import (SPLIT_FOLDERS, Problem, RawObject, ReadOptions, ReadResult,
                                           SourceListing)


def category_folder(rel: str, *, official_split: bool, aliases: Mapping[str, str] = SPLIT_FOLDERS,
                    level: int | None = None) -> str | None:
    """The category folder of ``rel`` (None when the file sits above any category folder)."""
    parts = rel.split("/")[:-1]
    if level is not None:
        return parts[level] if -len(parts) <= level < len(parts) else None
    if official_split:
        for i, part in enumerate(parts):
            if part.lower() in aliases:
                return parts[i + 1] if i + 1 < len(parts) else None
    return parts[0] if parts else None


def read(listing: SourceListing, opts: ReadOptions = ReadOptions()) -> ReadResult:
    """One label-only object (box None) per image file."""
    result = ReadResult(images=listing.images())
    for rel in result.images:
        label = category_folder(rel, official_split=opts.official_split, aliases=opts.split_aliases,
                                level=opts.label_level)
        if label is None:
            result.problems.append(Problem(listing.display(rel), "no_category_folder",
                                           "image is not inside a category folder"))
            result.claimed.add(rel)
            continue
        result.objects.append(RawObject(image=rel, label=label, box=None, annotation=rel))
    return result
