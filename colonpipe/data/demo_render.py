"""Pixels and captions for the generated demo: colonoscopy-like frames with distinct findings.

Contract:
- ``LOOKS`` gives each demo category its own colour AND shape, far apart in colour so a
  model with a random frozen vision tower can still tell them apart.
- ``render(rng, size, categories)`` draws a pinkish mucosa background (low-frequency shading,
  dark folds, vignette, sensor noise) and one object per entry of ``categories``, each fully
  inside the frame, 15-45 % of the image side (smaller when several share a frame).
  Returns a ``Sample``: the uint8 image (H, W, 3) and per object its category, inclusive
  pixel box ``(x1, y1, x2, y2)`` taken from the drawn pixels, and boolean mask (H, W).
- ``caption(rng, sample)`` writes a 3-5 sentence clinical-style caption from templates and
  the objects' labels, positions and sizes.
- Everything is driven by the ``numpy.random.Generator`` passed in: same seed, same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Look:
    colour: tuple[int, int, int]
    shape: str  # ellipse | ring | triangle | bar | star | diamond
    appearance: str  # caption phrase


LOOKS: dict[str, Look] = {
    "polyp": Look((150, 40, 150), "ellipse", "a raised, smooth, purplish-red lesion with a bright specular highlight"),
    "ulcer": Look((245, 238, 190), "ring", "a pale yellow-white, fibrin-covered ring-shaped mucosal defect"),
    "erosion": Look((245, 150, 20), "triangle", "a shallow orange, angular superficial break of the mucosa"),
    "accessory tool": Look((150, 162, 178), "bar", "a straight grey metallic instrument crossing the field"),
    "blood fresh": Look((228, 12, 12), "star", "bright red fresh blood with an irregular, splashed outline"),
    "dyed lifted polyp": Look((38, 72, 210), "diamond", "a blue-stained lesion lifted by submucosal dye injection"),
}

# One frame size for the whole demo, as one endoscope/dataset has. REC answers are absolute pixels
# of the source image and the model sees a square resize: with several sizes of the same aspect
# ratio (384x288 and 448x336 were both here) the tiny model cannot know which pixels it is asked for.
SIZE = (320, 256)


@dataclass
class Obj:
    category: str
    box: tuple[int, int, int, int]
    mask: np.ndarray  # bool (H, W)


@dataclass
class Sample:
    image: np.ndarray  # uint8 (H, W, 3)
    objects: list[Obj]

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]


def _background(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mucosa (H, W, 3) float32 plus the normalised grids used for shapes."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = (xx / (w - 1)) * 2 - 1, (yy / (h - 1)) * 2 - 1
    base = np.array([212.0, 128.0, 118.0], np.float32) + rng.uniform(-12, 12, 3).astype(np.float32)
    shade = np.zeros((h, w), np.float32)
    for _ in range(3):
        fx, fy, ph = rng.uniform(0.5, 2.5), rng.uniform(0.5, 2.5), rng.uniform(0, 2 * np.pi)
        shade += np.sin(fx * np.pi * u + fy * np.pi * v + ph).astype(np.float32) / 3
    fold = np.exp(-(np.sin(rng.uniform(1, 3) * np.pi * u + rng.uniform(-1, 1) * v * 2 + rng.uniform(0, 6)) ** 2) * 12)
    r = np.sqrt(u**2 + v**2) / np.sqrt(2)
    vignette = np.clip(1.0 - 0.65 * r**2.2, 0.35, 1.0)
    img = base[None, None, :] * ((1 + 0.08 * shade - 0.18 * fold) * vignette)[..., None]
    return img.astype(np.float32), xx, yy


def _shape_mask(shape: str, xx, yy, cx, cy, rx, ry, angle) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    u = ((xx - cx) * c + (yy - cy) * s) / rx
    v = (-(xx - cx) * s + (yy - cy) * c) / ry
    r2 = u**2 + v**2
    if shape == "ellipse":
        return r2 <= 1
    if shape == "ring":
        return (r2 <= 1) & (r2 >= 0.36)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1
    if shape == "triangle":
        return (v <= 1) & (np.abs(u) <= (v + 1) / 2)
    if shape == "bar":
        return (np.abs(u) <= 1) & (np.abs(v) <= 1)
    if shape == "star":
        return np.sqrt(r2) <= 0.7 + 0.3 * np.cos(5 * np.arctan2(v, u))
    raise ValueError(f"unknown shape {shape!r}")


def _place(rng: np.random.Generator, w: int, h: int, categories: list[str]) -> list[tuple]:
    """``[(category, cx, cy, rx, ry, angle)]``: objects inside the frame, not overlapping."""
    several = len(categories) > 1
    lo, hi = (0.15, 0.26) if several else (0.22, 0.45)
    placed: list[tuple] = []
    for i, cat in enumerate(categories):
        shrink = 0.7 if (several and i > 0 and cat != categories[0]) else 1.0  # secondary finding smaller
        for _ in range(200):
            side = min(w, h)
            if LOOKS[cat].shape == "bar":
                rx, ry = rng.uniform(lo, hi) * side * shrink / 2, rng.uniform(0.05, 0.07) * side
            else:
                rx = rng.uniform(lo, hi) * w * shrink / 2
                ry = float(np.clip(rx * rng.uniform(0.75, 1.3), lo * h / 2, hi * h / 2))
            angle = rng.uniform(0, np.pi) if LOOKS[cat].shape == "bar" else rng.uniform(-0.3, 0.3)
            rad = max(rx, ry) + 2
            if 2 * rad >= min(w, h):
                continue
            cx, cy = rng.uniform(rad, w - 1 - rad), rng.uniform(rad, h - 1 - rad)
            if all(np.hypot(cx - p[1], cy - p[2]) > rad + max(p[3], p[4]) + 4 for p in placed):
                placed.append((cat, cx, cy, rx, ry, angle))
                break
        else:
            raise RuntimeError(f"could not place {categories} in a {w}x{h} frame")
    return placed


def render(rng: np.random.Generator, size: tuple[int, int], categories: list[str]) -> Sample:
    """Draw one frame of ``size`` (w, h) holding one object per entry of ``categories``."""
    w, h = size
    img, xx, yy = _background(rng, w, h)
    objects = []
    for cat, cx, cy, rx, ry, angle in _place(rng, w, h, categories):
        look = LOOKS[cat]
        rad = max(rx, ry) + 2  # work inside the object's bounding square only
        win = np.s_[max(int(cy - rad), 0): int(cy + rad) + 2, max(int(cx - rad), 0): int(cx + rad) + 2]
        x, y = xx[win], yy[win]
        local = _shape_mask(look.shape, x, y, cx, cy, rx, ry, angle)
        colour = np.clip(np.array(look.colour, np.float32) + rng.uniform(-8, 8, 3), 0, 255).astype(np.float32)
        light = 1.05 - 0.2 * np.clip(((x - cx) + (y - cy)) / (2 * max(rx, ry)), -1, 1)  # lit from upper left
        patch = colour[None, None, :] * light[..., None]
        if look.shape == "ellipse":  # specular highlight of a wet, raised lesion
            spot = np.exp(-(((x - cx + rx * 0.35) / (rx * 0.18)) ** 2 + ((y - cy + ry * 0.35) / (ry * 0.18)) ** 2))
            patch = patch + (255 - patch) * (0.8 * spot)[..., None]
        img[win][local] = patch[local]
        mask = np.zeros((h, w), bool)
        mask[win] = local
        cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
        objects.append(Obj(cat, (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])), mask))
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(4.0)
    return Sample(np.clip(img + 0.5, 0, 255).astype(np.uint8), objects)


# --------------------------------------------------------------------------- captions
_OPENINGS = ("This colonoscopy frame shows {finding}.", "The endoscopic image demonstrates {finding}.",
             "An endoscopic view of the colon reveals {finding}.", "The image captures {finding}.")
_BACKGROUNDS = ("The surrounding mucosa is pink with a preserved vascular pattern.",
                "The surrounding mucosa appears pink and smooth, with darker shading towards the periphery.",
                "Mucosal folds are visible around the finding, and the lumen darkens at the edges of the view.")
_CLOSINGS = {
    "polyp": "Endoscopic resection with histological assessment would be appropriate.",
    "ulcer": "Biopsies from the ulcer margin could help establish its cause.",
    "erosion": "The finding is superficial, and follow-up of the inflammatory changes is reasonable.",
    "accessory tool": "The instrument indicates an ongoing therapeutic or diagnostic manoeuvre.",
    "blood fresh": "The source of bleeding should be identified and controlled.",
    "dyed lifted polyp": "The lifted lesion is prepared for endoscopic mucosal resection.",
}
_COUNTS = {2: "two", 3: "three", 4: "four"}
_NOUNS = {"blood fresh": ("area of fresh blood", "areas of fresh blood")}  # (singular, plural); default: +s


def _where(box: tuple[int, int, int, int], w: int, h: int) -> str:
    cx, cy = (box[0] + box[2]) / 2 / w, (box[1] + box[3]) / 2 / h
    row = ("upper", "middle", "lower")[min(int(cy * 3), 2)]
    col = ("left", "central", "right")[min(int(cx * 3), 2)]
    names = {("middle", "central"): "centre", ("middle", "left"): "left side", ("middle", "right"): "right side"}
    return names.get((row, col), f"{row} {'centre' if col == 'central' else col}")


def _noun(category: str, n: int = 1) -> str:
    """``an ulcer`` / ``two ulcers`` / ``an area of fresh blood``."""
    singular, plural = _NOUNS.get(category, (category, category + "s"))
    if n > 1:
        return f"{_COUNTS.get(n, 'several')} {plural}"
    return f"{'an' if singular[0] in 'aeiou' else 'a'} {singular}"


def caption(rng: np.random.Generator, sample: Sample) -> str:
    """A 3-5 sentence caption naming the findings, where they are and how large."""
    w, h = sample.size
    cats = list(dict.fromkeys(o.category for o in sample.objects))
    first = [o for o in sample.objects if o.category == cats[0]]
    where = _where(first[0].box, w, h)
    if len(cats) > 1:
        finding = " together with ".join(_noun(c) for c in cats) + f", the first in the {where}"
    elif len(first) > 1:
        finding = f"{_noun(cats[0], len(first))}, one of them in the {where} of the field of view"
    else:
        finding = f"{_noun(cats[0])} in the {where} of the field of view"
    sentences = [_OPENINGS[rng.integers(len(_OPENINGS))].format(finding=finding)]
    sentences.append(f"{'Each' if len(first) > 1 else 'It'} appears as {LOOKS[cats[0]].appearance}.")
    x1, y1, x2, y2 = first[0].box
    pct = int(round(100 * (x2 - x1 + 1) / w))
    sentences.append(f"The {'largest ' if len(first) > 1 else ''}finding spans about {pct}% of the image width.")
    if rng.random() < 0.7:
        sentences.append(_BACKGROUNDS[rng.integers(len(_BACKGROUNDS))])
    if rng.random() < 0.6:
        sentences.append(_CLOSINGS[cats[0]])
    return " ".join(sentences)
