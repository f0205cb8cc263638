"""Sharded runs end to end: worker subprocesses, journals, resume, error records, SIGKILL,
what the journals' fingerprint covers, and reruns after a data fix."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from colonpipe.infer.journal import JournalStateError, JournalWriter, journal_path, prepare_journal_dir, read_journals
from colonpipe.infer.executors import InferenceError
from colonpipe.infer.runner import InferJob, job_fingerprint, run_inference
from colonpipe.infer.worker import ShardSpec, run_shard
from tests.infer.conftest import make_dataset

N = 24
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    path = make_dataset(root, N, corrupt=(5,))
    records = json.loads(path.read_text())
    records[7]["conversations"] = [{"from": "gpt", "value": "no question"}]  # unusable record
    path.write_text(json.dumps(records, indent=2))
    return path, root / "images"


def _job(tmp_path, data, model_dir, **kw):
    input_path, image_root = data
    base = dict(input_path=input_path, image_root=image_root, model_dir=model_dir,
                out_path=tmp_path / "pred" / "test_pred_cls.json", journal_dir=tmp_path / "pred" / ".shards",
                max_new_tokens=20, batch_size=4, num_shards=2, cpu_threads=2)
    return InferJob(**{**base, **kw})


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data, tiny_model_dir):
    """An uninterrupted 2-shard run: the bytes every other run must reproduce."""
    job = _job(tmp_path_factory.mktemp("ref"), data, tiny_model_dir)
    summary = run_inference(job)
    return job, summary, job.out_path.read_bytes()


def test_sharded_run_writes_every_record_with_error_records(reference):
    job, summary, raw = reference
    out = json.loads(raw)
    assert (summary.records, summary.errors) == (N, 2)
    assert len(out) == N
    assert [r["id"] for r in out] == [r["id"] for r in json.loads(Path(job.input_path).read_text())]
    for i, rec in enumerate(out):
        turn = rec["conversations"][-1]
        assert turn["from"] == "prediction"
        if i in (5, 7):
            assert turn["value"] == "" and rec["error"]
        else:
            assert "error" not in rec and isinstance(turn["value"], str)
    assert "broken.png" in out[5]["error"] and out[7]["error"].startswith("bad record")
    assert len({r["conversations"][-1]["value"] for r in out}) > 5  # real, varied predictions


def test_shards_and_batch_size_do_not_change_the_file(tmp_path, data, tiny_model_dir, reference):
    job = _job(tmp_path, data, tiny_model_dir, num_shards=1, batch_size=1, cpu_threads=1)
    run_inference(job)
    assert job.out_path.read_bytes() == reference[2]


def test_resume_skips_finished_records(tmp_path, data, tiny_model_dir, reference):
    job = _job(tmp_path, data, tiny_model_dir, num_shards=1)
    prepare_journal_dir(job.journal_dir, job_fingerprint(job))
    with JournalWriter(journal_path(job.journal_dir, 0, 3)) as j:  # left by an earlier 3-shard run
        j.append([{"index": i, "prediction": f"DONE-{i}"} for i in (0, 3, 11)])
    spec = ShardSpec(**{**{k: str(v) if isinstance(v, Path) else v for k, v in asdict(job).items()
                           if k in ShardSpec.__dataclass_fields__}, "shard": 0, "threads": 2})
    result = run_shard(spec)  # the fan-out unit, in process
    assert (result.total, result.skipped, result.done + result.errors) == (N, 3, N - 3)
    again = run_shard(spec)
    assert (again.skipped, again.done, again.errors) == (N, 0, 0)
    run_inference(job)  # keeps every prediction; retries only the two error records (5, 7)
    out = json.loads(job.out_path.read_text())
    ref = json.loads(reference[2])
    for i in range(N):
        want = f"DONE-{i}" if i in (0, 3, 11) else ref[i]["conversations"][-1]["value"]
        assert out[i]["conversations"][-1]["value"] == want


def test_failed_worker_surfaces_its_stderr(tmp_path, data):
    with pytest.raises(FileNotFoundError, match="no-such-model: model folder not found"):
        run_inference(_job(tmp_path, data, tmp_path / "no-such-model"))
    (tmp_path / "empty").mkdir()
    job = _job(tmp_path, data, tmp_path / "empty")
    with pytest.raises(InferenceError, match=r"2 of 2 inference workers failed(.|\n)*ModelLoadError"):
        run_inference(job)
    assert not job.out_path.exists()


def _children(pid):
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def test_sigkill_a_worker_then_rerun_equals_uninterrupted(tmp_path, data, tiny_model_dir, reference):
    job = _job(tmp_path, data, tiny_model_dir, batch_size=2)
    spec = json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(job).items()})
    script = ("import json, sys; from pathlib import Path; from colonpipe.infer.runner import InferJob, run_inference;"
              "d = json.loads(sys.argv[1]); run_inference(InferJob(**d))")
    proc = subprocess.Popen([sys.executable, "-c", script, spec], stderr=subprocess.PIPE, text=True)
    victim = journal_path(job.journal_dir, 1, 2)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until shard 1 has journaled a batch, then kill its worker
        if victim.exists() and victim.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.02)
    shard1 = [w for w in _children(proc.pid) if "shard-001" in Path(f"/proc/{w}/cmdline").read_text()]
    assert shard1, f"shard 1 worker not found; its journal holds {len(read_journals(job.journal_dir))} records"
    os.kill(shard1[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "worker 1 exited with -9" in err, err[-3000:]
    assert not job.out_path.exists()
    done_after_kill = read_journals(job.journal_dir)
    assert len([i for i in done_after_kill if i % 2 == 1]) < N // 2  # killed mid-run, not after
    run_inference(job)  # rerun resumes
    assert job.out_path.read_bytes() == reference[2]


def test_fingerprint_tracks_model_and_decoding_not_batching(tmp_path, data, tiny_model_dir):
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    job = _job(tmp_path, data, model)
    fp = job_fingerprint(job)
    assert job_fingerprint(replace(job, batch_size=1, num_shards=5, limit=3)) == fp  # resume across these
    assert job_fingerprint(replace(job, max_new_tokens=7)) != fp
    assert job_fingerprint(replace(job, dtype="bfloat16")) != fp
    (model / "trainer_state.json").write_text("{}")  # training-resume state: ignored
    assert job_fingerprint(job) == fp
    cfg = model / "generation_config.json"
    cfg.write_text(cfg.read_text() + " ")  # any model file changing: start over
    assert job_fingerprint(job) != fp


def test_fingerprint_covers_image_roots_each_image_and_the_decoding_code(tmp_path, data, tiny_model_dir):
    input_path, image_root = data
    job = _job(tmp_path, data, tiny_model_dir)
    fp = job_fingerprint(job)
    records = json.loads(Path(input_path).read_text())
    assert len(fp["images"]) == len(records)
    for i in (0, 5):  # a good image and the broken one: both identified by size and mtime
        st = os.stat(Path(image_root) / records[i]["id"])
        assert fp["images"][i] == f"{st.st_size}:{st.st_mtime_ns}"
    assert fp["image_roots"] == {"": str(Path(image_root).resolve())}
    copy = shutil.copytree(image_root, tmp_path / "images-copy")  # same files, other folder
    assert job_fingerprint(replace(job, image_root=copy))["image_roots"] != fp["image_roots"]

    import PIL

    from colonpipe.data import images
    from colonpipe.model import processing

    assert fp["decode"] == {"colonpipe/data/images.py": hashlib.sha256(Path(images.__file__).read_bytes()).hexdigest(),
                            "colonpipe/model/processing.py":
                                hashlib.sha256(Path(processing.__file__).read_bytes()).hexdigest(),
                            "pillow": PIL.__version__}
    # a change to the image loader's source (a copy of the package, edited) changes the fingerprint
    pkg = tmp_path / "pkg"
    shutil.copytree(REPO / "colonpipe", pkg / "colonpipe", ignore=shutil.ignore_patterns("__pycache__"))
    with open(pkg / "colonpipe" / "data" / "images.py", "a") as fh:
        fh.write("\n# a decoder fix\n")
    script = ("import json, sys; from pathlib import Path; from colonpipe.infer.runner import InferJob, job_fingerprint;"
              "d = json.loads(sys.argv[1]); print(json.dumps(job_fingerprint(InferJob(**d))['decode']))")
    spec = json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(job).items()})
    out = subprocess.run([sys.executable, "-c", script, spec], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(pkg)}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    edited = json.loads(out.stdout)
    assert edited["colonpipe/data/images.py"] != fp["decode"]["colonpipe/data/images.py"]
    assert edited["colonpipe/model/processing.py"] == fp["decode"]["colonpipe/model/processing.py"]


def test_a_rerun_after_a_data_fix_redoes_exactly_the_records_it_touched(tmp_path, tiny_model_dir):
    """A previous run left predictions for every record and an error for the broken image.
    The data is then fixed: the broken file replaced by a real image, one image re-exported.
    The rerun predicts the fixed record and the records of the re-exported image again, and
    keeps every other prediction."""
    from PIL import Image

    input_path = make_dataset(tmp_path / "d", 12, corrupt=(5,))
    image_root = tmp_path / "d" / "images"
    job = _job(tmp_path, (input_path, image_root), tiny_model_dir, num_shards=1)
    prepare_journal_dir(job.journal_dir, job_fingerprint(job))
    with JournalWriter(journal_path(job.journal_dir, 0, 1)) as j:
        j.append([{"index": i, "prediction": f"KEPT-{i}"} if i != 5 else {"index": 5, "error": "image: broken"}
                  for i in range(12)])

    Image.new("RGB", (30, 20), (200, 40, 40)).save(image_root / "Synth" / "broken.png")  # the fix
    Image.new("RGB", (58, 54), (40, 40, 200)).save(image_root / "Synth" / "2.png")  # re-exported
    later = time.time() + 5  # a clearly newer mtime even on coarse-timestamp filesystems
    for name in ("broken.png", "2.png"):
        os.utime(image_root / "Synth" / name, (later, later))
    summary = run_inference(job)
    out = json.loads(job.out_path.read_text())
    assert summary.errors == 0 and "error" not in out[5]
    redone = {i for i, rec in enumerate(out) if not rec["conversations"][-1]["value"].startswith("KEPT-")}
    assert redone == {2, 5, 8}  # the fixed record and both records showing image 2
    assert all(out[i]["conversations"][-1]["value"] == f"KEPT-{i}" for i in set(range(12)) - redone)


def test_an_unreadable_fingerprint_stops_the_run_and_keeps_the_predictions(tmp_path, data, tiny_model_dir):
    job = _job(tmp_path, data, tiny_model_dir)
    prepare_journal_dir(job.journal_dir, job_fingerprint(job))
    with JournalWriter(journal_path(job.journal_dir, 0, 2)) as j:
        j.append([{"index": 0, "prediction": "finished"}])
    (job.journal_dir / "fingerprint.json").write_text('{"input": "tor')  # a damaged file
    with pytest.raises(JournalStateError, match="fingerprint.json: cannot be read"):
        run_inference(job)
    assert read_journals(job.journal_dir) == {0: {"index": 0, "prediction": "finished"}}
    assert not job.out_path.exists()
