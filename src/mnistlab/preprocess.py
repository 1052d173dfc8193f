"""Bring any picture of a digit into MNIST's form, the way MNIST itself was made, whatever the pen and paper.

grayscale -> find the digit (a small digit in a large photo is cut out and looked at closer) -> polarity
(ink is the minority of the picture: dark ink on light paper is inverted) -> ruled or squared paper's
lines removed -> uneven light removed, with the ink found by an opening wider than its strokes so a thick
stroke is never taken for background -> Otsu threshold above the paper (the values below an Otsu split, so
a digit filling the frame is not taken for paper), specks dropped, the loops a thick pen filled opened
again -> crop to the ink -> stroke width brought into MNIST's range (a 1-pixel pen thickened; a marker or
a blurry scan taken at the higher level of its ink where its strokes are MNIST-wide, else thinned) -> fit into
20x20 keeping the aspect ratio, anti-aliased -> place in 28x28 with the centre of mass at (14, 14), where
MNIST's own digits have it (measured: 13.99, 14.00) -> (optional) deskew.
Each step can be kept for inspection (`steps`, `mnistlab predict --save-preprocessed`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnistlab.errors import MnistlabError

MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding them
WORK_SIDE = 240  # larger photos are reduced first: the digit ends up 20 px tall anyway


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


def _histogram(values: np.ndarray) -> np.ndarray:
    """np.histogram(values, 256, range=(0, 1))[0] by one bincount. The same counts: times 256 (a power of two) is
    exact in floating point, so every value's bin is its floor, as numpy's edge corrections would make it."""
    values = values.ravel()
    values = values[(values >= 0.0) & (values <= 1.0)]
    return np.bincount(np.minimum((values * 256).astype(np.intp), 255), minlength=256)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's split of values in [0, 1], in 256 bins: the centre of the bin that best separates two classes."""
    hist = _histogram(values).astype(np.float64)
    centers = (np.arange(256) + 0.5) / 256
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


# MNIST's stroke width, relative to the side of its 20x20 box: median 2.5 px at 28x28 (10% of digits
# under 1.8, 10% over 3.6), measured on 2,000 training digits; strokes outside this band are redrawn
STROKE = 2.5 / 20
STROKE_BAND = (1.8 / 2.5, 3.6 / 2.5)
LARGE_INK = 0.12  # share of the picture above which the ink counts as large (see _remove_light)
MIN_CONTRAST = 0.08  # ink within this of the paper's level (on a 0-1 scale) is no digit: a blank or uniform picture
LOOK_CLOSER = 0.6  # a digit spanning less than this share of the working size is looked at again at full resolution,
CLOSER_MARGIN = 0.6  # with this share of its size as a margin around it
MAX_INK_SHARE = 0.6  # ink over more of the picture than this is no digit on paper (an all-dark image)


def _median(values: np.ndarray) -> float:
    """The median of a large array from an even sample of 20,000 of its values: the same to a fraction
    of a grey level, a tenth of the time."""
    flat = values.ravel()
    return float(np.median(flat[:: max(1, flat.size // 20000)])) if flat.size else 0.0


def _paper_stats(values: np.ndarray) -> tuple[float, float]:
    """The paper's level and grain (a robust spread) in an ink map: the median and scaled median absolute
    deviation of the values below an Otsu split, so that a digit covering half the picture (a tight crop)
    is never taken for the paper."""
    flat = values.ravel()[:: max(1, values.size // 20000)]
    if not flat.size:
        return 0.0, 0.0
    low, span = float(flat.min()), max(float(np.ptp(flat)), 1e-9)
    below = flat[flat <= low + otsu_threshold((flat - low) / span) * span]
    level = float(np.median(below))
    return level, 1.4826 * float(np.median(np.abs(below - level)))


def _main_blobs(mask: np.ndarray, share: float = 0.15) -> np.ndarray:
    """The connected parts of `mask` at least `share` the size of its largest: the digit, without noise and specks."""
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    return (sizes >= share * sizes.max())[labels]


def stroke_width(mask: np.ndarray) -> float:
    """A binary shape's typical stroke width in pixels: twice the median distance to the background
    along its centre lines (the ridges of its distance transform)."""
    from scipy import ndimage

    if not mask.any():
        return 0.0
    dt = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    ridge = mask & (dt >= ndimage.maximum_filter(dt, 3))
    return max(1.0, 2 * float(np.median(dt[ridge])) - 1)


def _polarity(gray: np.ndarray) -> bool:
    """Whether the ink is dark on light paper. Ink covers less of a picture than the paper does (a digit
    filling the frame still leaves most of it blank), so the minority side of an Otsu split, taken
    after the picture's slow changes of light are flattened, is the ink; the border decides a tie."""
    from scipy import ndimage

    flat = gray - ndimage.uniform_filter(gray, size=max(3, max(gray.shape) // 2 | 1), mode="nearest")
    dark = flat < otsu_threshold(np.clip(flat - flat.min(), 0, None) / max(np.ptp(flat), 1e-9)) * np.ptp(flat) + flat.min()
    frac = float(dark.mean())
    if 0.42 < frac < 0.58:
        border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
        return bool(np.median(border) > 0.5)
    return frac < 0.5


def _remove_ruled_lines(ink: np.ndarray) -> np.ndarray:
    """Subtract the lines of ruled or squared paper: thin rows (columns) along which something lies over
    90% of the width (height), at least three of them, as a page has and a digit has not (the long bar
    of a 7 that fills the frame is one, and thick)."""
    from scipy import ndimage

    for axis in (1, 0):
        level = np.percentile(ink, 10, axis=axis)  # what lies along 90% of each row (column)
        base = ndimage.median_filter(level, size=max(5, len(level) // 10 | 1), mode="nearest")
        line = np.clip(level - base, 0, None)
        strong = line > max(0.06, 0.25 * (float(np.percentile(ink, 99.5)) - _median(ink)))
        groups, n = ndimage.label(strong)
        thin = max(3, len(level) // 40)
        widths = np.bincount(groups, minlength=n + 1)[1:]
        lines = np.concatenate([[False], widths <= thin])[groups]
        if ndimage.label(lines)[1] >= 3:
            ink = ink - np.expand_dims(np.where(lines, line, 0.0), axis)
    return ink


def _paper_level(ink: np.ndarray, paper: np.ndarray) -> np.ndarray:
    """The level of the paper under every pixel: a wide smoothing of the `paper` pixels only (the ink's
    own pixels do not count), on a picture about 40 pixels wide, since light changes slowly."""
    from scipy import ndimage

    f = max(1, max(ink.shape) // 40)
    h, w = -(-ink.shape[0] // f) * f, -(-ink.shape[1] // f) * f  # rounded up: edge pixels repeated
    blocks = lambda a: np.pad(a, ((0, h - ink.shape[0]), (0, w - ink.shape[1])), mode="edge").reshape(  # noqa: E731
        h // f, f, w // f, f).mean((1, 3))
    level, weight = blocks(np.where(paper, ink, 0.0)), blocks(paper.astype(np.float64))
    sigma = max(1.0, max(ink.shape) / 10 / f)
    smooth = (ndimage.gaussian_filter(level, sigma, mode="nearest")
              / np.maximum(ndimage.gaussian_filter(weight, sigma, mode="nearest"), 1e-6))
    return _resize(smooth, (h, w))[: ink.shape[0], : ink.shape[1]]


def _strong(residual: np.ndarray) -> np.ndarray:
    """Pixels that stand out of the paper: above an Otsu split and far above the grain (robust spread)."""
    med, grain = _paper_stats(residual)
    span = max(float(np.ptp(residual)), 1e-9)
    otsu = residual.min() + otsu_threshold((residual - residual.min()) / span) * span
    return residual > max(otsu, med + 5 * grain)


def _remove_light(ink: np.ndarray) -> np.ndarray:
    """Uneven light: subtract the paper's own level. Two first estimates show roughly where the ink is (above
    a smooth level of every pixel; above a wide opening, which a dense or wide-stroked digit cannot wear
    away); the final level comes from paper pixels only, leaving out everything within one stroke width of
    that ink, so a stroke of any width is never taken for background and a shadow is. Light changes
    slowly: all of it is worked out on a copy at most 120 pixels wide."""
    from scipy import ndimage

    f = max(1, -(-max(ink.shape) // 120))
    small = _resize(ink, (max(1, ink.shape[0] // f), max(1, ink.shape[1] // f))) if f > 1 else ink
    rough = _main_blobs(_strong(small - _paper_level(small, np.ones(small.shape, bool))))
    # that level reaches into wide strokes and dense ink; an opening wider than the digit's strokes (0.4 of its
    # size, of the picture's when nothing stood out) takes the strokes out of the light, and keeps shadows in it
    ys, xs = np.nonzero(rough)
    extent = max(np.ptp(ys), np.ptp(xs)) + 1 if ys.size else max(small.shape)
    rough |= _main_blobs(_strong(small - ndimage.grey_opening(small, size=max(3, int(0.4 * extent)))))
    paper = ndimage.distance_transform_edt(~rough) > max(2.0, stroke_width(rough))
    plain = ink - _median(small)
    if paper.mean() < 0.1:  # ink nearly everywhere: nothing to learn the light from
        return plain
    level = _paper_level(small, paper)
    # where the ink is large (a digit filling the frame) and the paper estimate reached into its wide
    # strokes, evening the light would wear the ink away: then the picture is kept as it was
    contrast = lambda a: _median(a[rough]) - _median(a[paper])  # noqa: E731
    if rough.mean() > LARGE_INK and contrast(small - level) < 0.75 * contrast(small - _median(small)):
        return plain
    return ink - (_resize(level, ink.shape) if f > 1 else level)


def _find_digit(ink: np.ndarray) -> tuple[slice, slice] | None:
    """The box around the main ink (its largest blobs), or None when nothing stands out."""

    lo, hi = _paper_stats(ink)[0], np.percentile(ink, 99.99)  # a small digit in a large photo is a few hundred pixels
    if hi - lo < MIN_CONTRAST:
        return None
    keep = _main_blobs(ink > lo + 0.5 * (hi - lo))
    if not keep.any():
        return None
    ys, xs = np.nonzero(keep)
    return slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)


def _ink_map(gray: np.ndarray, alpha: np.ndarray | None) -> tuple[np.ndarray, bool]:
    """Ink in [0, ~1] on a background near 0, and whether the picture was inverted."""
    if alpha is not None:
        # A drawing on a transparent canvas: the strokes are where alpha is. Ink is opaque stroke pixels that
        # differ from what lies behind them, whatever their colour.
        stroke_dark = np.median(gray[alpha > 0.5]) < 0.5 if (alpha > 0.5).any() else True
        return alpha * ((1 - gray) if stroke_dark else gray), bool(stroke_dark)
    inverted = _polarity(gray)
    ink = 1 - gray if inverted else gray
    paper = ink[ink <= otsu_threshold(ink)]
    if paper.size and np.ptp(np.percentile(paper, [2, 98])) < 0.05:  # clean, even paper (a drawing app's canvas)
        return ink - float(np.median(paper)), inverted
    return _remove_light(_remove_ruled_lines(ink)), inverted


def _threshold(ink: np.ndarray) -> np.ndarray:
    """The digit's pixels: above an Otsu threshold and well above the paper's grain (its robust spread),
    after a slight smoothing that lifts a 1-pixel pen line out of the grain; then the digit's parts
    (pieces at least 8% the size of the largest, or smaller pieces among them, as a broken thin line
    leaves) without the specks and dust around it."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(ink, 0.7)
    med, grain = _paper_stats(smooth)
    t = otsu_threshold(smooth[smooth > 0.02]) if (smooth > 0.02).sum() > 10 else 0.5
    mask = smooth > max(t, 0.15, med + 6 * grain)
    labels, n = ndimage.label(mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    if n == 0 or sizes.max() < 4:  # dust only
        return np.zeros_like(mask)
    big = np.concatenate([[False], sizes >= 0.08 * sizes.max()])  # by label, as a table
    ys, xs = np.nonzero(big[labels])
    (y0, y1), (x0, x1) = (ys.min(), ys.max()), (xs.min(), xs.max())
    margin = 0.25 * max(y1 - y0, x1 - x0)
    rows, cols = np.nonzero(labels)  # each part's centre, summed in the same order as over the whole picture
    cy = np.bincount(labels[rows, cols], weights=rows, minlength=n + 1)[1:] / np.maximum(sizes, 1)
    cx = np.bincount(labels[rows, cols], weights=cols, minlength=n + 1)[1:] / np.maximum(sizes, 1)
    near = np.concatenate([[False], (sizes >= max(0.01 * sizes.max(), 2)) & (cy >= y0 - margin) & (cy <= y1 + margin)
                           & (cx >= x0 - margin) & (cx <= x1 + margin)])
    return (big | near)[labels]


HOLE_DEPTH = 0.15  # a dip this deep in the ink (on its 0-1 scale), closed all round, is a loop's hole, not grain


def _loop_holes(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The holes of loops that a thick or blurred pen filled above the threshold (the small loops of an 8, 6
    or 9): basins of the ink closed all round by higher ink, at least HOLE_DEPTH deep, taken down to half
    their depth, as a blur spreads a hole's edge. The highest level that closes each pixel in is found by
    labelling what lies below each level of the ink, 0.025 apart (grey-level hole filling), on the digit's
    box only."""
    from scipy import ndimage

    ys, xs = np.nonzero(mask)
    box = (slice(max(0, ys.min() - 1), ys.max() + 2), slice(max(0, xs.min() - 1), xs.max() + 2))
    smooth = ndimage.gaussian_filter(ink, 0.7)[box]
    closing = np.zeros_like(smooth)  # the highest level at which each pixel is closed in by ink
    for level in np.arange(float(smooth[mask[box]].min()), float(smooth.max()), 0.025):
        outside, n = ndimage.label(smooth < level)
        enclosed = np.ones(n + 1, bool)  # by label: closed in, not reaching the box's edge (nor the ink, label 0)
        enclosed[np.concatenate([[0], outside[0], outside[-1], outside[:, 0], outside[:, -1]])] = False
        closing[enclosed[outside]] = level
    depth = np.clip(closing - smooth, 0, None)
    basins, n = ndimage.label(depth > 0)
    holes = np.zeros(mask.shape, bool)
    if n:
        deepest = np.concatenate([[np.inf], ndimage.maximum(depth, basins, np.arange(1, n + 1))])
        holes[box] = (basins > 0) & (deepest[basins] >= HOLE_DEPTH) & (depth >= 0.5 * deepest[basins])
    return holes & mask


def _to_work_size(gray: np.ndarray, alpha: np.ndarray | None):
    scale = WORK_SIDE / max(gray.shape)
    if scale >= 1:
        return gray, alpha
    shape = (max(1, round(gray.shape[0] * scale)), max(1, round(gray.shape[1] * scale)))
    return _resize(gray, shape), (_resize(alpha, shape) if alpha is not None else None)


def _inner_level(mask: np.ndarray, soft: np.ndarray, widest: float) -> tuple[np.ndarray, np.ndarray]:
    """A wide, soft stroke (a marker, a blurry scan) is darkest along its middle: the ink's higher levels are
    a thinner pen's strokes, and they open the bays and loops that the wide pen filled in. The lowest level
    whose stroke is at most `widest` and whose digit still spans 90% of its centre lines' height and width:
    its mask and its ink above that level stretched to [0, 1] (the inputs as they are where no level does)."""
    # the span of the stroke's centre lines, which a thinner pen must still cover
    height, breadth = np.ptp(np.nonzero(mask), axis=1) + 1 - stroke_width(mask)
    for level in np.arange(0.3, 0.91, 0.05):
        inner = _main_blobs(mask & (soft > level), share=0.08)
        if not inner.any():
            break
        h, w = np.ptp(np.nonzero(inner), axis=1) + 1
        if h < 0.9 * height or w < 0.9 * breadth:
            break
        if stroke_width(inner) <= widest:
            return inner, np.clip((soft - level) / (1 - level), 0, 1)
    return mask, soft


def normalize_stroke(mask: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """Redraw a cropped digit whose stroke is outside MNIST's band at the band's nearest edge: a thin pen
    thickened, a marker or a blurry scan thinned (keeping its centre lines, so no part vanishes)."""
    from scipy import ndimage

    target = STROKE * max(mask.shape)
    width = stroke_width(mask)
    lo, hi = STROKE_BAND[0] * target, STROKE_BAND[1] * target
    if lo <= width <= hi:
        return soft
    if width < lo:
        grown = ndimage.distance_transform_edt(~mask) <= (lo - width) / 2
        return np.maximum(soft, ndimage.gaussian_filter(grown.astype(np.float64), 0.5))
    mask, soft = _inner_level(mask, soft, hi)
    width = stroke_width(mask)
    if width <= hi:
        return soft
    dt = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    ridge = mask & (dt >= ndimage.maximum_filter(dt, 3))
    core = dt > (width - hi) / 2
    thinned = (core | (ndimage.distance_transform_edt(~ridge) <= hi / 2)) & mask
    return ndimage.gaussian_filter(thinned.astype(np.float64), 0.5)


def _as_gray(source) -> tuple[np.ndarray, np.ndarray | None]:
    """The picture as grayscale in [0, 1] and its alpha channel (None without one)."""
    if not isinstance(source, np.ndarray):
        return load_gray(source)
    if source.ndim != 2:
        raise ImageError(f"an image array must be 2-D grayscale, got shape {source.shape}")
    gray = source.astype(np.float64)
    return (gray / 255.0 if gray.max() > 1.0 else gray), None


def _look_closer(gray, alpha, work, ink, inverted, box):
    """A small digit in a large picture: the ink of the digit's part of the full-resolution picture (else `ink`)."""
    f = gray.shape[0] / work.shape[0]
    side = max(box[0].stop - box[0].start, box[1].stop - box[1].start) * f
    if side >= WORK_SIDE * LOOK_CLOSER:
        return ink, inverted
    pad = side * CLOSER_MARGIN
    y0, y1 = int(max(0, box[0].start * f - pad)), int(min(gray.shape[0], box[0].stop * f + pad))
    x0, x1 = int(max(0, box[1].start * f - pad)), int(min(gray.shape[1], box[1].stop * f + pad))
    if alpha is not None:
        work, work_alpha = _to_work_size(gray[y0:y1, x0:x1], alpha[y0:y1, x0:x1])
        return _ink_map(work, work_alpha)
    # the whole picture's polarity and paper level, which a small crop would guess worse
    base = 1 - work if inverted else work
    region = base - ink  # what was taken away as paper, under the crop
    region = region[int(y0 / f): max(int(y0 / f) + 1, int(y1 / f)), int(x0 / f): max(int(x0 / f) + 1, int(x1 / f))]
    work, _ = _to_work_size(gray[y0:y1, x0:x1], None)
    return (1 - work if inverted else work) - _resize(region, work.shape), inverted


def _clean(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ink stretched to [0, 1], its mask and the ink kept near the mask; a picture with no digit is refused."""
    from scipy import ndimage

    lo, hi = _paper_stats(ink)[0], np.percentile(ink, 99.8)
    if hi - lo < MIN_CONTRAST:
        raise NoDigitFound("no digit found: the picture is blank or uniform; draw or photograph a darker, larger digit")
    ink = np.clip((ink - lo) / (hi - lo), 0, 1)
    mask = _threshold(ink)
    if not mask.any():
        raise NoDigitFound("no digit found: nothing stands out from the background")
    if mask.mean() > MAX_INK_SHARE:
        raise NoDigitFound("no digit found: the ink covers most of the picture (an all-dark image?)")
    holes = _loop_holes(ink, mask)
    mask &= ~holes
    near = ndimage.binary_dilation(mask, iterations=max(1, int(round(max(ink.shape) / 150)))) & ~holes
    return mask, np.where(near, ink, 0.0)


def _centred(canvas: np.ndarray) -> np.ndarray:
    """The digit moved so that its centre of mass is the 28x28 field's centre, as MNIST's were."""
    from scipy import ndimage

    cy, cx = ndimage.center_of_mass(canvas)
    return ndimage.shift(canvas, (14.0 - cy, 14.0 - cx), order=1, mode="constant", cval=0.0)


def to_mnist(source: str | Path | bytes | np.ndarray, *, deskew_digit: bool = False, keep_steps: bool = False) -> Preprocessed:
    """Turn a picture (a file, its bytes, or a 2-D array in [0, 1] or 0..255) into a 28x28 MNIST-form digit."""
    steps: dict[str, np.ndarray] = {}
    gray, alpha = _as_gray(source)
    if min(gray.shape) < 1:
        raise NoDigitFound("the image is empty")
    keep = (lambda k, v: steps.__setitem__(k, np.clip(v, 0, 1).copy())) if keep_steps else (lambda k, v: None)
    keep("1-gray", gray)

    work, work_alpha = _to_work_size(gray, alpha)
    ink, inverted = _ink_map(work, work_alpha)
    box = _find_digit(ink)
    if box is not None and work.shape != gray.shape:
        ink, inverted = _look_closer(gray, alpha, work, ink, inverted, box)
    keep("2-ink", ink)
    mask, soft = _clean(ink)
    keep("3-clean", soft)

    ys, xs = np.nonzero(mask)
    crop_box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    crop = normalize_stroke(mask[crop_box], soft[crop_box])
    keep("4-crop", crop)
    h, w = crop.shape
    factor = 20.0 / max(h, w)
    box = np.clip(_resize(crop, (max(1, round(h * factor)), max(1, round(w * factor)))), 0, None)
    box = box / max(box.max(), 1e-9)
    keep("5-fit20", box)

    canvas = np.zeros((28, 28))
    top, left = (28 - box.shape[0]) // 2, (28 - box.shape[1]) // 2
    canvas[top: top + box.shape[0], left: left + box.shape[1]] = box
    canvas = _centred(canvas)
    if deskew_digit:
        canvas = _centred(deskew(canvas))
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
