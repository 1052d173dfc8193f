"""Bring any picture of a digit into MNIST's form, the way MNIST itself was made.

grayscale -> polarity (dark ink on light paper is inverted) -> background removal (uneven light,
Otsu threshold, specks dropped) -> crop to the ink -> fit into 20x20 keeping the aspect ratio,
anti-aliased -> place in 28x28 with the centre of mass at (14, 14), where MNIST's own digits have
it (measured: 13.99, 14.00) -> (optional) deskew.
Each step can be kept for inspection (`steps`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnistlab.errors import MnistlabError

MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding them
WORK_SIDE = 320  # larger photos are reduced first: the digit ends up 20 px tall anyway


class ImageError(MnistlabError):
    """A file that is not an image we can read."""


class NoDigitFound(MnistlabError):
    """A blank, uniform or all-black image: there is nothing to classify."""


@dataclass
class Preprocessed:
    image: np.ndarray  # uint8 (28, 28), 0 = background, 255 = ink: MNIST's form
    inverted: bool  # True when the picture had dark ink on a light background
    steps: dict[str, np.ndarray] = field(default_factory=dict)  # step name -> float [0, 1] or uint8 image


def load_gray(source: str | Path | bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode an image file (PNG, JPEG, WebP, BMP, GIF, TIFF; 8 or 16 bit; with or without alpha)
    into float gray in [0, 1], plus its alpha channel in [0, 1] when it has a meaningful one."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    name = "image" if isinstance(source, bytes) else str(source)
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        img = ImageOps.exif_transpose(img)  # phone photos carry their rotation in EXIF
        img.load()
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: not an image that can be read ({exc.__class__.__name__}); use PNG, JPEG, WebP or BMP") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: over {MAX_PIXELS:,} pixels; send a smaller picture") from None
    alpha = None
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return np.clip(arr / top, 0, 1), None
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        return np.clip(arr / max(arr.max(), 1e-9), 0, 1), None
    if "A" in img.getbands() or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float64) / 255
        a = rgba[..., 3]
        if a.min() < 0.99:
            alpha = a
    gray = np.asarray(img.convert("L"), dtype=np.float64) / 255
    return gray, alpha


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    hist = hist.astype(np.float64)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mu1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centers[int(np.argmax(between))])


def _resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Anti-aliased resize of a float image to (height, width)."""
    from PIL import Image

    img = Image.fromarray(arr.astype(np.float32), mode="F")
    return np.asarray(img.resize((size[1], size[0]), Image.Resampling.LANCZOS if min(size) > 1 else Image.Resampling.BOX), dtype=np.float64)


def deskew(img: np.ndarray) -> np.ndarray:
    """Remove the slant of a centred 28x28 digit with a shear estimated from its second moments."""
    from scipy import ndimage

    total = img.sum()
    if total <= 0:
        return img
    ys, xs = np.mgrid[: img.shape[0], : img.shape[1]]
    cy, cx = (ys * img).sum() / total, (xs * img).sum() / total
    var_y = (((ys - cy) ** 2) * img).sum() / total
    cov = (((ys - cy) * (xs - cx)) * img).sum() / total
    if var_y <= 1e-9:
        return img
    alpha = cov / var_y
    # output (y, x) samples input (y, x + alpha * (y - cy)): the shear that stands the digit upright
    matrix = np.array([[1.0, 0.0], [alpha, 1.0]])
    offset = np.array([0.0, -alpha * cy])
    return ndimage.affine_transform(img, matrix, offset=offset, order=1, mode="constant", cval=0.0)


def to_mnist(source: str | Path | bytes | np.ndarray, *, deskew_digit: bool = False, keep_steps: bool = False) -> Preprocessed:
    """Turn a picture (a file, its bytes, or a 2-D array in [0, 1] or 0..255) into a 28x28 MNIST-form digit."""
    from scipy import ndimage

    steps: dict[str, np.ndarray] = {}
    if isinstance(source, np.ndarray):
        gray = source.astype(np.float64)
        gray = gray / 255.0 if gray.max() > 1.0 else gray
        alpha = None
        if gray.ndim != 2:
            raise ImageError(f"an image array must be 2-D grayscale, got shape {source.shape}")
    else:
        gray, alpha = load_gray(source)
    if min(gray.shape) < 1:
        raise NoDigitFound("the image is empty")
    keep = (lambda k, v: steps.__setitem__(k, np.clip(v, 0, 1).copy())) if keep_steps else (lambda k, v: None)
    keep("1-gray", gray)

    scale = WORK_SIDE / max(gray.shape)
    if scale < 1:
        shape = (max(1, round(gray.shape[0] * scale)), max(1, round(gray.shape[1] * scale)))
        gray = _resize(gray, shape)
        alpha = _resize(alpha, shape) if alpha is not None else None

    if alpha is not None:
        # A drawing on a transparent canvas: the strokes are where alpha is. Ink is opaque stroke pixels that
        # differ from what lies behind them, whatever their colour.
        stroke_dark = np.median(gray[alpha > 0.5]) < 0.5 if (alpha > 0.5).any() else True
        ink = alpha * ((1 - gray) if stroke_dark else gray)
        inverted = bool(stroke_dark)
    else:
        # Polarity from the border: paper is what surrounds the digit.
        border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
        inverted = bool(np.median(border) > 0.5)
        ink = 1 - gray if inverted else gray
        # Uneven light: estimate the background as a large-scale grey opening of the ink map and subtract it.
        size = max(3, int(max(ink.shape) / 6) | 1)
        background = ndimage.uniform_filter(ndimage.grey_opening(ink, size=(size, size)), size=size)
        ink = ink - background
    keep("2-ink", ink)

    lo, hi = np.percentile(ink, 50), np.percentile(ink, 99.8)
    if hi - lo < 0.08:
        raise NoDigitFound("no digit found: the picture is blank or uniform; draw or photograph a darker, larger digit")
    ink = np.clip((ink - lo) / (hi - lo), 0, 1)
    t = otsu_threshold(ink[ink > 0.02]) if (ink > 0.02).sum() > 10 else 0.5
    mask = ink > max(t, 0.15)
    labels, n = ndimage.label(mask)
    if n == 0:
        raise NoDigitFound("no digit found: nothing stands out from the background")
    sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
    keep_ids = np.flatnonzero(sizes >= max(0.08 * sizes.max(), 4)) + 1  # specks and dust are dropped
    mask = np.isin(labels, keep_ids)
    if mask.mean() > 0.6:
        raise NoDigitFound("no digit found: the ink covers most of the picture (an all-dark image?)")
    mask = ndimage.binary_dilation(mask, iterations=max(1, int(round(max(ink.shape) / 150))))
    ink = np.where(mask, ink, 0.0)
    keep("3-clean", ink)

    ys, xs = np.nonzero(ink > 0.05)
    crop = ink[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    keep("4-crop", crop)
    h, w = crop.shape
    factor = 20.0 / max(h, w)
    box = _resize(crop, (max(1, round(h * factor)), max(1, round(w * factor))))
    box = np.clip(box, 0, None)
    box = box / max(box.max(), 1e-9)
    keep("5-fit20", box)

    canvas = np.zeros((28, 28))
    top, left = (28 - box.shape[0]) // 2, (28 - box.shape[1]) // 2
    canvas[top: top + box.shape[0], left: left + box.shape[1]] = box
    cy, cx = ndimage.center_of_mass(canvas)
    canvas = ndimage.shift(canvas, (14.0 - cy, 14.0 - cx), order=1, mode="constant", cval=0.0)
    if deskew_digit:
        canvas = deskew(canvas)
        cy, cx = ndimage.center_of_mass(canvas)
        canvas = ndimage.shift(canvas, (14.0 - cy, 14.0 - cx), order=1, mode="constant", cval=0.0)
    canvas = np.clip(canvas, 0, 1)
    image = np.round(canvas / max(canvas.max(), 1e-9) * 255).astype(np.uint8)
    keep("6-mnist", image / 255.0)
    return Preprocessed(image=image, inverted=inverted, steps=steps)


def save_steps(pre: Preprocessed, folder: str | Path, stem: str) -> list[Path]:
    """Write each kept step as a PNG (`{stem}.{step}.png`) for inspection."""
    from PIL import Image

    from mnistlab.fileio import atomic_write_bytes

    out = []
    for name, arr in pre.steps.items():
        buf = io.BytesIO()
        Image.fromarray(np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8)).save(buf, format="PNG")
        out.append(atomic_write_bytes(Path(folder) / f"{stem}.{name}.png", buf.getvalue()))
    return out
