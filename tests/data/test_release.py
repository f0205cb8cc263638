"""The official ColonINST release as an input: checked, then passed on unchanged.

The fixture follows the ColonINST guideline (github.com/ai4colonoscopy/IntelliScope,
docs/guideline-for-ColonINST.md): ``Positive-images/<Dataset>/<Split>/<category>/<file>``
and ``Json-file/{train,val,test}/ColonINST-*.json`` whose records are the guideline's own
examples (``CVC-ClinicDB/Train/polyp/1.png`` ..., ``{<123><95><242><195>}``) and EDD2020's
multi-class ``all-images`` folder.
"""

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from colonpipe.data.images import ImageResolver
from colonpipe.data.ingest import ingest
from colonpipe.data.instruct import InstructError, build_instruct
from colonpipe.params import IngestParams, InstructParams, SourceParams
from stages import ingest as ingest_stage
from stages import instruct as instruct_stage
from tests.data.layouts import img


def _rec(rid, question, answer):
    return {"id": rid, "image": Path(rid).stem,
            "conversations": [{"from": "human", "value": "<image>\n" + question}, {"from": "gpt", "value": answer}]}


def release(root: Path) -> Path:
    for rid in ("CVC-ClinicDB/Train/polyp/1.png", "CVC-ClinicDB/Train/polyp/103.png", "CVC-ClinicDB/Test/polyp/11.png",
                "EDD2020/Train/all-images/EDD2020_AJ0008.jpg"):
        img(root / "Positive-images" / rid, (300, 250))
    cap = "This image presents a close-up view of a polyp, observed within the gastrointestinal tract."
    files = {
        "train/ColonINST-train-cap.json": [_rec("CVC-ClinicDB/Train/polyp/1.png", "Interpret what the image shows.", cap)],
        "train/ColonINST-train-3tasks.json": [
            _rec("CVC-ClinicDB/Train/polyp/1.png", "Classify the object's category.", "polyp"),
            _rec("CVC-ClinicDB/Train/polyp/103.png", "Classify the object's category.", "polyp"),
            _rec("EDD2020/Train/all-images/EDD2020_AJ0008.jpg", "Categorize the object.", "adenocarcinoma"),
            _rec("CVC-ClinicDB/Train/polyp/103.png", "Can you tell me the category of {<123><95><242><195>}?", "polyp"),
            _rec("CVC-ClinicDB/Train/polyp/103.png", "Where is the location of polyp?", "{<123><95><242><195>}"),
            _rec("EDD2020/Train/all-images/EDD2020_AJ0008.jpg", "Where is adenocarcinoma located?", "{<10><20><60><90>}"),
            _rec("EDD2020/Train/all-images/EDD2020_AJ0008.jpg", "Where is high grade dysplasia located?",
                 "{<15><25><80><99>}")],
        "test/ColonINST-test-cls.json": [_rec("CVC-ClinicDB/Test/polyp/11.png", "Classify the object's category.", "polyp")],
        "test/ColonINST-test-rec.json": [_rec("CVC-ClinicDB/Test/polyp/11.png", "Where is the location of polyp?",
                                              "{<40><12><160><216>}")],
    }
    for split in ("val", "test"):
        for task in ("cls", "reg", "rec", "cap"):
            files.setdefault(f"{split}/ColonINST-{split}-{task}.json", [])
    for rel, recs in files.items():
        path = root / "Json-file" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(recs, indent=4))  # the release's own formatting, kept byte for byte
    return root


def _ingest(tmp_path, root):
    src = SourceParams(name="ColonINST", root=str(root), format="coloninst_release")
    ingest(IngestParams(sources=[src], workers=1), tmp_path / "interim", progress=False)
    return json.loads((tmp_path / "interim/ingest_report.json").read_text())


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.json"))}


def test_release_is_checked_read_and_passed_on_byte_for_byte(tmp_path):
    root = release(tmp_path / "ColonINST")
    report = _ingest(tmp_path, root)
    assert report["release"]["check"]["ok"] and report["release"]["files"] == 10
    rows = pq.read_table(tmp_path / "interim/annotations.parquet").to_pylist()
    got = sorted(((r["dataset"], r["split"], r["image"], r["category"], tuple(r["box"]) if r["box"] else None,
                   r["caption"] is not None) for r in rows), key=lambda t: (t[:4], t[4] or ()))
    assert got == [
        ("CVC-ClinicDB", "test", "CVC-ClinicDB/Test/polyp/11.png", "polyp", None, False),
        ("CVC-ClinicDB", "test", "CVC-ClinicDB/Test/polyp/11.png", "polyp", (40, 12, 160, 216), False),
        ("CVC-ClinicDB", "train", "CVC-ClinicDB/Train/polyp/1.png", "polyp", None, True),
        ("CVC-ClinicDB", "train", "CVC-ClinicDB/Train/polyp/103.png", "polyp", None, False),
        ("CVC-ClinicDB", "train", "CVC-ClinicDB/Train/polyp/103.png", "polyp", (123, 95, 242, 195), False),
        ("EDD2020", "train", "EDD2020/Train/all-images/EDD2020_AJ0008.jpg", "adenocarcinoma", None, False),
        ("EDD2020", "train", "EDD2020/Train/all-images/EDD2020_AJ0008.jpg", "adenocarcinoma", (10, 20, 60, 90), False),
        ("EDD2020", "train", "EDD2020/Train/all-images/EDD2020_AJ0008.jpg", "high grade dysplasia", (15, 25, 80, 99),
         False)]
    roots = json.loads((tmp_path / "interim/image_roots.json").read_text())
    assert roots == {"CVC-ClinicDB": f"{root.as_posix()}/Positive-images/CVC-ClinicDB",
                     "EDD2020": f"{root.as_posix()}/Positive-images/EDD2020"}
    assert report["sources"]["CVC-ClinicDB"]["counts"]["status"] == "differs"  # 2/0/1 of ColonINST's 550/0/62

    stats = build_instruct(tmp_path / "interim/annotations.parquet", tmp_path / "out", InstructParams())
    assert _digests(tmp_path / "out/Json-file") == _digests(root / "Json-file")
    assert stats["records"]["train"] == {"cls": 3, "reg": 1, "rec": 3, "cap": 1}
    assert stats["images"] == {"train": 3, "val": 0, "test": 1} and stats["release"]["files"] == 10
    assert stats["catalogue"]["CVC-ClinicDB"]["found"] == {"train": 2, "val": 0, "test": 1}
    assert stats["count_warnings"]
    resolver = ImageResolver.from_path(tmp_path / "interim/image_roots.json")  # what training/inference use
    for rec in json.loads((tmp_path / "out/Json-file/train/ColonINST-train-3tasks.json").read_text()):
        assert resolver.resolve(rec["id"]).is_file()


def test_a_release_file_changed_after_ingest_is_refused(tmp_path):
    root = release(tmp_path / "ColonINST")
    _ingest(tmp_path, root)
    path = root / "Json-file/test/ColonINST-test-cls.json"
    path.write_text(path.read_text().replace("polyp\"", "ulcer\""))
    with pytest.raises(InstructError, match="ColonINST-test-cls.json changed since ingest"):
        build_instruct(tmp_path / "interim/annotations.parquet", tmp_path / "out", InstructParams())


def test_release_problems_are_reported_and_files_still_pass(tmp_path):
    root = release(tmp_path / "ColonINST")
    (root / "Positive-images/CVC-ClinicDB/Test/polyp/11.png").unlink()
    report = _ingest(tmp_path, root)
    check = report["release"]["check"]
    assert not check["ok"] and check["problems"]["missing_image"] == 2
    assert report["problems"]  # the missing image is also a reported skip of the manifest
    build_instruct(tmp_path / "interim/annotations.parquet", tmp_path / "out", InstructParams())
    assert _digests(tmp_path / "out/Json-file") == _digests(root / "Json-file")


def test_a_release_missing_a_spec_file_stops_instruct(tmp_path):
    root = release(tmp_path / "ColonINST")
    (root / "Json-file/val/ColonINST-val-rec.json").unlink()
    _ingest(tmp_path, root)
    with pytest.raises(InstructError, match="lacks val/ColonINST-val-rec.json"):
        build_instruct(tmp_path / "interim/annotations.parquet", tmp_path / "out", InstructParams())


def test_the_stages_run_a_release_from_params_yaml(tmp_path, monkeypatch, caplog):
    """params.yaml as a user writes it for the release; the ingest and instruct stage scripts."""
    release(tmp_path / "ColonINST")
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(yaml.safe_dump({"ingest": {"captions": None, "workers": 1, "sources": [
        {"name": "ColonINST", "root": "ColonINST", "format": "coloninst_release"}]}}))
    assert ingest_stage.main(["--out-dir", "data/interim"]) == 0
    assert instruct_stage.main(["--manifest", "data/interim/annotations.parquet", "--out-dir", "data/coloninst"]) == 0
    assert _digests(Path("data/coloninst/Json-file")) == _digests(Path("ColonINST/Json-file"))
    assert "count check: CVC-ClinicDB" in caplog.text  # 3 images is not ColonINST's 612: said loudly
