"""Simulated phone photos of digits: an MNIST digit re-drawn as dark ink on light, unevenly lit
paper, enlarged, off-centre, noisy and JPEG-compressed. Used to measure `to_mnist` honestly."""

from __future__ import annotations

import io

import numpy as np


def photo_of(digit: np.ndarray, rng: np.random.Generator, *, jpeg: bool = True) -> bytes:
    """Encode one 28x28 uint8 digit (0 = background) as the bytes of a photo-like picture."""
    from PIL import Image

    side = int(rng.integers(150, 301))
    digit_side = int(side * rng.uniform(0.45, 0.8))
    ink = np.asarray(Image.fromarray(digit).resize((digit_side, digit_side), Image.Resampling.BICUBIC), np.float64) / 255
    ink = np.clip(ink, 0, 1)
    canvas = np.zeros((side, side))
    y0 = int(rng.integers(0, side - digit_side + 1))
    x0 = int(rng.integers(0, side - digit_side + 1))
    canvas[y0:y0 + digit_side, x0:x0 + digit_side] = ink
    yy, xx = np.mgrid[0:side, 0:side] / side
    # paper: bright, lit unevenly (a gradient and a soft shadow), with grain
    paper = rng.uniform(0.7, 0.95) - rng.uniform(0, 0.2) * (yy * rng.uniform(-1, 1) + xx * rng.uniform(-1, 1))
    paper -= rng.uniform(0, 0.15) * np.exp(-((yy - rng.uniform()) ** 2 + (xx - rng.uniform()) ** 2) / 0.1)
    ink_level = rng.uniform(0.05, 0.3)
    img = paper * (1 - canvas) + ink_level * canvas
    img += rng.normal(0, rng.uniform(0.01, 0.04), img.shape)
    rgb = np.clip(np.stack([img * rng.uniform(0.95, 1.05) for _ in range(3)], -1), 0, 1)
    pil = Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    if jpeg:
        pil.save(buf, format="JPEG", quality=int(rng.integers(60, 91)))
    else:
        pil.save(buf, format="PNG")
    return buf.getvalue()
