"""One inference shard: skip finished positions, generate the rest, journal each batch.

This is the unit of fan-out: the runner starts it as a subprocess per GPU / CPU slot
(``python -m colonpipe.infer.worker SPEC.json``), and on a cluster the same ``run_shard``
can run as a Prefect task on a GPU work pool. A malformed record, an unreadable image or a
decompression bomb (refused from its header by ``load_rgb``, never decoded) becomes an error
entry ``{"index", "error"}`` and the shard carries on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from tqdm import tqdm

from colonpipe import atomic
from colonpipe.coloninst import image_and_question, read_records
from colonpipe.data.images import ImageError, ImageResolver, load_rgb
from colonpipe.infer.journal import JournalWriter, journal_path, read_journals
from colonpipe.infer.shards import shard_positions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardSpec:
    """Everything one worker needs; JSON-serialisable so it can cross a process boundary."""

    input_path: str  # instruction JSON (a list of records)
    image_root: str  # image folder, or the {dataset: root} JSON written by ingest
    model_dir: str  # a saved ColonGPT or a training output dir (see colonpipe.infer.load)
    journal_dir: str
    shard: int
    num_shards: int
    batch_size: int
    max_new_tokens: int
    device: str = "cpu"  # "cpu" or "cuda" (the runner narrows CUDA_VISIBLE_DEVICES)
    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    limit: Optional[int] = None
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    min_new_tokens: int = 0  # benchmarks only: force decode lengths
    io_workers: int = 4  # threads decoding images ahead of the model
    progress: bool = True

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ShardSpec":
        return cls(**json.loads(text))


@dataclass(frozen=True)
class ShardResult:
    shard: int
    total: int  # positions in this shard
    skipped: int  # already in a journal
    done: int  # predicted now
    errors: int  # error entries written now
    seconds: float = 0.0  # generation loop wall time (after the model is loaded)
    cpu_seconds: float = 0.0  # CPU time of this process (all threads) over the same loop


def _parse_all(
    records: list[Any], pending: list[int], processor: Any
) -> tuple[list[tuple[int, str, list[int]]], list[dict]]:
    """Pending positions -> usable ``[(pos, image id, prompt ids)]`` and error entries."""
    good, bad = [], []
    for pos in pending:
        try:
            image_id, question = image_and_question(records[pos])
            good.append((pos, image_id, processor.prompt_ids(question)))
        except ValueError as exc:  # ColonINSTError, bad box text, ...
            bad.append({"index": pos, "error": f"bad record: {exc}"})
    return good, bad


def _load_batch(
    resolver: ImageResolver, processor: Any, batch: list[tuple[int, str, list[int]]]
) -> tuple[list[tuple[int, list[int], Any]], list[dict]]:
    """Decode and preprocess a batch's images: ``([(pos, prompt ids, pixels (3,S,S))], errors)``."""
    ok, bad = [], []
    for pos, image_id, prompt in batch:
        try:
            image = load_rgb(resolver.resolve(image_id))
            ok.append((pos, prompt, processor.preprocess_images([image])[0]))
        except (ImageError, ValueError, OSError) as exc:  # unreadable / unresolvable / bomb / odd image
            bad.append({"index": pos, "error": f"image: {exc}"})
    return ok, bad


def _prefetch(resolver: ImageResolver, processor: Any, batches: list, workers: int) -> Iterator:
    """Yield prepared batches in order while the next ones decode in a thread pool."""
    ahead = max(2, workers)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(_load_batch, resolver, processor, b) for b in batches[:ahead]]
        for i in range(len(batches)):
            if i + ahead < len(batches):
                futures.append(pool.submit(_load_batch, resolver, processor, batches[i + ahead]))
            yield futures[i].result()
            futures[i] = None  # free decoded images


def _predict(
    spec: ShardSpec, journal: JournalWriter, records: list[Any], pending: list[int]
) -> tuple[int, int, float, float]:
    """Generate ``pending`` positions batch by batch, journaling each.

    Returns (done, errors, wall seconds, CPU seconds) of the loop after the model load.
    """
    import torch

    from colonpipe.infer.generate import generate_batch, length_buckets
    from colonpipe.infer.load import load_for_inference

    model, processor = load_for_inference(
        spec.model_dir, device=spec.device, dtype=spec.dtype,
        attn_implementation=spec.attn_implementation, threads=spec.threads,
    )
    items, bad = _parse_all(records, pending, processor)
    journal.append(bad)
    batches = [[items[i] for i in b] for b in length_buckets([len(p) for _, _, p in items], spec.batch_size)]
    resolver = ImageResolver.from_path(spec.image_root)
    done, errors, start, cpu_start = 0, len(bad), time.perf_counter(), time.process_time()
    bar = tqdm(total=len(items), desc=f"shard {spec.shard}", disable=not spec.progress)
    for ok, failed in _prefetch(resolver, processor, batches, spec.io_workers):
        answers = generate_batch(
            model, processor, [p for _, p, _ in ok], torch.stack([px for _, _, px in ok]),
            max_new_tokens=spec.max_new_tokens, min_new_tokens=spec.min_new_tokens,
        ) if ok else []
        journal.append([{"index": pos, "prediction": a} for (pos, _, _), a in zip(ok, answers)] + failed)
        done, errors = done + len(ok), errors + len(failed)
        bar.update(len(ok) + len(failed))
    bar.close()
    return done, errors, time.perf_counter() - start, time.process_time() - cpu_start


def run_shard(spec: ShardSpec) -> ShardResult:
    """Run one shard to completion (resuming from its journal) and return its counts."""
    records = read_records(spec.input_path, limit=spec.limit)
    total = len(shard_positions(len(records), spec.num_shards, spec.shard))
    with JournalWriter(journal_path(spec.journal_dir, spec.shard, spec.num_shards)) as journal:
        done_before = read_journals(spec.journal_dir)
        pending = [p for p in shard_positions(len(records), spec.num_shards, spec.shard) if p not in done_before]
        logger.info("shard %d/%d: %d records, %d already done",
                    spec.shard, spec.num_shards, total, total - len(pending))
        done, errors, seconds, cpu = _predict(spec, journal, records, pending) if pending else (0, 0, 0.0, 0.0)
    logger.info("shard %d/%d finished: %d predicted, %d errors in %.1f s",
                spec.shard, spec.num_shards, done, errors, seconds)
    return ShardResult(spec.shard, total, total - len(pending), done, errors, seconds, cpu)


def main(argv: list[str] | None = None) -> int:
    """``python -m colonpipe.infer.worker SPEC.json``: run one shard described by a JSON spec."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m colonpipe.infer.worker SPEC.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = ShardSpec.from_json(Path(argv[0]).read_text())
    result = run_shard(spec)
    atomic.write_json(result_path(spec.journal_dir, spec.shard), dataclasses.asdict(result), indent=None, ensure_ascii=True)
    return 0


def result_path(journal_dir: str | Path, shard: int) -> Path:
    """Where a worker process leaves its ``ShardResult`` (JSON) for the runner."""
    return Path(journal_dir) / f"shard-{shard:03d}.result.json"


if __name__ == "__main__":
    sys.exit(main())
