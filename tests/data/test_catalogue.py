"""The dataset catalogue: its entries, the ColonINST totals, presets and overrides in params."""

import pytest
import yaml

from colonpipe.data import catalogue
from colonpipe.data.catalogue import CatalogueError, compare, lookup, resolve_source
from colonpipe.params import ParamsError, SourceParams, TableParams, parse_params

SPEC_TOTALS = {"train": 74_407, "val": 8_929, "test": 45_284}  # coloninst-spec.md section 1
SPEC_DATASETS = ["SUN-database", "ETIS-Larib", "KUMC", "WCE-CCDD", "CPC-Paired", "PICCOLO", "Kvasir-Instrument",
                 "Kvasir-Capsule", "PSNBI2K", "HyperKvasir", "Kvasir", "EDD2020", "Nerthus", "CVC-ColonDB",
                 "GastroVision", "PolypGen", "CVC-ClinicDB", "CP-CHILD", "BKAI-Small"]


def test_the_catalogue_names_the_19_datasets_and_adds_up_to_coloninst():
    assert sorted({lookup(n).coloninst for n in SPEC_DATASETS}) == sorted({e.coloninst for e in
                                                                          catalogue.entries().values()})
    assert len({lookup(n).coloninst for n in SPEC_DATASETS}) == 19
    totals = {s: sum(e.expected.get(s, 0) for e in catalogue.entries().values()) for s in SPEC_TOTALS}
    assert totals == SPEC_TOTALS
    reg_train = sum(e.expected_reg.get("train", 0) for e in catalogue.entries().values())
    assert reg_train == 54_237  # the guideline's REG/REC train count


@pytest.mark.parametrize("key", sorted(catalogue.entries()))
def test_every_entry_is_a_valid_source_with_its_provenance(key):
    entry = catalogue.entries()[key]
    spec = entry.source_params(key, "/data/x")
    assert spec.format is not None and (spec.categories or spec.format == "coloninst_release")
    assert entry.layout in ("confirmed", "pranet", "coloninst") and entry.layout_doc.startswith("http")
    assert entry.homepage.startswith("http")


def test_lookup_accepts_aliases_and_spellings():
    assert lookup("hyperkvasir").key == lookup("Hyper Kvasir").key == "Hyper-Kvasir"
    assert lookup("sun-database").key == "SUN" and lookup("ETIS-LaribPolypDB").key == "ETIS"
    with pytest.raises(CatalogueError, match="known: SUN, ETIS"):
        lookup("Kvasir-Nonexistent")


def test_params_override_any_preset_field():
    spec = SourceParams(name="PG", root="/d/pg", preset="PolypGen", categories={"polyp": "adenoma"},
                        split="list", split_lists={"test": "TestDataset/PolypGen/images"}, unlisted_split="train",
                        group_by="", table=TableParams(file="x.csv", image="a", label="b"))
    resolved, entry = resolve_source(spec)
    assert entry.key == "PolypGen" and resolved.format == "mask" and resolved.annotation_suffix == "_mask"
    assert resolved.categories == {"foreground": "polyp", "polyp": "adenoma"}  # merged, the user's entry wins
    assert (resolved.split, resolved.unlisted_split, resolved.group_by) == ("list", "train", "")
    assert resolved.table.file == "x.csv" and (resolved.name, resolved.root) == ("PG", "/d/pg")


def test_a_preset_source_in_params_yaml():
    raw = yaml.safe_load("""
ingest:
  sources:
    - {name: Kvasir-Capsule, root: /data/kvasir-capsule, preset: Kvasir-Capsule}
    - {name: SUN, root: /data/SUN-SEG, preset: sun-database, split_folders: {TestDataset: test}}
""")
    sources = parse_params(raw)["ingest"].sources
    assert [s.preset for s in sources] == ["Kvasir-Capsule", "sun-database"] and sources[0].format is None
    sun, _ = resolve_source(sources[1])
    assert sun.split == "official"  # aliases are added to the preset's
    assert sun.split_folders == {"TrainDataset": "train", "TestEasyDataset": "test", "TestHardDataset": "test",
                                 "TestDataset": "test"}


def test_params_schema_rules_for_new_fields():
    def problems(**src):
        with pytest.raises(ParamsError) as err:
            parse_params({"ingest": {"sources": [{"name": "A", "root": "/r", **src}], "captions": src.pop("_c", None)}})
        return str(err.value)
    assert "format is missing" in problems(categories={"a": "polyp"})
    assert "needs 4 (x1,y1,x2,y2) or 8" in problems(format="label_table", categories={"a": "polyp"},
                                                    table={"file": "t.csv", "image": "i", "label": "l", "box": ["x"]})
    assert "must be a 0-based index" in problems(format="label_table", categories={"a": "polyp"},
                                                 table={"file": "t", "image": "img", "label": "1", "header": False})
    assert "not a regular expression" in problems(format="mask", categories={"a": "polyp"}, group_by="(")
    with pytest.raises(ParamsError, match="must be the only source"):
        parse_params({"ingest": {"sources": [{"name": "R", "root": "/r", "format": "coloninst_release"},
                                             {"name": "B", "root": "/b", "format": "mask", "categories": {"a": "polyp"}}]}})
    with pytest.raises(ParamsError, match="captions must be null"):
        parse_params({"ingest": {"captions": "c.jsonl", "sources": [{"name": "R", "root": "/r",
                                                                     "format": "coloninst_release"}]}})


def test_count_comparison_statuses():
    exp = {"train": 600, "val": 100, "test": 300}
    assert compare({"train": 600, "val": 100, "test": 300}, exp, exact=True)["status"] == "match"
    close = compare({"train": 605, "val": 98, "test": 297}, exp, exact=False)
    assert close["status"] == "close" and close["difference"] == {"train": 5, "val": -2, "test": -3}
    assert compare({"train": 605, "val": 98, "test": 297}, exp, exact=True)["status"] == "differs"
    assert compare({"train": 640, "val": 60, "test": 300}, exp, exact=False)["status"] == "differs"
