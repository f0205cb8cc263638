"""One source, listed and read: objects, problems, the split and group of each annotated image.

Contract of ``scan_source(spec, workers)`` (``spec`` already resolved against its preset):
1. ``list_source`` with the source's ``ignore`` globs, then the format's reader.
2. A ``table`` on a non-table format gives image labels: every object of a listed image
   takes the table's label (``label_table.image_labels``).
3. ``unannotated_label``: every image no object refers to gets one class-only object with
   that label (or its table label). Datasets whose positives include frames without a box
   (empty masks, XMLs without objects) count them this way, as ColonINST does.
4. Images neither annotated nor claimed are ``image_without_annotation``.
5. Split of each annotated image: ``official`` from its split folder (``split_folders``
   aliases added to Train/Val/Test; none -> ``no_split_folder``), ``list`` from
   ``split_lists``, ``train``/``val``/``test`` fixed, ``none`` left to instruct (None).
6. Group of each annotated image: the first capture group (else the whole match) of
   ``group_by`` searched in its path, else the group its annotation states; none -> None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from colonpipe.data.sources import READERS
from colonpipe.data.sources import label_table, split_list
from colonpipe.data.sources.common import (Problem, RawObject, ReadOptions, ReadResult, SourceListing, list_source,
                                           split_of)
from colonpipe.params import SourceParams


@dataclass
class SourceScan:
    """A source after listing and reading (before its images are checked)."""

    spec: SourceParams
    listing: SourceListing
    read: ReadResult
    problems: list[Problem] = field(default_factory=list)
    splits: dict[str, str | None] = field(default_factory=dict)  # annotated image -> split
    groups: dict[str, str] = field(default_factory=dict)  # annotated image -> group


def _apply_table_labels(listing: SourceListing, spec: SourceParams, result: ReadResult) -> dict[str, str]:
    labels = label_table.image_labels(listing, spec.table, result.images, result)
    result.objects = [RawObject(o.image, labels.get(o.image, o.label), o.box, o.annotation, o.size, o.normalized)
                      for o in result.objects]
    return labels


def _add_unannotated(spec: SourceParams, result: ReadResult, labels: dict[str, str]) -> None:
    annotated = {o.image for o in result.objects}
    for rel in result.images:
        if rel not in annotated:
            label = labels.get(rel, spec.unannotated_label)
            result.objects.append(RawObject(image=rel, label=label, box=None, annotation=rel))


def _groups(spec: SourceParams, images: list[str], stated: dict[str, str]) -> dict[str, str]:
    if spec.group_by == "":
        return {}
    pattern = re.compile(spec.group_by) if spec.group_by else None
    out = {}
    for rel in images:
        m = pattern.search(rel) if pattern is not None else None
        if m is not None:
            out[rel] = m.group(1) if m.groups() else m.group(0)
        elif rel in stated:
            out[rel] = stated[rel]
    return out


def _splits(scan: SourceScan, annotated: list[str]) -> None:
    spec, listing = scan.spec, scan.listing
    if spec.split == "list":
        splits, problems = split_list.assign(listing.root, spec.split_lists, annotated, spec.unlisted_split)
        scan.problems += problems
        scan.splits.update(splits)
        return
    aliases = ReadOptions.from_source(spec).split_aliases
    for rel in annotated:
        if spec.split == "official":
            split = split_of(rel, aliases)
            if split is None:
                scan.problems.append(Problem(listing.display(rel), "no_split_folder",
                                             "source split is official but the path has no Train/Val/Test folder"))
                continue
        else:
            split = spec.split if spec.split in ("train", "val", "test") else None
        scan.splits[rel] = split


def scan_source(spec: SourceParams, *, workers: int = 1) -> SourceScan:
    """List and read one resolved source (module docstring)."""
    listing = list_source(Path(spec.root), ignore=tuple(spec.ignore or ()))
    result = READERS[spec.format](listing, ReadOptions.from_source(spec, workers=workers))
    scan = SourceScan(spec, listing, result)
    labels = _apply_table_labels(listing, spec, result) if spec.table is not None and spec.format != "label_table" \
        else {}
    if spec.unannotated_label is not None:
        _add_unannotated(spec, result, labels)
    scan.problems = list(listing.problems) + result.problems
    annotated = sorted({o.image for o in result.objects})
    for rel in sorted(set(result.images) - set(annotated) - result.claimed):
        scan.problems.append(Problem(listing.display(rel), "image_without_annotation", "no annotation refers to this image"))
    _splits(scan, annotated)
    scan.groups = _groups(spec, sorted(scan.splits), result.groups)
    return scan
