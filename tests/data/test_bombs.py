"""Decompression bombs (PNGs of ~70 bytes declaring huge sizes) are refused from the header, never
decoded: by ``load_rgb`` / ``open_image``, by the image check, and by ingest (a reported skip)."""

import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from colonpipe.data.image_check import LEVELS, check_image
from colonpipe.data.images import BOMB_KIND, ImageBombError, ImageError, load_rgb, open_image
from colonpipe.data.ingest import ingest
from colonpipe.params import IngestParams, SourceParams
from tests.bombs import ERROR_SIDE, WARNING_SIDE, assert_declares, png_bomb, write_bomb

REFUSED = "decompression bomb refused before decoding"
# PIL warns about the 1e8-pixel fixture before our own check refuses it: expected, not news.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


def _img(path: Path, size=(40, 30), seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _mask(path: Path, size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((size[1], size[0]), np.uint8)
    m[3:8, 4:20] = 255
    Image.fromarray(m).save(path)
    return path


def test_the_fixtures_are_tiny_and_declare_huge_sizes():
    for side in (ERROR_SIDE, WARNING_SIDE):
        data = png_bomb(side, side)
        assert len(data) < 80
        assert_declares(data, side)
    assert ERROR_SIDE**2 > 2 * Image.MAX_IMAGE_PIXELS > WARNING_SIDE**2 > Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize("side", [ERROR_SIDE, WARNING_SIDE], ids=["pil-error", "pil-warning-only"])
def test_load_and_open_refuse_a_bomb_and_name_the_file(tmp_path, side):
    path = write_bomb(tmp_path / "bomb.png", side)
    with pytest.raises(ImageBombError, match=rf"bomb\.png: {REFUSED}"):
        load_rgb(path)
    with pytest.raises(ImageBombError, match=rf"bomb\.png: {REFUSED}"):
        open_image(path)
    with warnings.catch_warnings():  # with warnings as errors (python -W error) too
        warnings.simplefilter("error")
        with pytest.raises(ImageBombError, match=REFUSED):
            load_rgb(path)


def test_a_lower_pixel_limit_is_checked_from_the_header(tmp_path):
    path = _img(tmp_path / "ok.png", (30, 20))
    assert load_rgb(path, max_pixels=600).size == (30, 20)
    with pytest.raises(ImageBombError, match=r"ok\.png: .*declares 30x20 = 600 pixels, over the limit of 599"):
        load_rgb(path, max_pixels=599)
    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(ImageError, match=r"junk\.png: cannot open image \(not a known image format\)"):
        load_rgb(tmp_path / "junk.png")


@pytest.mark.parametrize("level", LEVELS)
def test_the_image_check_reports_bombs_as_their_own_kind(tmp_path, level):
    bomb = check_image(str(write_bomb(tmp_path / "b.png", WARNING_SIDE)), level)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    corrupt = check_image(str(junk), level)
    assert (bomb.error_kind, corrupt.error_kind) == (BOMB_KIND, "corrupt_image")
    assert REFUSED in bomb.error and "10000x10000" in bomb.error and len(bomb.sha256) == 64
    assert corrupt.error.startswith("not a readable image")


def test_ingest_skips_and_reports_bomb_masks_and_images_and_keeps_the_rest(tmp_path):
    masks = tmp_path / "m"
    for stem in "abcd":
        _img(masks / f"images/{stem}.jpg", seed=ord(stem))
        _mask(masks / f"masks/{stem}.png")
    write_bomb(masks / "masks/b.png", ERROR_SIDE)  # a 69-byte mask: stopped ingest before
    write_bomb(masks / "masks/c.png", WARNING_SIDE)
    write_bomb(masks / "images/d.jpg", ERROR_SIDE)  # the image, not its mask (a PNG named .jpg)
    folders = tmp_path / "cf"
    _img(folders / "polyp/ok.png", seed=1)
    write_bomb(folders / "polyp/bomb.png", WARNING_SIDE)
    sources = [SourceParams(name="m", root=str(masks), format="mask", categories={"foreground": "polyp"}),
               SourceParams(name="cf", root=str(folders), format="class_folders", categories={"polyp": "polyp"})]
    ingest(IngestParams(sources=sources, workers=1), tmp_path / "out", progress=False)
    rows = pq.read_table(tmp_path / "out/annotations.parquet").to_pylist()
    report = json.loads((tmp_path / "out/ingest_report.json").read_text())
    assert sorted(r["image"] for r in rows) == ["cf/polyp/ok.png", "m/images/a.jpg"]
    got = sorted((Path(p["file"]).relative_to(tmp_path).as_posix(), p["kind"], p["action"])
                 for p in report["problems"])
    # each bomb is named once, as itself; the image it belonged to (b, c) or the mask whose image it
    # was (d) is dropped with it, not reported a second time as unpaired
    assert got == [
        ("cf/polyp/bomb.png", BOMB_KIND, "skipped"),
        ("m/images/d.jpg", BOMB_KIND, "skipped"),
        ("m/masks/b.png", BOMB_KIND, "skipped"),
        ("m/masks/c.png", BOMB_KIND, "skipped"),
    ]
    assert all(REFUSED in p["reason"] for p in report["problems"] if p["kind"] == BOMB_KIND)
    assert report["totals"]["problems_by_kind"][BOMB_KIND] == 4
