"""The ColonINST dataset catalogue: presets for ``ingest.sources`` and the expected counts.

``catalogue.yaml`` (shipped with the package) describes the 19 datasets ColonINST draws on
(plus Kvasir-SEG, the polyp half of its Kvasir row): format and pairing rules, split rule,
raw label -> ColonINST category map, and the positive images per split that the public
ColonINST guideline publishes. docs/data.md explains each entry.

Contract:
- ``lookup(name)`` finds an entry by name or alias, ignoring case, ``-``, ``_`` and spaces;
  ``CatalogueError`` lists the known names otherwise.
- ``resolve_source(spec)`` returns ``(resolved SourceParams, entry or None)``: a source with
  ``preset`` gets every field it leaves unset from the entry; the mappings (``categories``,
  ``split_folders``, ``split_lists``) are merged, the source's own entries winning. The preset's fields are parsed with the params schema, so
  a broken catalogue entry fails exactly like a broken params.yaml.
- ``resolve_sources(params)`` resolves every source and returns the problems of the final
  values (format missing, empty categories, unknown category targets given the preset's
  ``extra_categories``), each naming the source.
- ``compare(found, expected, exact)`` is the found-vs-expected record written to the ingest
  report and stats.json: ``status`` ``match`` / ``close`` (seeded splits within
  ``SEEDED_TOLERANCE`` of the dataset's size) / ``differs``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from colonpipe.coloninst import SPLITS
from colonpipe.taxonomy import canonical, check_targets
from colonpipe.params import IngestParams, ParamsError, SourceParams, parse_params

SEEDED_TOLERANCE = 0.02  # per split, as a share of the dataset: rounding and whole videos move a few images
_FIXED = ("name", "root", "preset")
_MERGED = ("categories", "split_folders", "split_lists")


class CatalogueError(ValueError):
    """An unknown preset name or a catalogue entry that does not parse."""


@dataclass(frozen=True)
class Entry:
    """One catalogue entry (see catalogue.yaml's header for the fields)."""

    key: str
    coloninst: str
    layout: str
    layout_doc: str
    homepage: str
    expected: dict[str, int]
    expected_reg: dict[str, int] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    extra_categories: tuple[str, ...] = ()
    source: dict[str, Any] = field(default_factory=dict)

    def source_params(self, name: str, root: str) -> SourceParams:
        """The entry's fields as a SourceParams (validated with the params schema)."""
        raw = {"ingest": {"sources": [{"name": name, "root": root, **self.source}],
                          "extra_categories": list(self.extra_categories)}}
        try:
            return parse_params(raw, source=f"catalogue entry {self.key}")["ingest"].sources[0]
        except ParamsError as exc:
            raise CatalogueError(str(exc)) from None


@functools.cache
def entries() -> dict[str, Entry]:
    """Every catalogue entry by its key, in file order."""
    text = resources.files("colonpipe.data").joinpath("catalogue.yaml").read_text(encoding="utf-8")
    out = {}
    for key, raw in yaml.safe_load(text).items():
        out[key] = Entry(key=key, coloninst=raw["coloninst"], layout=raw["layout"], layout_doc=raw["layout_doc"],
                         homepage=raw["homepage"], expected=dict(raw["expected"]),
                         expected_reg=dict(raw.get("expected_reg", {})), aliases=tuple(raw.get("aliases", ())),
                         extra_categories=tuple(raw.get("extra_categories", ())), source=dict(raw["source"]))
    return out


def lookup(name: str) -> Entry:
    """The entry named ``name`` or one of its aliases (case, ``-``, ``_`` and spaces ignored)."""
    wanted = canonical(name)
    for entry in entries().values():
        if wanted in {canonical(n) for n in (entry.key, *entry.aliases)}:
            return entry
    raise CatalogueError(f"unknown preset {name!r} (known: {', '.join(entries())})")


def find(name: str) -> Entry | None:
    """``lookup`` without the error (a dataset name that may not be in the catalogue)."""
    try:
        return lookup(name)
    except CatalogueError:
        return None


def _is_set(spec: SourceParams, f: dataclasses.Field) -> bool:
    value = getattr(spec, f.name)
    if f.default is None:
        return value is not None
    return value != (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)


def resolve_source(spec: SourceParams) -> tuple[SourceParams, Entry | None]:
    """``spec`` with its preset's fields filled in (module docstring)."""
    if spec.preset is None:
        return spec, None
    entry = lookup(spec.preset)
    base = entry.source_params(spec.name, spec.root)
    changes: dict[str, Any] = {"preset": spec.preset}
    for f in dataclasses.fields(SourceParams):
        if f.name in _MERGED:
            changes[f.name] = {**getattr(base, f.name), **getattr(spec, f.name)}
        elif f.name in _FIXED or _is_set(spec, f):
            changes[f.name] = getattr(spec, f.name)
    return dataclasses.replace(base, **changes), entry


def resolve_sources(params: IngestParams) -> tuple[list[tuple[SourceParams, Entry | None]], list[str]]:
    """Every source resolved, and the problems of their final values (each names its source)."""
    out, problems = [], []
    for spec in params.sources:
        try:
            resolved, entry = resolve_source(spec)
        except CatalogueError as exc:
            problems.append(f"ingest.sources[{spec.name}].preset: {exc}")
            continue
        extra = list(params.extra_categories) + list(entry.extra_categories if entry else ())
        own = resolved.resolved_problems() + check_targets(sorted(set(resolved.categories.values())), extra)
        problems += [f"ingest.sources[{spec.name}]: {p}" for p in own]
        out.append((resolved, entry))
    return out, problems


def compare(found: dict[str, int], expected: dict[str, int], *, exact: bool) -> dict[str, Any]:
    """Found vs expected positive images per split (module docstring)."""
    total_found, total_expected = sum(found.values()), sum(expected.get(s, 0) for s in SPLITS)
    diff = {s: found.get(s, 0) - expected.get(s, 0) for s in SPLITS if found.get(s, 0) != expected.get(s, 0)}
    if not diff:
        status = "match"
    elif not exact and total_found == total_expected and all(
            abs(d) <= max(2, SEEDED_TOLERANCE * total_expected) for d in diff.values()):
        status = "close"
    else:
        status = "differs"
    return {"expected": {s: expected.get(s, 0) for s in SPLITS}, "found": {s: found.get(s, 0) for s in SPLITS},
            "expected_total": total_expected, "found_total": total_found, "difference": diff, "status": status}


def compare_total(found_total: int, expected: dict[str, int]) -> dict[str, Any]:
    """Before the seeded split is drawn (ingest): only the total can be compared."""
    total = sum(expected.get(s, 0) for s in SPLITS)
    return {"expected": {s: expected.get(s, 0) for s in SPLITS}, "expected_total": total, "found_total": found_total,
            "status": "match" if found_total == total else "differs",
            "note": "seeded split: per-split counts are compared in stats.json after instruct"}


def compare_datasets(found: dict[str, dict[str, int]],
                     expected: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """``compare`` for every catalogued dataset (the manifest's ``colonpipe.expected``):
    ``({dataset: record}, warnings)``; ``found`` is ``{dataset: {split: images}}``."""
    out, warnings = {}, []
    for dataset in sorted(expected):
        info = expected[dataset]
        record = compare(found.get(dataset, {}), info["expected"], exact=info.get("exact", True))
        record["preset"] = info.get("preset")
        out[dataset] = record
        if record["status"] == "differs":
            warnings.append(f"{dataset}: train/val/test " + "/".join(str(record["found"][s]) for s in SPLITS)
                            + " positive images, ColonINST has " + "/".join(str(record["expected"][s]) for s in SPLITS))
    return out, warnings
