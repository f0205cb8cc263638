"""Tiny copies of the public datasets' documented layouts, for tests and benchmarks/bench_data.py.

Every builder writes one dataset the way its own documentation describes it (the page is
named in the builder's docstring; docs/data.md has the details) - never the way the demo
generator writes data - and returns what ingest must find: ``{path under the root:
Expect(split, category, box)}``, ``split`` None when the split is seeded (drawn later by
instruct), ``box`` the exact inclusive box or None for a class-only image. Images are
smooth random fields (distinct per path, so no accidental duplicates; JPEG-compressible
like real frames); ``size`` and ``n`` scale them up for the benchmark.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Expect:
    split: str | None
    category: str
    box: tuple[int, int, int, int] | None = None


def img(path: Path, size=(32, 24), fmt: str | None = None) -> Path:
    """A smooth random RGB image with fine grain, distinct per path (seeded by its name); at
    1158x1008 it is a ~0.2 MB JPEG, in the range of real endoscopy frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = int.from_bytes(hashlib.sha256(path.as_posix().encode()).digest()[:8], "big")
    coarse = np.random.default_rng(seed).integers(0, 255, (6, 8, 3), dtype=np.uint8)
    smooth = Image.fromarray(coarse).resize(size, Image.BICUBIC)
    im = Image.blend(smooth, _grain(tuple(size)), 0.04)  # texture: JPEG sizes like real frames
    im.save(path, fmt or ("JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else None), quality=90)
    return path


@functools.cache
def _grain(size: tuple[int, int]) -> Image.Image:
    """Fixed fine noise of one size (shared: the smooth field already makes images distinct)."""
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def box_for(path: Path, size) -> tuple[int, int, int, int]:
    """A deterministic box inside a ``size`` image, distinct per path."""
    w, h = size
    r = int.from_bytes(hashlib.sha256(path.as_posix().encode()).digest()[:4], "big")
    x1, y1 = r % (w // 3), (r >> 8) % (h // 3)
    return x1, y1, x1 + w // 3 + r % 5, y1 + h // 3 + (r >> 4) % 4


def mask(path: Path, size, box, *, fmt: str | None = None, value: int = 255) -> Path:
    """A binary mask with ``box`` (inclusive) filled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size[1], size[0]), np.uint8)
    if box is not None:
        arr[box[1]:box[3] + 1, box[0]:box[2] + 1] = value
    Image.fromarray(arr).save(path, fmt or ("JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else None),
                              quality=95)
    return path


def _text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- confirmed layouts
def sun_seg(root: Path, n: int = 1, size=(40, 32)) -> dict[str, Expect]:
    """SUN-SEG (github.com/GewelsJI/VPS docs/DATA_DESCRIPTION.md): ``<Split>/Frame/<case>/x.jpg``,
    ``GT/<case>/x.png`` masks, ``Classification/classification.txt`` (``name<TAB>class``),
    weak labels in Edge/Scribble/Polygon, ``Detection/bbox_annotation.json``."""
    out = {}
    plan = [("TrainDataset", "train", "case1_1", "low_grade_adenoma", "low grade adenoma"),
            ("TrainDataset", "train", "case3_2", "sessile_serrated_lesion", "serrated lesion"),
            ("TestEasyDataset", "test", "case2_3", "hyperplastic_polyp", "hyperplastic lesion"),
            ("TestHardDataset", "test", "case1_2", "high_grade_adenoma", "high grade adenoma")]
    tables: dict[str, list[str]] = {}
    for split_dir, split, case, raw, category in plan:
        for i in range(n):
            name = f"case_M_2018100{len(out)}_{case}_image{i:04d}"
            frame = f"{split_dir}/Frame/{case}/{name}.jpg"
            img(root / frame, size)
            box = box_for(root / frame, size)
            mask(root / f"{split_dir}/GT/{case}/{name}.png", size, box)
            mask(root / f"{split_dir}/Edge/{case}/{name}.png", size, box)  # weak labels: ignored
            tables.setdefault(split_dir, []).append(f"{name}.jpg\t{raw}")
            out[frame] = Expect(split, category, box)
    for split_dir, lines in tables.items():
        _text(root / f"{split_dir}/Classification/classification.txt", "\n".join(lines) + "\n")
        _text(root / f"{split_dir}/Detection/bbox_annotation.json", json.dumps({"images": [], "annotation": []}))
    # a test frame whose mask is empty: class-only, as ColonINST counts it (CLS > REG for SUN test)
    name = "case_M_20181009_case1_2_image0999"
    img(root / f"TestHardDataset/Frame/case1_2/{name}.jpg", size)
    mask(root / f"TestHardDataset/GT/case1_2/{name}.png", size, None)
    with open(root / "TestHardDataset/Classification/classification.txt", "a", encoding="utf-8") as fh:
        fh.write(f"{name}.jpg\tinvasive_carcinoma\n")
    out[f"TestHardDataset/Frame/case1_2/{name}.jpg"] = Expect("test", "invasive carcinoma", None)
    return out


def pranet_test_set(root: Path, n: int = 2, size=(40, 32)) -> dict[str, Expect]:
    """A PraNet ``TestDataset/<name>`` folder (github.com/DengPingFan/PraNet): ``images/N.png`` +
    ``masks/N.png`` (ETIS-LaribPolypDB, CVC-ColonDB)."""
    out = {}
    for i in range(1, n + 1):
        rel = f"images/{i}.png"
        img(root / rel, size)
        box = box_for(root / rel, size)
        mask(root / f"masks/{i}.png", size, box)
        out[rel] = Expect("test", "polyp", box)
    return out


def _voc(path: Path, filename: str, size, objects) -> None:
    objs = "".join(f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
                   f"<difficult>0</difficult><bndbox><xmin>{b[0] + 1}</xmin><ymin>{b[1] + 1}</ymin>"
                   f"<xmax>{b[2] + 1}</xmax><ymax>{b[3] + 1}</ymax></bndbox></object>" for name, b in objects)
    _text(path, f"<annotation><folder>{path.parent.name}</folder><filename>{filename}</filename><size>"
                f"<width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
                f"<segmented>0</segmented>{objs}</annotation>")


def kumc(root: Path, n: int = 1, size=(48, 36)) -> dict[str, Expect]:
    """KUMC / PolypsSet (Harvard Dataverse doi:10.7910/DVN/FCBUOR): ``train2019/Image/N.jpg`` +
    ``train2019/Annotation/N.xml``; ``val2019`` / ``test2019`` hold per-video folders
    ``Image/<video>/N.jpg`` + ``Annotation/<video>/N.xml``; VOC names adenomatous / hyperplastic."""
    out = {}
    for split_dir, split, sub in (("train2019", "train", ""), ("val2019", "val", "15/"), ("test2019", "test", "3/")):
        for i in range(1, n + 2):
            rel = f"PolypsSet/{split_dir}/Image/{sub}{i}.jpg"
            img(root / rel, size)
            xml = root / f"PolypsSet/{split_dir}/Annotation/{sub}{i}.xml"
            if i == n + 1 and split == "val":  # an XML without objects: a class-only polyp frame
                _voc(xml, f"{i}.jpg", size, [])
                out[rel] = Expect(split, "polyp", None)
                continue
            box = box_for(root / rel, size)
            # the XMLs name .png files stored as .jpg: paired by stem
            _voc(xml, f"{i}.png" if sub else f"{i}.jpg", size, [("adenomatous" if i % 2 else "hyperplastic", box)])
            out[rel] = Expect(split, "polyp", box)
    return out


def wce_ccdd(root: Path, n: int = 1, size=(32, 32)) -> dict[str, Expect]:
    """WCE Curated Colon Dataset (Kaggle francismon): ``{train,val,test}/{0_normal,
    1_ulcerative_colitis,2_polyps,3_esophagitis}/x.jpg``."""
    out = {}
    for split in ("train", "val", "test"):
        for folder, category in (("0_normal", None), ("1_ulcerative_colitis", "ulcer"), ("2_polyps", "polyp"),
                                 ("3_esophagitis", None)):
            for i in range(n):
                rel = f"{split}/{folder}/{split}_{folder}_ ({i + 1}).jpg"
                img(root / rel, size)
                if category:
                    out[rel] = Expect(split, category)
    return out


def kvasir_instrument(root: Path, n: int = 2, size=(40, 32)) -> dict[str, Expect]:
    """Kvasir-Instrument (datasets.simula.no/kvasir-instrument): ``images/x.jpg``, ``masks/x.png``,
    ``bboxes/x.txt``, and ``train.txt`` / ``test.txt`` listing stems."""
    out, lists = {}, {"train": [], "test": []}
    for i in range(2 * n):
        stem = f"ckcu{i:04d}3b5ytpqoue72"
        rel = f"images/{stem}.jpg"
        img(root / rel, size)
        box = box_for(root / rel, size)
        mask(root / f"masks/{stem}.png", size, box)
        _text(root / f"bboxes/{stem}.txt", f"1\ninstrument {box[0]} {box[1]} {box[2]} {box[3]}\n")
        split = "train" if i < n else "test"
        lists[split].append(stem)
        out[rel] = Expect(split, "accessory tool", box)
    for split, stems in lists.items():
        _text(root / f"{split}.txt", "\n".join(stems) + "\n")
    return out


def kvasir_capsule(root: Path, n: int = 1, size=(40, 40)) -> dict[str, Expect]:
    """Kvasir-Capsule (github.com/simula/kvasir-capsule): ``labelled_images/<Class>/<video>_<frame>.jpg``
    and ``metadata.csv``: ``filename;video_id;frame_number;finding_category;finding_class;x1;y1;...;y4``
    (corner boxes; empty for class-only rows)."""
    rows = ["filename;video_id;frame_number;finding_category;finding_class;x1;y1;x2;y2;x3;y3;x4;y4"]
    out = {}
    plan = [("Polyp", "polyp", True), ("Angiectasia", "angiectasia", True), ("Ileocecal valve", "ileocecal valve", False),
            ("Blood - fresh", "blood fresh", True), ("Normal clean mucosa", None, False)]
    for video in ("04a78ef00c5245e0", "3c8d5f0b90d7475f"):
        for folder, category, boxed in plan:
            for i in range(n):
                name = f"{video}_{len(rows) * 10 + i}.jpg"
                rel = f"labelled_images/{folder}/{name}"
                img(root / rel, size)
                box = box_for(root / rel, size) if boxed else None
                corners = [box[0], box[1], box[2], box[1], box[2], box[3], box[0], box[3]] if box else [""] * 8
                finding = "Anatomy" if folder == "Ileocecal valve" else "Luminal"
                rows.append(";".join([name, video, str(i), finding, folder] + [str(c) for c in corners]))
                if category:
                    out[rel] = Expect(None, category, box)
    _text(root / "metadata.csv", "\n".join(rows) + "\n")
    return out


def hyper_kvasir(root: Path, n: int = 1, size=(32, 28)) -> dict[str, Expect]:
    """HyperKvasir (github.com/simula/hyper-kvasir; Borgli et al. 2020):
    ``labeled-images/{lower,upper}-gi-tract/<group>/<class>/<uuid>.jpg`` + ``image-labels.csv``."""
    out = {}
    plan = [("pathological-findings", "ulcerative-colitis-grade-1", "ulcerative colitis grade 1"),
            ("pathological-findings", "ulcerative-colitis-grade-0-1", "ulcerative colitis grade 0-1"),
            ("pathological-findings", "hemorrhoids", "hemorrhoids"),
            ("anatomical-landmarks", "cecum", "cecum"),
            ("quality-of-mucosal-views", "bbps-0-1", "bbps 0-1"),
            ("therapeutic-interventions", "dyed-lifted-polyps", "dyed lifted polyp"),
            ("pathological-findings", "polyps", None),  # not in ColonINST's HyperKvasir part
            ("quality-of-mucosal-views", "impacted-stool", None)]
    rows = ["Video file,Organ,Finding,Classification"]
    for group, cls, category in plan:
        for i in range(n):
            uuid = hashlib.md5(f"{cls}{i}".encode()).hexdigest()
            uuid = f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:]}"
            rel = f"labeled-images/lower-gi-tract/{group}/{cls}/{uuid}.jpg"
            img(root / rel, size)
            rows.append(f"{uuid},Lower GI,{cls},{group}")
            if category:
                out[rel] = Expect(None, category)
    img(root / "labeled-images/upper-gi-tract/pathological-findings/barretts/b0.jpg", size)
    _text(root / "labeled-images/image-labels.csv", "\n".join(rows) + "\n")
    return out


def kvasir_v2(root: Path, n: int = 1, size=(32, 28)) -> dict[str, Expect]:
    """Kvasir v2 (datasets.simula.no/kvasir): ``kvasir-dataset-v2/<class>/<uuid>.jpg``, 8 classes."""
    out = {}
    for cls, category in (("ulcerative-colitis", "ulcerative colitis"), ("dyed-resection-margins", "dyed resection margin"),
                          ("polyps", None), ("normal-cecum", None), ("esophagitis", None)):
        for i in range(n):
            rel = f"kvasir-dataset-v2/{cls}/{hashlib.md5(f'{cls}{i}'.encode()).hexdigest()}.jpg"
            img(root / rel, size)
            if category:
                out[rel] = Expect(None, category)
    return out


def kvasir_seg(root: Path, n: int = 2, size=(48, 40)) -> dict[str, Expect]:
    """Kvasir-SEG (datasets.simula.no/kvasir-seg): ``images/x.jpg``, ``masks/x.jpg`` and
    ``kavsir_bboxes.json``: ``{stem: {"height", "width", "bbox": [{"label", "xmin", ...}]}}``."""
    out, boxes = {}, {}
    for i in range(n):
        stem = f"cju0qkwl35piu0993l0dewe{i:02d}"
        rel = f"images/{stem}.jpg"
        img(root / rel, size)
        box = box_for(root / rel, size)
        mask(root / f"masks/{stem}.jpg", size, box)
        boxes[stem] = {"height": size[1], "width": size[0], "bbox": [
            {"label": "polyp", "xmin": box[0], "ymin": box[1], "xmax": box[2], "ymax": box[3]}]}
        out[rel] = Expect(None, "polyp", box)
    _text(root / "kavsir_bboxes.json", json.dumps(boxes))
    return out


def edd2020(root: Path, n: int = 1, size=(48, 40)) -> dict[str, Expect]:
    """EDD2020 (edd2020.grand-challenge.org; its release's read_boxes: ``x1 y1 x2 y2 class``):
    ``EDD2020_release-I_2020-01-15/originalImages/EDD2020_X.jpg``, ``bbox/EDD2020_X.txt``,
    ``masks/EDD2020_X_<class>.tif``, ``class_list.txt``."""
    base = "EDD2020_release-I_2020-01-15"
    out = {}
    _text(root / f"{base}/class_list.txt", "BE\nsuspicious\nHGD\ncancer\npolyp\n")
    for stem, classes in (("EDD2020_ACB0001", ["polyp"]), ("EDD2020_AJ0008", ["HGD", "cancer"]),
                          ("EDD2020_B0021", ["BE"])):
        for i in range(n):
            name = f"{stem}{i or ''}"
            rel = f"{base}/originalImages/{name}.jpg"
            img(root / rel, size)
            box = box_for(root / rel, size)
            _text(root / f"{base}/bbox/{name}.txt", "".join(f"{box[0]} {box[1]} {box[2]} {box[3]} {c}\n" for c in classes))
            mask(root / f"{base}/masks/{name}_{classes[0]}.tif", size, box)
            if classes == ["polyp"]:
                out[rel] = Expect(None, "polyp", box)
            elif "HGD" in classes:  # several classes on one image: one row per category
                out[rel] = Expect(None, "adenocarcinoma", box)
                out[rel + "#HGD"] = Expect(None, "high grade dysplasia", box)
    return out


def nerthus(root: Path, n: int = 2, size=(32, 28)) -> dict[str, Expect]:
    """Nerthus (datasets.simula.no/nerthus): ``nerthus-dataset-frames/<BBPS>/bowel_<video>_score_<s>_<frame>.jpg``."""
    out = {}
    for score, videos in (("0", (1, 2)), ("1", (3, 4, 5)), ("2", (13,)), ("3", (17, 18))):
        for video in videos:
            for frame in range(1, n + 1):
                rel = f"nerthus-dataset-frames/{score}/bowel_{video}_score_{score}-0_{frame:08d}.jpg"
                img(root / rel, size)
                out[rel] = Expect(None, f"bbps {score}")
    return out


def gastrovision(root: Path, n: int = 1, size=(36, 28)) -> dict[str, Expect]:
    """GastroVision (osf.io/84e7f; github.com/DebeshJha/GastroVision): ``Gastrovision/<class name>/<id>.jpg``."""
    out = {}
    for cls, category in (("Colon polyps", "polyp"), ("Accessory tools", "accessory tool"),
                          ("Mucosal inflammation large bowel", "inflammatory bowel disease"),
                          ("Blood in lumen", "blood in lumen"), ("Dyed-resection-margins", "dyed resection margin"),
                          ("Normal stomach", None), ("Barrett's esophagus", None),
                          ("Gastroesophageal_junction_normal z-line", None)):
        for i in range(n):
            rel = f"Gastrovision/{cls}/{hashlib.md5(f'{cls}{i}'.encode()).hexdigest()}.jpg"
            img(root / rel, size)
            if category:
                out[rel] = Expect(None, category)
    return out


def polypgen(root: Path, n: int = 1, size=(54, 40)) -> dict[str, Expect]:
    """PolypGen (Ali et al., Sci Data 2023; Synapse syn26376615): ``data_C<k>/images_C<k>/x.jpg``,
    ``masks_C<k>/x_mask.jpg``, ``bbox_C<k>/x_mask.txt``, ``bbox_image_C<k>/x_mask_bbox.jpg``;
    ``sequenceData/positive/seq<k>/{images,masks}_seq<k>/``; ``sequenceData/negativeOnly/``;
    ``imagesAll_positive/`` (a flat copy of every positive frame)."""
    base = "PolypGen2021_MultiCenterData_v3"
    out = {}
    frames = [(f"data_C{c}", f"_C{c}", f"{100 + c}H00{i:02d}") for c in (1, 2) for i in range(n)]
    frames += [(f"sequenceData/positive/seq{s}", f"_seq{s}", f"seq{s}_endocv2021_positive_{i}")
               for s in (1, 2) for i in range(n + 1)]
    for k, (folder, tag, stem) in enumerate(frames):
        rel = f"{base}/{folder}/images{tag}/{stem}.jpg"
        img(root / rel, size)
        empty = k == len(frames) - 1  # a sequence frame the polyp has left: empty mask
        box = None if empty else box_for(root / rel, size)
        mask(root / f"{base}/{folder}/masks{tag}/{stem}_mask.jpg", size, box)
        _text(root / f"{base}/{folder}/bbox{tag}/{stem}_mask.txt", "" if empty else f"polyp {box[0]} {box[1]} {box[2]} {box[3]}\n")
        img(root / f"{base}/{folder}/bbox_image{tag}/{stem}_mask_bbox.jpg", size)  # overlay: ignored
        img(root / f"{base}/imagesAll_positive/{stem}.jpg", size)  # flat duplicate: ignored
        out[rel] = Expect(None, "polyp", box)
    img(root / f"{base}/sequenceData/negativeOnly/seq1_neg/neg_0001.jpg", size)
    return out


def cvc_clinicdb(root: Path, n: int = 2, size=(38, 29)) -> dict[str, Expect]:
    """CVC-ClinicDB (polyp.grand-challenge.org/CVCClinicDB): ``Original/N.tif`` + ``Ground Truth/N.tif``."""
    out = {}
    for i in range(1, n + 1):
        rel = f"Original/{i}.tif"
        img(root / rel, size, fmt="TIFF")
        box = box_for(root / rel, size)
        mask(root / f"Ground Truth/{i}.tif", size, box, fmt="TIFF")
        out[rel] = Expect(None, "polyp", box)
    return out


def cp_child(root: Path, n: int = 1, size=(32, 32)) -> dict[str, Expect]:
    """CP-CHILD (figshare 12554042): ``CP-CHILD-{A,B}/{Train,Test}/{Polyp,Non-Polyp}/x.jpg``."""
    out = {}
    for part in ("CP-CHILD-A", "CP-CHILD-B"):
        for split_dir, split in (("Train", "train"), ("Test", "test")):
            for cls in ("Polyp", "Non-Polyp"):
                for i in range(n):
                    rel = f"{part}/{split_dir}/{cls}/{part[-1]}{split}{i}.jpg"
                    img(root / rel, size)
                    if cls == "Polyp":
                        out[rel] = Expect(split, "polyp")
    return out


def bkai_small(root: Path, n: int = 1, size=(40, 32)) -> dict[str, Expect]:
    """BKAI-IGH NeoPolyp-Small (kaggle.com/c/bkai-igh-neopolyp): ``train/train/x.jpeg``,
    ``train_gt/train_gt/x.jpeg`` (red/green colour masks), ``test/test/x.jpeg``."""
    out = {}
    for i in range(n):
        stem = hashlib.md5(str(i).encode()).hexdigest()
        for split in ("train", "test"):
            rel = f"{split}/{split}/{split[:2]}{stem}.jpeg"
            img(root / rel, size)
            out[rel] = Expect(split, "polyp")
        img(root / f"train_gt/train_gt/tr{stem}.jpeg", size)
    return out


def coco_detection(root: Path, n: int = 4, size=(48, 40)) -> dict[str, Expect]:
    """A COCO detection file (cocodataset.org/#format-data) listing many images: ``images/x.jpg``
    + ``annotations/instances.json`` with ``bbox: [x, y, w, h]`` (not a catalogue entry)."""
    out, images, anns = {}, [], []
    for i in range(n):
        rel = f"images/frame_{i:06d}.jpg"
        img(root / rel, size)
        box = box_for(root / rel, size)
        images.append({"id": i + 1, "width": size[0], "height": size[1], "file_name": f"frame_{i:06d}.jpg"})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                     "bbox": [box[0], box[1], box[2] - box[0] + 1, box[3] - box[1] + 1],
                     "area": (box[2] - box[0] + 1) * (box[3] - box[1] + 1)})
        out[rel] = Expect(None, "polyp", box)
    _text(root / "annotations/instances.json", json.dumps({"images": images, "annotations": anns,
                                                            "categories": [{"id": 1, "name": "polyp"}]}))
    return out


# --------------------------------------------------------------------------- ColonINST-organised layout
def coloninst_tree(categories: dict[str, str], splits=("Train", "Val", "Test")):
    """Builder for a dataset folder as ColonINST organises it (the guideline's Positive-images
    tree): ``<Split>/<category folder>/x.jpg``; used where the original layout is unconfirmed."""
    def build(root: Path, n: int = 1, size=(32, 28)) -> dict[str, Expect]:
        out = {}
        for split_dir in splits:
            for folder, category in categories.items():
                for i in range(n):
                    rel = f"{split_dir}/{folder}/{folder}_{split_dir}_{i}.jpg"
                    img(root / rel, size)
                    out[rel] = Expect(split_dir.lower(), category)
        return out
    return build


BUILDERS = {
    "SUN": sun_seg,
    "ETIS": pranet_test_set,
    "KUMC": kumc,
    "WCE-CCDD": wce_ccdd,
    "CPC-Paired": coloninst_tree({"adenoma": "adenoma", "hyperplastic_lesion": "hyperplastic lesion"}),
    "PICCOLO": coloninst_tree({"polyp": "polyp"}),
    "Kvasir-Instrument": kvasir_instrument,
    "Kvasir-Capsule": kvasir_capsule,
    "PSNBI2K": coloninst_tree({"polyp": "polyp"}, splits=("Train", "Test")),
    "Hyper-Kvasir": hyper_kvasir,
    "Kvasir": kvasir_v2,
    "Kvasir-SEG": kvasir_seg,
    "EDD2020": edd2020,
    "Nerthus": nerthus,
    "CVC-ColonDB": pranet_test_set,
    "GastroVision": gastrovision,
    "PolypGen": polypgen,
    "CVC-ClinicDB": cvc_clinicdb,
    "CP-CHILD": cp_child,
    "BKAI-Small": bkai_small,
}
