"""Pictures of digits as people make them, rendered from MNIST digits: phone photos of paper, thin and
thick pens, blurry and blocky low-resolution scans, coloured ink, lined and squared paper, shadows, a
digit filling the frame or lost in a large photo, turned, or JPEG-crushed. Used to measure `to_mnist`
honestly (benchmarks/handwriting.py) and to test it on a few cases per family.

Each family keeps the digit's shape (its skeleton, when the pen changes) and changes one thing about
how it was drawn or photographed; all randomness comes from the generator passed in."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np

FAMILIES: dict[str, Callable] = {}


def family(name: str):
    def register(fn):
        FAMILIES[name] = fn
        return fn
    return register


def render(digit: np.ndarray, name: str, rng: np.random.Generator) -> bytes:
    """One 28x28 uint8 MNIST digit (0 = background) drawn as family `name`: the bytes of an image file."""
    return FAMILIES[name](digit, rng)


# ------------------------------------------------------------------------------------------ pieces

def _enlarge(digit: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC), np.float64) / 255
    return np.clip(ink, 0, 1)


def skeleton(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning: the one-pixel centre line of a binary shape."""
    img = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for first in (True, False):
            p = [np.roll(np.roll(img, dy, 0), dx, 1) for dy, dx in
                 ((1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1))]  # P2..P9 clockwise from north
            p2, p3, p4, p5, p6, p7, p8, p9 = p
            neighbours = sum(p)
            ring = p + [p2]
            transitions = sum(((ring[i] == 0) & (ring[i + 1] == 1)).astype(np.uint8) for i in range(8))
            if first:
                cond = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                cond = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            remove = (img == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & cond
            if remove.any():
                img[remove] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def pen(digit: np.ndarray, side: int, width: float, blur: float = 0.0) -> np.ndarray:
    """The digit's centre line drawn again with a round pen `width` pixels wide on a `side`-pixel square,
    edges softened by a Gaussian of `blur` pixels: ink in [0, 1]."""
    from scipy import ndimage

    line = skeleton(_enlarge(digit, side) > 0.5)
    ink = (ndimage.distance_transform_edt(~line) <= width / 2).astype(np.float64)
    return np.clip(ndimage.gaussian_filter(ink, blur), 0, 1) if blur > 0 else ink


def _paper(side: int, rng, level=(0.7, 0.95), gradient=0.2, shadow=0.15) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side] / side
    paper = rng.uniform(*level) - rng.uniform(0, gradient) * (yy * rng.uniform(-1, 1) + xx * rng.uniform(-1, 1))
    return paper - rng.uniform(0, shadow) * np.exp(-((yy - rng.uniform()) ** 2 + (xx - rng.uniform()) ** 2) / 0.1)


def _place(ink: np.ndarray, side: int, rng) -> np.ndarray:
    canvas = np.zeros((side, side))
    y0 = int(rng.integers(0, side - ink.shape[0] + 1))
    x0 = int(rng.integers(0, side - ink.shape[1] + 1))
    canvas[y0:y0 + ink.shape[0], x0:x0 + ink.shape[1]] = ink
    return canvas


def _encode(rgb: np.ndarray, rng, jpeg=(60, 91)) -> bytes:
    from PIL import Image

    pil = Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB" if rgb.ndim == 3 else "L")
    buf = io.BytesIO()
    if jpeg is None:
        pil.save(buf, format="PNG")
    else:
        pil.save(buf, format="JPEG", quality=int(rng.integers(*jpeg)))
    return buf.getvalue()


def _photo(ink: np.ndarray, rng, *, paper: np.ndarray | None = None, ink_rgb=None, noise=(0.01, 0.04), jpeg=(60, 91)) -> bytes:
    """Ink (a [0, 1] map, already on its canvas) on paper (gray, or RGB), photographed: grain, a slight
    colour cast, JPEG."""
    paper = _paper(ink.shape[0], rng) if paper is None else paper
    if ink_rgb is None and paper.ndim == 2:
        img = paper * (1 - ink) + rng.uniform(0.05, 0.3) * ink
    else:
        paper3 = paper[..., None] * np.ones(3) if paper.ndim == 2 else paper
        ink3 = np.full(3, rng.uniform(0.05, 0.3)) if ink_rgb is None else np.asarray(ink_rgb, np.float64)
        img = paper3 * (1 - ink[..., None]) + ink3 * ink[..., None]
    img = img + rng.normal(0, rng.uniform(*noise), img.shape)
    cast = rng.uniform(0.95, 1.05, 3)
    return _encode(img[..., None] * cast if img.ndim == 2 else img * cast, rng, jpeg)


# ---------------------------------------------------------------------------------------- families

@family("photo")
def photo_of(digit: np.ndarray, rng: np.random.Generator, *, jpeg: bool = True) -> bytes:
    """A phone photo: dark ink on light, unevenly lit paper, enlarged to 150-300 px, off-centre, grain, JPEG 60-90."""
    side = int(rng.integers(150, 301))
    ink = _place(_enlarge(digit, int(side * rng.uniform(0.45, 0.8))), side, rng)
    return _photo(ink, rng, jpeg=(60, 91) if jpeg else None)


@family("thin-pen")
def thin_pen(digit, rng):
    """A fine pen: a stroke of 1-2 pixels on a 200-320 px picture."""
    side = int(rng.integers(200, 321))
    ink = _place(pen(digit, int(side * rng.uniform(0.5, 0.8)), rng.uniform(1, 2.5)), side, rng)
    return _photo(ink, rng, jpeg=(85, 96))


@family("thick-marker")
def thick_marker(digit, rng):
    """A thick marker on a small card: the stroke a fifth to a quarter of the digit's height, soft edges."""
    side = int(rng.integers(150, 260))
    digit_side = int(side * rng.uniform(0.6, 0.85))
    width = digit_side * rng.uniform(0.2, 0.25) * 0.7  # the digit's ink is about 0.7 of its box
    ink = _place(pen(digit, digit_side, width, blur=width * rng.uniform(0.1, 0.3)), side, rng)
    return _photo(ink, rng)


def _scanned(digit: np.ndarray, pixels: int, digit_side: int, smooth: bool) -> np.ndarray:
    """The digit as a scanner with `pixels` pixels across the digit's longer side would see it, enlarged
    again to `digit_side` pixels: smoothly (a blurry scan) or without smoothing (square blocks)."""
    from PIL import Image

    ys, xs = np.nonzero(digit > 30)
    tight = Image.fromarray(digit[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1])
    f = pixels / max(tight.size)
    small = tight.resize((max(1, round(tight.size[0] * f)), max(1, round(tight.size[1] * f))), Image.Resampling.BOX)
    g = digit_side / max(small.size)
    big = small.resize((max(1, round(small.size[0] * g)), max(1, round(small.size[1] * g))),
                       Image.Resampling.BICUBIC if smooth else Image.Resampling.NEAREST)
    return np.clip(np.asarray(big, np.float64) / 255, 0, 1)


@family("blurry-scan")
def blurry_scan(digit, rng):
    """A small low-resolution scan (10-16 pixels across the digit) enlarged smoothly: thick, soft, blurry strokes."""
    from scipy import ndimage

    side = int(rng.integers(120, 260))
    digit_side = int(side * rng.uniform(0.5, 0.75))
    big = _scanned(digit, int(rng.integers(10, 17)), digit_side, smooth=True)
    big = ndimage.gaussian_filter(big, digit_side * rng.uniform(0.0, 0.03))
    return _photo(_place(np.clip(big, 0, 1), side, rng), rng)


def blocky(pixels: int):
    def draw(digit, rng):
        side = int(rng.integers(160, 300))
        big = _scanned(digit, pixels, int(side * rng.uniform(0.5, 0.8)), smooth=False)
        return _photo(_place(big, side, rng), rng, jpeg=(80, 96))
    draw.__doc__ = f"A digit scanned {pixels} pixels across its longer side and enlarged without smoothing: square blocks."
    return draw


for _pixels in (8, 12, 16):
    family(f"blocky-{_pixels}px")(blocky(_pixels))


@family("coloured-ink")
def coloured_ink(digit, rng):
    """Blue, red, green or purple ink on white or cream paper."""
    side = int(rng.integers(150, 301))
    ink = _place(_enlarge(digit, int(side * rng.uniform(0.45, 0.8))), side, rng)
    colours = [(0.1, 0.2, 0.7), (0.75, 0.1, 0.1), (0.1, 0.5, 0.2), (0.45, 0.15, 0.55), (0.2, 0.35, 0.85)]
    cream = np.array([1.0, rng.uniform(0.95, 1.0), rng.uniform(0.82, 1.0)])
    paper = _paper(side, rng, level=(0.85, 1.0), gradient=0.1, shadow=0.05)[..., None] * cream
    return _photo(ink, rng, paper=paper, ink_rgb=colours[int(rng.integers(len(colours)))])


@family("lined-paper")
def lined_paper(digit, rng):
    """Ruled or squared paper: blue or grey lines every 15-35 px under the digit."""
    side = int(rng.integers(180, 320))
    ink = _place(_enlarge(digit, int(side * rng.uniform(0.45, 0.75))), side, rng)
    paper = _paper(side, rng, level=(0.85, 0.98), gradient=0.1, shadow=0.05)
    rgb = paper[..., None] * np.ones(3)
    gap, phase = int(rng.integers(15, 36)), int(rng.integers(0, 15))
    line_rgb = np.array([0.55, 0.7, 0.9]) if rng.uniform() < 0.6 else np.full(3, 0.6)
    thickness = int(rng.integers(1, 3))
    rows = np.zeros(side, bool)
    for start in range(phase, side, gap):
        rows[start:start + thickness] = True
    lines = np.zeros((side, side), bool)
    lines[rows] = True
    if rng.uniform() < 0.5:  # squared paper
        lines[:, rows] = True
    rgb[lines] = rgb[lines] * 0.2 + line_rgb * 0.8
    return _photo(ink, rng, paper=rgb)


@family("shadow")
def hard_light(digit, rng):
    """Strong uneven light: a steep gradient and a dark shadow across the paper."""
    side = int(rng.integers(150, 301))
    ink = _place(_enlarge(digit, int(side * rng.uniform(0.45, 0.75))), side, rng)
    return _photo(ink, rng, paper=_paper(side, rng, level=(0.75, 0.95), gradient=0.45, shadow=0.4),
                  ink_rgb=np.full(3, rng.uniform(0.02, 0.15)))


@family("full-frame")
def full_frame(digit, rng):
    """The digit fills the picture and touches its border (a tight crop)."""
    side = int(rng.integers(100, 240))
    ys, xs = np.nonzero(digit > 30)
    tight = digit[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    h, w = tight.shape
    scale = side / max(h, w) * rng.uniform(1.0, 1.08)  # up to 8% cut off at the edges
    from PIL import Image

    big = np.asarray(Image.fromarray(tight).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                                   Image.Resampling.BICUBIC), np.float64) / 255
    canvas = np.zeros((side, side))
    top, left = (side - big.shape[0]) // 2, (side - big.shape[1]) // 2
    src = big[max(0, -top): max(0, -top) + side, max(0, -left): max(0, -left) + side]
    canvas[max(0, top): max(0, top) + src.shape[0], max(0, left): max(0, left) + src.shape[1]] = src
    return _photo(np.clip(canvas, 0, 1), rng)


@family("small-in-large")
def small_in_large(digit, rng):
    """A small digit (25-50 px) somewhere in a large photo (700-1200 px)."""
    side = int(rng.integers(700, 1201))
    ink = _place(_enlarge(digit, int(rng.integers(25, 51))), side, rng)
    return _photo(ink, rng)


@family("rotated")
def rotated(digit, rng):
    """The digit turned by up to 15 degrees either way."""
    from scipy import ndimage

    side = int(rng.integers(150, 301))
    ink = _enlarge(digit, int(side * rng.uniform(0.45, 0.6)))
    pad = ink.shape[0] // 5  # room for the corners to turn into
    ink = ndimage.rotate(np.pad(ink, pad), rng.uniform(-15, 15), reshape=False, order=1)
    return _photo(_place(np.clip(ink, 0, 1), side, rng), rng)


@family("heavy-jpeg")
def heavy_jpeg(digit, rng):
    """A photo saved at JPEG quality 5-20: blocks and ringing."""
    side = int(rng.integers(150, 301))
    ink = _place(_enlarge(digit, int(side * rng.uniform(0.45, 0.8))), side, rng)
    return _photo(ink, rng, jpeg=(5, 21))
