"""What the checkpoint sha256s cost: writing and verifying a checkpoint, with and without them.

A checkpoint-shaped folder of ``--mb`` MB (the recipe's LoRA r=128 on Phi-1.5 is a ~450 MB
fp32 adapter; with DeepSpeed's Adam state a step-N folder is ~2 GB) is written once, then:
- ``write_manifest`` now (fsync + sha256 of every file) against the old manifest
  (fsync + sizes only), and the extra cost as a fraction of writing the files (the baseline:
  writing them and the first fsync, timed in the same run);
- ``check_dir(verify=True)`` (re-hash everything: before every load) against
  ``check_dir(verify=False)`` (sizes only: what ``prune`` does after every save).

    python benchmarks/bench_checkpoint_hash.py            # 512 MB, ~5 s (2 GB: ~20 s)
    python benchmarks/bench_checkpoint_hash.py --mb 2048

Files are freshly written, so they are hashed from the page cache: the numbers are CPU cost;
a cold read adds the disk's sequential read time (which a load pays anyway).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from colonpipe.model import checkpoint_files as ck


def make_checkpoint(root: Path, mb: int) -> Path:
    """``root/step-1``: a ``deepspeed/`` state of ``mb`` MB in four files, plus the json files."""
    state = root / "step-1" / ck.DEEPSPEED_DIR / "state"
    state.mkdir(parents=True)
    chunk = os.urandom(1 << 20)
    for i, name in enumerate(["mp_rank_00_model_states.pt"] + [f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt"
                                                               for r in range(3)]):
        with open(state / name, "wb") as fh:
            for _ in range(mb // 4):
                fh.write(chunk)
    ck.write_json(root / "step-1" / ck.TRAINER_STATE, {"global_step": 1})
    ck.write_json(root / "step-1" / ck.TRAIN_CONFIG, {"fingerprint": "x"})
    return root / "step-1"


def old_manifest(directory: Path) -> None:
    """The manifest before sha256s: fsync every file, record its size."""
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != ck.MANIFEST):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        files[path.relative_to(directory).as_posix()] = path.stat().st_size
    (directory.parent / "manifest-old.json").write_text(json.dumps({"files": files}))


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as tmp:
        t0 = time.perf_counter()
        path = make_checkpoint(Path(tmp), args.mb)
        old_manifest(path)  # the first fsync flushes the files to disk: part of writing them
        write_files = time.perf_counter() - t0
        base_write = timed(lambda: old_manifest(path))
        new_write = timed(lambda: ck.write_manifest(path))
        assert ck.check_dir(path) is None
        cheap = timed(lambda: ck.check_dir(path, verify=False))
        full = timed(lambda: ck.check_dir(path, verify=True))
    rows = {
        "size_mb": args.mb,
        "write_files_and_fsync_s": round(write_files, 3),
        "write_manifest_sizes_only_s": round(base_write, 3),
        "write_manifest_with_sha256_s": round(new_write, 3),
        "sha256_cost_vs_writing_the_files": round((new_write - base_write) / write_files, 2),
        "check_sizes_only_s": round(cheap, 4),
        "check_with_sha256_s": round(full, 3),
        "sha256_mb_per_s": round(args.mb / full),
    }
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
