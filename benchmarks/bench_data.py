"""Data-stage speed: ingest (+ instruct) at several sizes, extrapolated to ColonINST scale.

What it does, in one run on the same files:
1. Generates the demo once (``--per-category`` images per category and source, no bad
   inputs) and clones its sources until each size is reached. Clone JPEGs get a distinct
   JPEG comment segment, so every image has its own content hash (no duplicates) while
   decoding costs the same.
2. Per size: times ``ingest`` (the default ``image_check: markers``, 2 workers) and
   ``instruct`` (``build_instruct``), and the image check alone at every level and worker
   count - ``full`` decode in one process is the naive baseline.
3. Repeats the size with the most realistic resolution (``--hires-scale``, default 2x the demo:
   512-896 px wide, like SUN/HyperKvasir frames) to price bigger files.
4. Fits ``t = a + b * n`` (least squares) to each series and extrapolates to 128,620 images,
   using the high-resolution per-image cost where it is higher.
5. Real layouts at real frame sizes (``--real-images`` per reader, 0 skips): the public
   datasets' own layouts (tests/data/layouts.py, as in the fixture tests) written as JPEG at
   622x529, 1158x1008 and 1350x1080 (Kvasir-SEG, SUN, HyperKvasir/PolypGen sizes), read
   through their catalogue presets - VOC under year split folders (KUMC), numbered mask
   folders with a ``_mask`` suffix (PolypGen), masks + a label table (SUN-SEG), a label
   table with corner boxes and video groups (Kvasir-Capsule), leaf class folders
   (HyperKvasir), a split list (Kvasir-Instrument), box text (EDD2020) and one COCO file
   listing every image. Each reader is timed alone at two sizes (ms/image = the slope, so
   process start-up is excluded), then all together (+ instruct) against the naive full
   decode of the same images in the same run, and extrapolated to 128,620 images twice: at
   this run's mix and at ColonINST's (each dataset's expected images at its reader's cost).
   Times are idle-2-core estimates from CPU seconds (main process + finished workers / 2):
   on a shared box the wall clock grows with other people's load; both are printed.

    python benchmarks/bench_data.py                          # sizes 1k, 5k, 20k (~5 min on 2 cores)
    python benchmarks/bench_data.py --sizes 500 2000 --hires-images 1000 --json bench.json
    python benchmarks/bench_data.py --sizes 1000 --hires-images 0 --real-images 300   # real layouts

Files are freshly written, so they are read from the page cache: the numbers are CPU cost.
A cold read of ~10 GB of real images adds the disk's sequential read time on top.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from colonpipe.data import catalogue
from colonpipe.data.demo import DEMO_SOURCES, generate_demo, source_params
from colonpipe.data.image_check import check_images
from colonpipe.data.ingest import ingest
from colonpipe.params import DemoParams, IngestParams, InstructParams, SourceParams
from tests.data import layouts  # the public layouts the fixture tests use (repo root on sys.path)

COLONINST_IMAGES = 128_620
CHECKS = (("full", 1), ("full", 2), ("reduced", 2), ("markers", 1), ("markers", 2))  # (level, workers)

try:
    from colonpipe.data.instruct import build_instruct
except ImportError:  # instruct written by another change; benchmark ingest alone then
    build_instruct = None


def _tag_jpeg(data: bytes, tag: str) -> bytes:
    """Insert a COM segment after SOI: a valid, distinct JPEG that decodes to the same pixels."""
    payload = f"bench clone {tag}".encode()
    return data[:2] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + data[2:]


def _clone(base: Path, dst: Path, copy: int) -> None:
    """Copy every demo source under ``dst`` as ``<name>_<copy>``, JPEGs tagged."""
    for src in DEMO_SOURCES:
        for path in sorted((base / src.name).rglob("*")):
            if path.is_dir():
                continue
            out = dst / f"{src.name}_{copy}" / path.relative_to(base / src.name)
            out.parent.mkdir(parents=True, exist_ok=True)
            data = path.read_bytes()
            out.write_bytes(_tag_jpeg(data, str(copy)) if path.suffix == ".jpg" else data)


def build_dataset(base: Path, dst: Path, copies: int) -> IngestParams:
    """``copies`` clones of the base demo + a captions file; the params that ingest it."""
    captions = [json.loads(line) for line in (base / "captions.jsonl").read_text().splitlines() if line.strip()]
    sources: list[SourceParams] = []
    lines = []
    for c in range(copies):
        _clone(base, dst, c)
        for sp in source_params(dst):
            sources.append(SourceParams(**{**sp.__dict__, "name": f"{sp.name}_{c}", "root": f"{sp.root}_{c}"}))
        for rec in captions:
            name, rest = rec["image"].split("/", 1)
            lines.append(json.dumps({"image": f"{name}_{c}/{rest}", "caption": rec["caption"]}))
    (dst / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return IngestParams(sources=sources, captions=str(dst / "captions.jsonl"), workers=2)


def _timed(fn, *args, **kw) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t0, out


def _cpu() -> tuple[float, float]:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def _timed_cpu(fn, *args, **kw) -> tuple[dict, object]:
    """Wall time plus CPU seconds of this process (the serial part) and of its finished worker
    processes (the parallel part). ``idle_2core_s`` = serial + parallel / 2: the wall time on
    an idle 2-core box, which a shared box's wall clock overstates by its load."""
    own0, kids0 = _cpu()
    wall, out = _timed(fn, *args, **kw)
    own1, kids1 = _cpu()
    serial, parallel = own1 - own0, kids1 - kids0
    return {"wall_s": wall, "serial_cpu_s": serial, "parallel_cpu_s": parallel,
            "idle_2core_s": serial + parallel / 2}, out


def measure(dst: Path, params: IngestParams, label: str) -> dict:
    """Time ingest, instruct and every image-check variant on one dataset."""
    t_ingest, summary = _timed(ingest, params, dst / "interim", progress=False)
    row = {"label": label, "images": summary.images, "rows": summary.rows, "ingest_s": t_ingest}
    if build_instruct is not None:
        row["instruct_s"], _ = _timed(build_instruct, dst / "interim/annotations.parquet", dst / "coloninst",
                                      InstructParams())
    roots = {s.name: Path(s.root) for s in params.sources}
    images = sorted({r for r in pq.read_table(dst / "interim/annotations.parquet", columns=["image"])["image"]
                     .to_pylist()})
    paths = [str(roots[i.split("/", 1)[0]] / i.split("/", 1)[1]) for i in images]
    mb = sum(Path(p).stat().st_size for p in paths) / 1e6
    row["mb_per_image"] = mb / len(paths)
    for level, workers in CHECKS:
        row[f"check_{level}_w{workers}_s"], _ = _timed(check_images, paths, level=level, workers=workers,
                                                         progress=False)
    return row


def fit(ns: list[int], ts: list[float]) -> tuple[float, float]:
    """Least-squares ``t = a + b n``; returns (a, b)."""
    k = len(ns)
    mn, mt = sum(ns) / k, sum(ts) / k
    var = sum((n - mn) ** 2 for n in ns)
    b = sum((n - mn) * (t - mt) for n, t in zip(ns, ts)) / var if var else mt / mn
    return mt - b * mn, b


def report(rows: list[dict], hires: dict | None) -> dict:
    keys = ["ingest_s"] + (["instruct_s"] if "instruct_s" in rows[0] else []) + \
           [f"check_{lv}_w{w}_s" for lv, w in CHECKS]
    print(f"\n{'size':>8} {'MB/img':>7} " + " ".join(f"{k[:-2]:>16}" for k in keys))
    for r in rows + ([hires] if hires else []):
        print(f"{r['images']:>8} {r['mb_per_image']:>7.3f} "
              + " ".join(f"{r[k]:>8.2f}s {1e3 * r[k] / r['images']:>5.2f}ms" for k in keys) + f"  {r['label']}")
    print(f"\nlinear fit t = a + b*n over {[r['images'] for r in rows]}; extrapolated to {COLONINST_IMAGES:,} images")
    out = {}
    for k in keys:
        a, b = fit([r["images"] for r in rows], [r[k] for r in rows])
        b_hi = hires[k] / hires["images"] if hires else 0.0
        est = a + max(b, b_hi) * COLONINST_IMAGES
        out[k] = {"a_s": a, "b_ms_per_image": 1e3 * b, "hires_ms_per_image": 1e3 * b_hi, "at_coloninst_s": est}
        print(f"  {k[:-2]:<18} a={a:6.2f}s  b={1e3 * b:6.3f} ms/img  hires={1e3 * b_hi:6.3f} ms/img"
              f"  -> {est / 60:6.2f} min")
    total = out["ingest_s"]["at_coloninst_s"] + out.get("instruct_s", {}).get("at_coloninst_s", 0.0)
    naive, ours = out["check_full_w1_s"]["at_coloninst_s"], out["check_markers_w2_s"]["at_coloninst_s"]
    print(f"\ningest{' + instruct' if 'instruct_s' in out else ''} at ColonINST scale: {total / 60:.2f} min "
          f"(target < 5 min); image check markers/2 workers vs naive full decode/1 worker: {naive / ours:.1f}x faster")
    return {"rows": rows, "hires": hires, "fit": out, "coloninst_total_s": total, "check_speedup": naive / ours}


# (what is timed, preset or None, builder, frame size); COCO has no preset: format coco
REAL_LAYOUTS = (
    ("voc, year split folders (KUMC)", "KUMC", layouts.kumc, (622, 529)),
    ("mask, masks_C*/_mask (PolypGen)", "PolypGen", layouts.polypgen, (1350, 1080)),
    ("mask + label table (SUN-SEG)", "SUN", layouts.sun_seg, (1158, 1008)),
    ("label_table, corners + videos (Kvasir-Capsule)", "Kvasir-Capsule", layouts.kvasir_capsule, (622, 529)),
    ("class_folders, leaf level (HyperKvasir)", "Hyper-Kvasir", layouts.hyper_kvasir, (622, 529)),
    ("mask + split list (Kvasir-Instrument)", "Kvasir-Instrument", layouts.kvasir_instrument, (622, 529)),
    ("sun_txt, EDD2020 box text", "EDD2020", layouts.edd2020, (1350, 1080)),
    ("coco, one file, all images", None, layouts.coco_detection, (1158, 1008)),
)


def _real_source(root: Path, preset: str | None, builder, size, images: int) -> SourceParams:
    """Write one layout with about ``images`` positive images under ``root``; its source entry."""
    probe = root.with_name(root.name + "_probe")
    per_n = len({k.split("#")[0] for k in builder(probe, 1, (32, 24))})  # images per unit of n
    shutil.rmtree(probe)
    builder(root, max(1, round(images / per_n)), size)
    if preset is None:
        return SourceParams(name=root.name, root=str(root), format="coco", categories={"polyp": "polyp"})
    return SourceParams(name=root.name, root=str(root), preset=preset)


def _stand_in(entry) -> int:
    """Index of the timed layout whose reader a catalogue entry uses (its own when timed)."""
    presets = [preset for _, preset, _, _ in REAL_LAYOUTS]
    if entry.key in presets:
        return presets.index(entry.key)
    fmt = entry.source["format"]
    by_format = {"voc": "KUMC", "mask": "Kvasir-Instrument", "class_folders": "Hyper-Kvasir",
                 "label_table": "Kvasir-Capsule", "sun_txt": "EDD2020", "json_boxes": None, "coco": None}
    return presets.index(by_format[fmt])


def _time_reader(work: Path, label, preset, builder, size, images: int) -> tuple[dict, SourceParams]:
    """One reader at ~images/4 and ~images: per-image slope (start-up excluded) of the idle
    2-core time (``_timed_cpu``), and the wall-clock rate of the bigger run as measured."""
    runs = []
    for k, n in enumerate((max(8, images // 4), images)):
        src = _real_source(work / f"{(preset or 'COCO').replace(' ', '_')}_{k}", preset, builder, size, n)
        t, summary = _timed_cpu(ingest, IngestParams(sources=[src], workers=2), work / f"i_{src.name}", progress=False)
        runs.append((summary.images, t, src))
    (n1, t1, _), (n2, t2, src) = runs
    slope = (t2["idle_2core_s"] - t1["idle_2core_s"]) / (n2 - n1) if n2 > n1 else t2["idle_2core_s"] / n2
    row = {"reader": label, "size": f"{size[0]}x{size[1]}", "images": n2, **t2,
           "ms_per_image": 1e3 * slope, "wall_ms_per_image": 1e3 * t2["wall_s"] / n2}
    print(f"  {label:<48} {size[0]:>4}x{size[1]:<4} {n2:>5} img  {1e3 * slope:6.2f} ms/img "
          f"(wall clock here {1e3 * t2['wall_s'] / n2:5.2f})", flush=True)
    return row, src


def measure_real_layouts(work: Path, images: int) -> dict:
    """Per-reader and mixed ingest at real frame sizes vs the naive full decode (module doc, 5.)."""
    per_reader, sources = [], []
    for label, preset, builder, size in REAL_LAYOUTS:
        row, src = _time_reader(work, label, preset, builder, size, images)
        per_reader.append(row)
        sources.append(src)
    t_ingest, summary = _timed_cpu(ingest, IngestParams(sources=sources, workers=2), work / "interim", progress=False)
    t_instruct, _ = _timed_cpu(build_instruct, work / "interim/annotations.parquet", work / "coloninst",
                               InstructParams())
    ids = pq.read_table(work / "interim/annotations.parquet", columns=["image"])["image"].to_pylist()
    roots = {s.name: Path(s.root) for s in sources}
    paths = sorted({str(roots[i.split("/", 1)[0]] / i.split("/", 1)[1]) for i in ids})
    t_naive, _ = _timed_cpu(check_images, paths, level="full", workers=1, progress=False)
    n, both = summary.images, t_ingest["idle_2core_s"] + t_instruct["idle_2core_s"]
    mixed = {"images": n, "ingest": t_ingest, "instruct": t_instruct, "naive_full_decode_w1": t_naive,
             "ms_per_image": 1e3 * both / n, "load_average": os.getloadavg()[0],
             "mb_per_image": sum(Path(p).stat().st_size for p in paths) / 1e6 / len(paths),
             "naive_vs_ingest": t_naive["idle_2core_s"] / t_ingest["idle_2core_s"]}
    # ColonINST's mix: each dataset's expected images at the per-image cost of its reader
    weighted = sum(sum(e.expected.values()) * per_reader[_stand_in(e)]["ms_per_image"]
                   for e in catalogue.entries().values()) / 1e3
    mixed["coloninst_mix_s"] = weighted + 1e3 * t_instruct["idle_2core_s"] / n * COLONINST_IMAGES / 1e3
    mixed["at_coloninst_s"] = mixed["ms_per_image"] * COLONINST_IMAGES / 1e3
    print(f"\nall {len(sources)} sources together: {n} images ({mixed['mb_per_image']:.3f} MB/img): ingest "
          f"{t_ingest['idle_2core_s']:.1f}s + instruct {t_instruct['idle_2core_s']:.1f}s (idle 2-core; wall clock "
          f"here {t_ingest['wall_s'] + t_instruct['wall_s']:.1f}s at load {mixed['load_average']:.1f}) = "
          f"{mixed['ms_per_image']:.2f} ms/img incl. start-up; naive full decode of the same images alone: "
          f"{mixed['naive_vs_ingest']:.1f}x the whole ingest")
    print(f"  -> {COLONINST_IMAGES:,} images: {mixed['at_coloninst_s'] / 60:.2f} min at this mix, "
          f"{mixed['coloninst_mix_s'] / 60:.2f} min at ColonINST's mix of readers (target <= 5 min on 2 cores)")
    for row in per_reader:
        row["at_coloninst_min"] = row["ms_per_image"] * COLONINST_IMAGES / 6e4
    return {"per_reader": per_reader, "mixed": mixed}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000], help="approximate image counts")
    ap.add_argument("--per-category", type=int, default=50, help="demo images per category and source (base set)")
    ap.add_argument("--hires-scale", type=float, default=2.0, help="image size factor of the realistic run")
    ap.add_argument("--hires-images", type=int, default=4000, help="size of the realistic run (0: skip)")
    ap.add_argument("--real-images", type=int, default=300, help="images per reader in the real-layout run (0: skip)")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for name in ("colonpipe.data.ingest", "colonpipe.data.instruct"):  # tiny copies never match ColonINST's counts
        logging.getLogger(name).setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="bench_data_"))
    try:
        rows = []
        t_gen, _ = _timed(generate_demo, work / "base", DemoParams(images_per_category=args.per_category,
                                                                    bad_inputs=False), progress=False)
        per_copy = args.per_category * sum(len(s.labels) for s in DEMO_SOURCES)
        print(f"base demo: {per_copy} images generated in {t_gen:.1f}s")
        warm = build_dataset(work / "base", work / "warm", 1)  # imports, pool start-up, page cache
        ingest(warm, work / "warm/interim", progress=False)
        shutil.rmtree(work / "warm")
        for size in args.sizes:
            dst = work / f"n{size}"
            params = build_dataset(work / "base", dst, max(1, round(size / per_copy)))
            rows.append(measure(dst, params, "demo size"))
            print(f"  measured {rows[-1]['images']} images", flush=True)
            shutil.rmtree(dst)
        hires = None
        if args.hires_images:
            per_cat = max(1, args.per_category // 2)
            generate_demo(work / "hbase", DemoParams(images_per_category=per_cat, bad_inputs=False),
                          scale=args.hires_scale, progress=False)
            per_copy = per_cat * sum(len(s.labels) for s in DEMO_SOURCES)
            params = build_dataset(work / "hbase", work / "hires", max(1, round(args.hires_images / per_copy)))
            hires = measure(work / "hires", params, f"{args.hires_scale:g}x resolution")
        result = report(rows, hires)
        if args.real_images:
            print(f"\nreal layouts at real frame sizes (~{args.real_images} images per reader, 2 workers):")
            result["real_layouts"] = measure_real_layouts(work / "real", args.real_images)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
