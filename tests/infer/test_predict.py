"""``colonpipe predict``: one answer per image, batched; bad images are named and skipped."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from colonpipe.infer.generate import generate_answers
from colonpipe.infer.load import load_for_inference
from colonpipe.infer.predict import human_turn, max_new_tokens_for, read_image, task_question
from colonpipe.data.images import ImageError
from colonpipe.cli import main as cli_main
from colonpipe.register.model_commands import predict_main
from tests.trained import write_training_output


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width x height`` pixels with almost no data behind it.

    Valid signature, IHDR and CRCs (PNG spec), so a reader learns the size before any decoding:
    the shape of a decompression bomb without its gigabytes.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def frames(tiny_model_dir) -> dict[str, Path]:
    """Two real frames of different sizes and one broken file, from the infer fixtures' dataset."""
    root = tiny_model_dir.parent / "corpus" / "images" / "Synth"
    return {"a": root / "0.png", "b": root / "3.png", "broken": root / "broken.png"}


def _expected(model_dir: Path, question: str, paths: list[Path], max_new_tokens: int = 40) -> list[str]:
    """Each image answered alone (batch size 1): predict's batches must not change an answer."""
    model, processor = load_for_inference(model_dir, threads=1)
    images = [Image.open(p).convert("RGB") for p in paths]
    return generate_answers(model, processor, [question] * len(paths), images, batch_size=1,
                            max_new_tokens=max_new_tokens)


def test_three_frames_one_bad_prints_two_answers_and_one_error(tiny_model_dir, frames, capsys):
    argv = ["predict", str(frames["a"]), str(frames["broken"]), str(frames["b"]), "--model", str(tiny_model_dir),
            "--batch-size", "2", "--device", "cpu"]
    assert cli_main(argv) == 1  # one image failed
    out, err = capsys.readouterr()
    want = _expected(tiny_model_dir, "<image>\nCategorize the object.", [frames["a"], frames["b"]])
    assert out.splitlines() == [f"{frames['a']}\t{want[0]}", f"{frames['b']}\t{want[1]}"]
    assert f"error: {frames['broken']}: cannot read image" in err


def test_json_names_every_bad_image_and_answers_the_rest(tiny_model_dir, frames, tmp_path, capsys):
    bomb = png_header_only(tmp_path / "bomb.png", 100_000, 100_000)  # 10^10 pixels: PIL's own bomb guard
    huge = png_header_only(tmp_path / "huge.png", 9_000, 9_000)  # under PIL's guard, over ours
    missing = tmp_path / "missing.png"
    argv = [str(missing), str(bomb), str(frames["a"]), str(huge), str(tmp_path), "--json",
            "--model", str(tiny_model_dir), "--question", "Categorize the object.", "--device", "cpu"]
    assert predict_main(argv) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in lines] == [str(missing), str(bomb), str(frames["a"]), str(huge), str(tmp_path)]
    assert lines[0]["error"] == f"{missing}: no such file"
    assert lines[1]["error"].startswith(f"{bomb}: refused, too many pixels")
    assert lines[3]["error"] == f"{huge}: refused, 9000x9000 = 81000000 pixels exceeds the limit of 64000000"
    assert lines[4]["error"] == f"{tmp_path}: not a regular file"
    assert lines[2] == {"image": str(frames["a"]), "question": "<image>\nCategorize the object.",
                        "answer": _expected(tiny_model_dir, "<image>\nCategorize the object.", [frames["a"]])[0]}


def test_training_output_and_task_defaults(tiny_model_dir, frames, tmp_path, capsys):
    final = write_training_output(tiny_model_dir, tmp_path / "final")
    argv = [str(frames["a"]), str(frames["b"]), "--model", str(final), "--task", "rec", "--category", "polyp",
            "--device", "cpu", "--json"]
    assert predict_main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    question = "<image>\nWhere is the location of polyp?"  # REC template 0
    assert [r["question"] for r in lines] == [question, question]
    assert [r["answer"] for r in lines] == _expected(final, question, [frames["a"], frames["b"]])


def test_task_questions_budgets_and_argument_errors(tiny_model_dir, frames, capsys):
    assert task_question("reg", box=[1, 2, 30, 40]) == "What category does {<1><2><30><40>} belong to?"
    assert task_question("cap") == "Describe what you see in the image."
    assert [max_new_tokens_for(t) for t in ("cls", "reg", "rec", "cap", None)] == [40, 40, 40, 512, 40]
    assert human_turn("<image>\nWhere?") == "<image>\nWhere?" and human_turn("Where?") == "<image>\nWhere?"
    with pytest.raises(ValueError, match="2 <image> placeholders"):
        human_turn("<image> and <image>")
    for argv, needle in [(["--task", "reg"], "give --box X1,Y1,X2,Y2"), (["--task", "rec"], "give --category"),
                         (["--box", "1,2,3"], "expected four integers"), (["--question", " "], "question is empty")]:
        with pytest.raises(SystemExit) as stop:
            predict_main([str(frames["a"]), "--model", str(tiny_model_dir), *argv])
        assert stop.value.code == 2 and needle in capsys.readouterr().err
    assert predict_main([str(frames["a"]), "--model", str(frames["a"].parent / "nope")]) == 1


def test_read_image_keeps_a_truncated_file_out(frames, tmp_path):
    data = frames["a"].read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.png: cannot read image"):
        read_image(cut)
    assert read_image(frames["a"]).mode == "RGB"
