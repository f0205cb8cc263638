"""Peak memory of preprocessing one thin strip image: padding to the raw long side vs. the bounded canvas.

What it does: for each strip ``1 x SIDE`` (a real PNG of about a hundred bytes) and each
implementation it starts a FRESH Python process, which
1. imports torch/PIL/colonpipe, decodes the PNG with ``load_rgb`` and warms both code paths
   up on a 16 x 16 image (so lazy allocations are not counted);
2. reads its peak RSS (``ru_maxrss``), runs the preprocessing to ``pixel_values`` (image size
   384, the SigLIP-384 setting) and reads the peak RSS again.
The growth is the memory that one image cost. Implementations:
- ``naive``: the code before the change (``naive_pixel_values``): a canvas of the raw long
  side, ``side**2`` RGB pixels (PIL stores 4 bytes each). This is the baseline.
- ``current``: ``colonpipe.model.processing.pixel_values`` (canvas side at most
  ``MAX_CANVAS_SIDE``).
A child that would exceed ``--cap-gib`` of extra address space is stopped by ``RLIMIT_AS`` (a
``MemoryError``) and reported as over the cap, so the baseline cannot take the machine down.

    python benchmarks/bench_pad.py                        # sides 12000 and 60000 (~35 s on 2 cores)
    python benchmarks/bench_pad.py --sides 60000 --impls current --json out.json
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SIZE = 384
MEAN = STD = (0.5, 0.5, 0.5)
IMPLS = ("naive", "current")


def naive_pixel_values(images: Sequence[Image.Image], size: int, mean: Sequence[float],
                       std: Sequence[float]) -> torch.Tensor:
    """The preprocessing as it was before the canvas was bounded (the baseline; same contract
    as ``processing.pixel_values``): pad every image to a square of its raw longer side."""
    fill = tuple(int(m * 255) for m in mean)
    mean_ = np.asarray(mean, dtype=np.float32)[:, None, None]
    std_ = np.asarray(std, dtype=np.float32)[:, None, None]
    out = []
    for image in images:
        image = image.convert("RGB")
        w, h = image.size
        if w != h:
            side = max(w, h)
            canvas = Image.new("RGB", (side, side), fill)
            canvas.paste(image, ((side - w) // 2, (side - h) // 2))
            image = canvas
        arr = np.asarray(image.resize((size, size), Image.BICUBIC), dtype=np.float32).transpose(2, 0, 1) / 255.0
        out.append((arr - mean_) / std_)
    return torch.from_numpy(np.stack(out)) if out else torch.empty(0, 3, size, size)


def strip_png(side: int) -> bytes:
    """A ``1 x side`` RGB PNG (a vertical strip of one colour), as bytes."""
    buf = io.BytesIO()
    Image.new("RGB", (1, side), (200, 30, 30)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _vm_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * resource.getpagesize()


def child(side: int, impl: str, cap_gib: float) -> dict:
    """Run in the fresh process: peak RSS growth (MiB) of preprocessing one ``1 x side`` strip."""
    from colonpipe.data.images import load_rgb
    from colonpipe.model.processing import pixel_values

    fn = naive_pixel_values if impl == "naive" else pixel_values
    data = strip_png(side)
    image = load_rgb(io.BytesIO(data))
    for f in (naive_pixel_values, pixel_values):
        f([Image.new("RGB", (16, 12))], IMAGE_SIZE, MEAN, STD)
    cap = _vm_bytes() + int(cap_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        shape = tuple(fn([image], IMAGE_SIZE, MEAN, STD).shape)
        status = "ok"
    except MemoryError:
        shape, status = None, f"MemoryError over the {cap_gib:g} GiB cap"
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024  # KiB -> MiB
    return {"side": side, "impl": impl, "png_bytes": len(data), "growth_mib": round(growth, 1),
            "status": status, "shape": shape}


def measure(side: int, impl: str, *, cap_gib: float = 4.0, timeout: float = 300) -> dict:
    """Start a fresh interpreter for one (side, impl) measurement and return its result."""
    proc = subprocess.run([sys.executable, __file__, "--child", str(side), impl, str(cap_gib)],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"child {side} {impl} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sides", type=int, nargs="+", default=[12000, 60000])
    ap.add_argument("--impls", nargs="+", choices=IMPLS, default=list(IMPLS))
    ap.add_argument("--cap-gib", type=float, default=4.0, help="extra address space a child may take")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--child", nargs=3, metavar=("SIDE", "IMPL", "CAP"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1], float(args.child[2]))))
        return 0
    rows = [measure(side, impl, cap_gib=args.cap_gib) for side in args.sides for impl in args.impls]
    print(f"{'image':>9} {'PNG B':>6} {'impl':>8} {'peak RSS growth':>16}  canvas if padded to the long side")
    for r in rows:
        canvas = r["side"] ** 2 * 4 / 2**30
        over = f"> {args.cap_gib:g}"
        growth = f"{r['growth_mib']:>12.1f} MiB" if r["status"] == "ok" else f"{over:>12} GiB"
        print(f"1x{r['side']:<7} {r['png_bytes']:>6} {r['impl']:>8} {growth}  {canvas:.2f} GiB  {r['status']}")
    by = {(r["side"], r["impl"]): r for r in rows}
    for side in args.sides:
        naive, cur = by.get((side, "naive")), by.get((side, "current"))
        if naive and cur and naive["status"] == "ok" and cur["growth_mib"] > 0:
            print(f"1x{side}: naive / current = {naive['growth_mib'] / cur['growth_mib']:.0f}x")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
