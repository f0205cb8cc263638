"""The generated demo raw dataset: six sources in six native annotation formats + captions.

Contract (``generate_demo(out_dir, params)``):
- Writes ``out_dir/<Source>/...`` for every source in ``DEMO_SOURCES`` and
  ``out_dir/captions.jsonl``; ``source_params(out_dir)`` is the matching ``ingest.sources``
  list (``params.yaml`` holds the same, a test keeps them in step).
- Per source and category ``params.images_per_category`` images of ``SIZE`` (non-square; times
  ``scale``), drawn by ``demo_render``; some frames hold 2-3 objects of one category
  (boxes to merge) and some two categories. ``SynthClassFolders`` has an official
  Train/Val/Test split (60/10/30 per category); the others have none.
- ``params.bad_inputs`` plants one file for every check ``ingest`` makes (see ``_plant_bad``),
  named ``zz_*`` so they sort after the good files.
- Deterministic: each image has its own generator seeded by (seed, source, index), files are
  written in sorted order with fixed encoder settings; same params -> identical bytes.
- Written into a temporary sibling folder, then moved into place.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image
from tqdm import tqdm

from colonpipe import atomic
from colonpipe.data.demo_render import SIZE, Sample, caption, render
from colonpipe.params import DemoParams, SourceParams

logger = logging.getLogger(__name__)

JPEG_QUALITY = 90


@dataclass(frozen=True)
class DemoSource:
    name: str
    format: str
    labels: dict[str, str]  # demo category -> raw label as the source writes it
    prefix: str  # file stem prefix
    official_split: bool = False


DEMO_SOURCES: tuple[DemoSource, ...] = (
    DemoSource("SynthClassFolders", "class_folders", {
        "polyp": "polyp", "ulcer": "ulcer", "accessory tool": "accessory_tool", "blood fresh": "blood_fresh",
        "dyed lifted polyp": "dyed_lifted_polyp", "erosion": "erosion"}, "c", official_split=True),
    DemoSource("SynthMasks", "mask", {"polyp": "polyp", "ulcer": "ulcer", "dyed lifted polyp": "dyed_lifted_polyp"}, "m"),
    DemoSource("SynthVOC", "voc", {"polyp": "polyp", "accessory tool": "tool", "blood fresh": "blood",
                                   "erosion": "erosion"}, "v"),
    DemoSource("SynthSUN", "sun_txt", {"polyp": "1", "ulcer": "2", "erosion": "3"}, "s"),
    DemoSource("SynthYOLO", "yolo_txt", {"polyp": "polyp", "blood fresh": "blood", "accessory tool": "tool",
                                         "dyed lifted polyp": "dyed"}, "y"),
    DemoSource("SynthJSON", "json_boxes", {"blood fresh": "blood", "dyed lifted polyp": "dyed-lifted-polyp"}, "j"),
)
SOURCE = {s.name: s for s in DEMO_SOURCES}


def source_params(out_dir: str | Path = "data/raw") -> list[SourceParams]:
    """The ``ingest.sources`` entries that read this demo from ``out_dir``."""
    root = Path(out_dir).as_posix()
    return [SourceParams(name=s.name, root=f"{root}/{s.name}", format=s.format,
                         split="official" if s.official_split else "none",
                         categories={raw: cat for cat, raw in s.labels.items()},
                         yolo_classes=list(s.labels.values()) if s.format == "yolo_txt" else [])
            for s in DEMO_SOURCES]


@dataclass
class DemoSummary:
    out_dir: Path
    images: dict[str, int] = field(default_factory=dict)  # source -> good images written
    bad_inputs: int = 0
    captions: int = 0


@dataclass
class _Writer:
    """Collects captions and JSON entries while images are written under ``out``."""

    out: Path
    scale: float
    captions: dict[str, str] = field(default_factory=dict)  # record id -> caption
    json_entries: dict[str, dict] = field(default_factory=dict)

    def save(self, rel: str, pixels: np.ndarray, *, mode: str | None = None) -> Path:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(pixels)
        if mode is not None:
            im = im.convert(mode) if mode != "I;16" else Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
        if path.suffix == ".png":
            im.save(path, "PNG", compress_level=6)
        else:
            im.save(path, "JPEG", quality=JPEG_QUALITY)
        return path

    def text(self, rel: str, content: str) -> None:
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, *key])


def _size(scale: float) -> tuple[int, int]:
    return int(round(SIZE[0] * scale)), int(round(SIZE[1] * scale))


def _plan(rng: np.random.Generator, src: DemoSource, category: str) -> list[str]:
    """Categories drawn in one frame: mostly one object; some 2-3 of one kind; some two kinds."""
    r = rng.random()
    if src.format in ("class_folders", "mask"):
        return [category] * (2 if r < 0.15 else 1)
    if r < 0.15:
        return [category] * int(rng.integers(2, 4))
    if r < 0.27 and len(src.labels) > 1:
        others = [c for c in src.labels if c != category]
        return [category, others[int(rng.integers(len(others)))]]
    return [category]


def _split_of(k: int, n: int) -> str:
    """Official split of the k-th of n images of a category: 60/10/30 in index order."""
    n_test = max(1, round(0.3 * n)) if n >= 2 else 0
    n_val = max(1, round(0.1 * n)) if n >= 3 else 0
    return "Train" if k < n - n_val - n_test else ("Val" if k < n - n_test else "Test")


# --------------------------------------------------------------------------- annotation writers
def _voc_xml(filename: str, sample: Sample, labels: dict[str, str], extra: tuple[tuple, ...] = ()) -> str:
    """VOC XML (1-based coordinates); ``extra`` adds raw ``(name, x1, y1, x2, y2)`` objects."""
    w, h = sample.size
    objs = [(labels[o.category], *(v + 1 for v in o.box)) for o in sample.objects] + list(extra)
    body = "".join(
        f"  <object>\n    <name>{escape(str(n))}</name>\n    <difficult>0</difficult>\n    <bndbox>\n"
        f"      <xmin>{x1}</xmin>\n      <ymin>{y1}</ymin>\n      <xmax>{x2}</xmax>\n      <ymax>{y2}</ymax>\n"
        f"    </bndbox>\n  </object>\n" for n, x1, y1, x2, y2 in objs)
    return (f"<annotation>\n  <folder>JPEGImages</folder>\n  <filename>{escape(filename)}</filename>\n"
            f"  <size>\n    <width>{w}</width>\n    <height>{h}</height>\n    <depth>3</depth>\n  </size>\n"
            f"{body}</annotation>\n")


def _yolo_line(index: int, box: tuple[int, int, int, int], w: int, h: int) -> str:
    x1, y1, x2, y2 = box
    return f"{index} {(x1 + x2 + 1) / 2 / w:.6f} {(y1 + y2 + 1) / 2 / h:.6f} {(x2 - x1 + 1) / w:.6f} {(y2 - y1 + 1) / h:.6f}"


def _write_sample(wr: _Writer, src: DemoSource, stem: str, sample: Sample, *, split: str | None = None,
                  extra: tuple = ()) -> str:
    """Write the image and its annotation in ``src.format``; return the image path in the source."""
    labels, (w, h) = src.labels, sample.size
    raw0 = labels[sample.objects[0].category]
    root = f"{src.name}/"
    if src.format == "class_folders":
        rel = f"{split}/{raw0}/{stem}.jpg"
    elif src.format == "mask":
        rel = f"images/{raw0}/{stem}.jpg"
        union = np.logical_or.reduce([o.mask for o in sample.objects])
        wr.save(f"{root}masks/{raw0}/{stem}.png", (union * 255).astype(np.uint8), mode="L")
    elif src.format == "voc":
        rel = f"JPEGImages/{stem}.jpg"
        wr.text(f"{root}Annotations/{stem}.xml", _voc_xml(f"{stem}.jpg", sample, labels, extra))
    elif src.format == "sun_txt":
        rel = f"images/{stem}.jpg"
        lines = [",".join(map(str, (*o.box, labels[o.category]))) for o in sample.objects] + list(extra)
        wr.text(f"{root}annotations/{stem}.txt", "\n".join(lines) + "\n")
    elif src.format == "yolo_txt":
        rel = f"images/{stem}.jpg"
        index = {c: i for i, c in enumerate(labels)}
        lines = [_yolo_line(index[o.category], o.box, w, h) for o in sample.objects] + list(extra)
        wr.text(f"{root}labels/{stem}.txt", "\n".join(lines) + "\n")
    elif src.format == "json_boxes":
        rel = f"images/{stem}.jpg"
        boxes = [{"label": labels[o.category], "xmin": o.box[0], "ymin": o.box[1], "xmax": o.box[2],
                  "ymax": o.box[3]} for o in sample.objects] + list(extra)
        wr.json_entries[stem] = {"width": w, "height": h, "bbox": boxes}
    else:
        raise ValueError(f"unknown demo format {src.format!r}")
    wr.save(root + rel, sample.image)
    return rel


def _generate_source(wr: _Writer, si: int, src: DemoSource, params: DemoParams, bar: tqdm) -> int:
    """All good images of one source; returns how many were written."""
    n = params.images_per_category
    for ci, category in enumerate(src.labels):
        for k in range(n):
            rng = _rng(params.seed, si, ci, k)
            sample = render(rng, _size(wr.scale), _plan(rng, src, category))
            split = _split_of(k, n) if src.official_split else None
            rel = _write_sample(wr, src, f"{src.prefix}{ci * n + k:04d}", sample, split=split)
            wr.captions[f"{src.name}/{rel}"] = caption(rng, sample)
            bar.update()
    return n * len(src.labels)


# --------------------------------------------------------------------------- planted bad inputs
def _bad_sample(wr: _Writer, seed: int, k: int, categories: list[str]) -> tuple[Sample, np.random.Generator]:
    rng = _rng(seed, 99, k)
    return render(rng, _size(wr.scale), categories), rng


def _plant_class_folders(wr: _Writer, seed: int) -> int:
    src, root = SOURCE["SynthClassFolders"], wr.out / "SynthClassFolders"
    raw = _rng(seed, 98).bytes(3000)
    (root / "Train/polyp/zz_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + raw)  # JPEG magic, junk body
    modes = (("ulcer", "L", "grey"), ("erosion", "RGBA", "rgba"), ("blood fresh", "P", "palette"),
             ("accessory tool", "I;16", "16bit"))
    for k, (category, mode, tag) in enumerate(modes):
        sample, rng = _bad_sample(wr, seed, k, [category])
        rel = f"Train/{src.labels[category]}/zz_{tag}.png"
        wr.save(f"{src.name}/{rel}", sample.image, mode=mode)
        wr.captions[f"{src.name}/{rel}"] = caption(rng, sample)
    shutil.copyfile(root / "Train/polyp/c0000.jpg", root / "Train/polyp/zz_duplicate.jpg")
    sample, _ = _bad_sample(wr, seed, 4, ["polyp"])
    wr.save(f"{src.name}/Train/bubbles/zz_unknown_folder.jpg", sample.image)
    os.symlink("../../../SynthVOC/JPEGImages/v0000.jpg", root / "Train/polyp/zz_escape.jpg")
    return 8


def _plant_masks(wr: _Writer, seed: int) -> int:
    sample, _ = _bad_sample(wr, seed, 10, ["polyp"])
    wr.save("SynthMasks/images/polyp/zz_empty_mask.jpg", sample.image)
    wr.save("SynthMasks/masks/polyp/zz_empty_mask.png", np.zeros(sample.image.shape[:2], np.uint8), mode="L")
    sample, _ = _bad_sample(wr, seed, 11, ["ulcer"])
    wr.save("SynthMasks/images/ulcer/zz_no_mask.jpg", sample.image)
    return 2


def _plant_voc(wr: _Writer, seed: int) -> int:
    src = SOURCE["SynthVOC"]
    sample, _ = _bad_sample(wr, seed, 20, ["polyp"])
    wr.text("SynthVOC/Annotations/zz_missing_image.xml", _voc_xml("zz_missing_image.jpg", sample, src.labels))
    wr.text("SynthVOC/Annotations/zz_escape.xml", _voc_xml("../../SynthYOLO/images/y0000.jpg", sample, src.labels))
    sample, _ = _bad_sample(wr, seed, 21, ["erosion"])
    path = wr.out / "SynthVOC" / _write_sample(wr, src, "zz_truncated", sample)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 6 // 10])
    sample, rng = _bad_sample(wr, seed, 22, ["polyp"])
    w, h = sample.size
    extra = (("polyp", w - 40, 20, w + 30, 90), ("erosion", 120, 40, 60, 100), ("bubble", 10, 10, 60, 60))
    rel = _write_sample(wr, src, "zz_bad_boxes", sample, extra=extra)
    wr.captions[f"{src.name}/{rel}"] = caption(rng, sample)
    return 6


def _plant_txt(wr: _Writer, seed: int) -> int:
    sample, _ = _bad_sample(wr, seed, 30, ["ulcer"])
    wr.save("SynthSUN/images/zz_no_annotation.jpg", sample.image)
    sample, rng = _bad_sample(wr, seed, 31, ["ulcer"])
    rel = _write_sample(wr, SOURCE["SynthSUN"], "zz_bad_lines", sample,
                        extra=("oops not a box", "900,900,950,950,1", "10,10,60,60,9"))
    wr.captions[f"SynthSUN/{rel}"] = caption(rng, sample)
    wr.text("SynthYOLO/labels/zz_orphan.txt", "0 0.5 0.5 0.3 0.3\n")
    sample, rng = _bad_sample(wr, seed, 32, ["polyp"])
    rel = _write_sample(wr, SOURCE["SynthYOLO"], "zz_bad_lines", sample,
                        extra=("7 0.5 0.5 0.2 0.2", "0 0.5 0.5 0.0 0.2"))
    wr.captions[f"SynthYOLO/{rel}"] = caption(rng, sample)
    return 8


def _plant_json(wr: _Writer, seed: int) -> int:
    src = SOURCE["SynthJSON"]
    sample, rng = _bad_sample(wr, seed, 40, ["blood fresh"])
    rel = _write_sample(wr, src, "zz_bad_label", sample, extra=({"label": "bubble", "xmin": 5, "ymin": 5,
                                                                 "xmax": 50, "ymax": 50},))
    wr.captions[f"{src.name}/{rel}"] = caption(rng, sample)
    sample, _ = _bad_sample(wr, seed, 41, ["dyed lifted polyp"])
    _write_sample(wr, src, "zz_wrong_size", sample)
    wr.json_entries["zz_wrong_size"].update(width=100, height=100)
    wr.json_entries["zz_missing_image"] = {"width": 320, "height": 256, "bbox": [
        {"label": "blood", "xmin": 1, "ymin": 1, "xmax": 40, "ymax": 40}]}
    return 3


def _plant_bad(wr: _Writer, seed: int) -> tuple[int, list[str]]:
    """One planted input per ingest check; returns (count, extra raw caption lines)."""
    n = sum(f(wr, seed) for f in (_plant_class_folders, _plant_masks, _plant_voc, _plant_txt, _plant_json))
    bad_lines = ['{"image": "SynthVOC/JPEGImages/v0000.jpg", "caption": ',  # truncated JSON
                 json.dumps({"image": "SynthVOC/JPEGImages/zz_not_there.jpg", "caption": "An orphan caption."})]
    return n + len(bad_lines), bad_lines


# --------------------------------------------------------------------------- entry point
def generate_demo(out_dir: str | Path, params: DemoParams, *, scale: float = 1.0,
                  progress: bool = True) -> DemoSummary:
    """Write the demo raw dataset into ``out_dir`` (replaced as a whole); see module doc.

    ``scale`` multiplies the image sizes (benchmarks use it for realistic resolutions).
    """
    out = Path(out_dir)
    with atomic.staged_dir(out) as tmp:
        summary = _write_demo(_Writer(tmp, scale), out, params, progress)
    logger.info("demo: %d images in %d sources, %d planted bad inputs -> %s", sum(summary.images.values()),
                len(summary.images), summary.bad_inputs, out)
    return summary


def _write_demo(wr: _Writer, out: Path, params: DemoParams, progress: bool) -> DemoSummary:
    """Every demo file through ``wr``; the summary names ``out`` (where the folder will be)."""
    summary = DemoSummary(out)
    total = params.images_per_category * sum(len(s.labels) for s in DEMO_SOURCES)
    with tqdm(total=total, desc="demo images", unit="img", disable=not progress, mininterval=1.0) as bar:
        for si, src in enumerate(DEMO_SOURCES):
            summary.images[src.name] = _generate_source(wr, si, src, params, bar)
    wr.text("SynthYOLO/labels/classes.txt", "\n".join(SOURCE["SynthYOLO"].labels.values()) + "\n")
    bad_lines: list[str] = []
    if params.bad_inputs:
        summary.bad_inputs, bad_lines = _plant_bad(wr, params.seed)
    wr.text("SynthJSON/bboxes.json", json.dumps(wr.json_entries, indent=1, sort_keys=True) + "\n")
    lines = [json.dumps({"image": k, "caption": v}, ensure_ascii=False) for k, v in sorted(wr.captions.items())]
    wr.text("captions.jsonl", "\n".join(lines + bad_lines) + "\n")
    summary.captions = len(wr.captions)
    return summary
