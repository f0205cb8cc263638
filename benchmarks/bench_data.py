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

    python benchmarks/bench_data.py                          # sizes 1k, 5k, 20k (~5 min on 2 cores)
    python benchmarks/bench_data.py --sizes 500 2000 --hires-images 1000 --json bench.json

Files are freshly written, so they are read from the page cache: the numbers are CPU cost.
A cold read of ~10 GB of real images adds the disk's sequential read time on top.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from colonpipe.data.demo import DEMO_SOURCES, generate_demo, source_params
from colonpipe.data.image_check import check_images
from colonpipe.data.ingest import ingest
from colonpipe.params import DemoParams, IngestParams, InstructParams, SourceParams

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000], help="approximate image counts")
    ap.add_argument("--per-category", type=int, default=50, help="demo images per category and source (base set)")
    ap.add_argument("--hires-scale", type=float, default=2.0, help="image size factor of the realistic run")
    ap.add_argument("--hires-images", type=int, default=4000, help="size of the realistic run (0: skip)")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
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
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
