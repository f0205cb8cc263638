"""Label tables (CSV/TSV): one row per image, or per object when the table has box columns.

Layouts this reads, as the datasets document them (fixtures in tests/data/test_real_layouts.py):
- HyperKvasir ``image-labels.csv``: ``Video file,Organ,Finding,Classification`` (comma);
- Kvasir-Capsule ``metadata.csv``: ``filename;video_id;frame_number;finding_category;
  finding_class;x1;y1;x2;y2;x3;y3;x4;y4`` (semicolon): the box is the extent of the four
  corners, rows whose coordinates are all empty are class-only, ``video_id`` groups frames;
- SUN-SEG ``classification.txt``: header-less ``<image name>\\t<class>`` rows.

Contract:
- ``table.file`` is a glob (relative to the root); every matching file is read, in path order.
- Columns are header names, or 0-based indices (``"0"``) when ``header`` is false. ``sep``
  null sniffs the first line: tab, then ``;``, then ``,``, else runs of whitespace.
- The image column is resolved by ``NameResolver`` (path, then file name, then stem, among
  the images under the table's top-level folder): an unknown image is
  ``annotation_without_image``, several matches ``ambiguous_image``; the row is skipped.
- Box columns hold inclusive pixel coordinates: 4 (``x1 y1 x2 y2``) or 8 corner values
  (``x1 y1 ... x4 y4``, box = their extent). Non-numeric or partly empty boxes are
  ``malformed_annotation`` (row skipped).
- As the format ``label_table`` every row is one object. For any other format a ``table``
  gives image labels instead (``image_labels``): every object of a listed image takes the
  table's label (SUN-SEG: masks give boxes, ``classification.txt`` the pathology).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from colonpipe.data.sources.common import (REPAIRED, Problem, RawObject, ReadOptions, ReadResult, SourceListing,
                                           matches_any, parent_dir, read_text)
from colonpipe.data.sources.pairing import NameResolver, PathIndex, case_problem
from colonpipe.params import TableParams

_SNIFF = ("\t", ";", ",")


@dataclass(frozen=True)
class TableRow:
    """One usable row: its image, raw label, optional box and group, and where it came from."""

    image: str
    label: str
    box: tuple[float, float, float, float] | None
    group: str | None
    table: str  # table path relative to the root
    line: int


def table_files(listing: SourceListing, table: TableParams) -> list[str]:
    """The source's files matching ``table.file`` (case-insensitive glob), in path order."""
    return [rel for rel in listing.files if matches_any(rel, [table.file])]


def _split_rows(text: str, table: TableParams) -> list[list[str]]:
    lines = text.splitlines()
    sep = table.sep or next((c for c in _SNIFF if lines and c in lines[0]), None)
    if sep is None:
        return [line.split() for line in lines]
    return [row for row in csv.reader(lines, delimiter=sep)]


def _columns(rows: list[list[str]], table: TableParams) -> tuple[dict[str, int], list[list[str]], int]:
    """``({column: index}, data rows, first data line number)``; KeyError names a missing column."""
    if not table.header:
        width = max((len(r) for r in rows), default=0)
        cols = {str(i): i for i in range(width)}
        body, first = rows, 1
    else:
        cols = {name.strip(): i for i, name in enumerate(rows[0] if rows else [])}
        body, first = rows[1:], 2
    wanted = [table.image, table.label, table.group, *table.box]
    missing = [c for c in wanted if c is not None and c not in cols]
    if missing:
        raise KeyError(f"column(s) {missing} not found (have {sorted(cols)})")
    return cols, body, first


def _box(cells: list[str]) -> tuple[float, float, float, float] | None:
    """Box from 4 or 8 cells; None when all are empty; ValueError when malformed."""
    values = [c.strip() for c in cells]
    if not any(values):
        return None
    if not all(values):
        raise ValueError(f"box columns are partly empty: {values}")
    nums = [float(v) for v in values]  # ValueError for non-numbers; huge strings become inf
    xs, ys = nums[0::2], nums[1::2]
    return min(xs), min(ys), max(xs), max(ys)


def _row(cells: list[str], cols: dict[str, int], table: TableParams) -> tuple[str, str, tuple | None, str | None]:
    def cell(name: str | None) -> str:
        return "" if name is None or cols[name] >= len(cells) else cells[cols[name]].strip()

    box = _box([cell(c) for c in table.box]) if table.box else None
    return cell(table.image), cell(table.label), box, cell(table.group) or None


def read_rows(listing: SourceListing, table: TableParams, images: list[str], result: ReadResult) -> list[TableRow]:
    """Every usable row of every matching table file; problems go to ``result``."""
    out: list[TableRow] = []
    paths = PathIndex(images)
    files = table_files(listing, table)
    if not files:
        result.problems.append(Problem(listing.display(table.file), "missing_annotation_file",
                                       f"no file matches table.file {table.file!r}"))
    for rel in files:
        shown = listing.display(rel)
        try:
            cols, body, first = _columns(_split_rows(read_text(listing.root / rel), table), table)
        except (OSError, ValueError, KeyError, csv.Error) as exc:
            result.problems.append(Problem(shown, "malformed_annotation", f"table cannot be read ({exc})"))
            continue
        scope = rel.split("/", 1)[0] if "/" in rel else ""
        resolver = NameResolver(images, base=parent_dir(rel), scope=scope, paths=paths)
        for n, cells in enumerate(body, start=first):
            if not any(c.strip() for c in cells):
                continue
            row = _table_row(cells, cols, table, resolver, shown, n, result)
            if row is not None:
                out.append(TableRow(row[0], row[1], row[2], row[3], rel, n))
    return out


def _table_row(cells, cols, table, resolver: NameResolver, shown: str, n: int, result: ReadResult):
    """``(image, label, box, group)`` of one data row, or None (problem reported)."""
    try:
        key, label, box, group = _row(cells, cols, table)
    except ValueError as exc:
        result.problems.append(Problem(shown, "malformed_annotation", f"line {n}: {exc}"))
        return None
    if not key or not label:
        result.problems.append(Problem(shown, "malformed_annotation", f"line {n}: empty image or label cell"))
        return None
    image, others, escaped = resolver.resolve(key)
    if escaped:
        result.problems.append(Problem(shown, "path_escape", f"line {n}: image {key!r} points outside the root"))
        return None
    if image is None and others:
        result.problems.append(Problem(shown, "ambiguous_image", f"line {n}: {key!r} matches several images "
                                       f"({', '.join(others[:5])}); cannot tell which one is meant"))
        return None
    if image is None:
        result.problems.append(Problem(shown, "annotation_without_image", f"line {n}: image {key!r} not found"))
        return None
    problem = case_problem(shown, key, image, others)
    if problem is not None:
        result.problems.append(problem)
    return image, label, box, group


def image_labels(listing: SourceListing, table: TableParams, images: list[str],
                 result: ReadResult) -> dict[str, str]:
    """``{image: label}`` from the table; an image listed with two labels keeps the first (reported)."""
    labels: dict[str, str] = {}
    for row in read_rows(listing, table, images, result):
        if row.group is not None:
            result.groups.setdefault(row.image, row.group)
        first = labels.setdefault(row.image, row.label)
        if first != row.label:
            result.problems.append(Problem(listing.display(row.table), "conflicting_label",
                                           f"line {row.line}: {row.image} is {row.label!r} here but {first!r} "
                                           "earlier; kept the first", REPAIRED))
    return labels


def read(listing: SourceListing, opts: ReadOptions = ReadOptions()) -> ReadResult:
    """One object per table row (box or class-only); groups from the group column."""
    result = ReadResult(images=listing.images())
    if opts.table is None:
        return result
    for row in read_rows(listing, opts.table, result.images, result):
        result.claimed.add(row.image)
        if row.group is not None:
            result.groups.setdefault(row.image, row.group)
        result.objects.append(RawObject(image=row.image, label=row.label, box=row.box, annotation=row.table))
    return result


__all__ = ["read", "read_rows", "image_labels", "table_files", "TableRow"]
