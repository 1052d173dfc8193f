"""Preprocessing into MNIST's form: synthetic and real-MNIST-derived pictures, in every family of pen and paper."""

import io

import numpy as np
import pytest
from benchmarks.photos import FAMILIES, photo_of, render
from PIL import Image, ImageDraw
from scipy import ndimage

import mnistlab
from mnistlab.preprocess import ImageError, NoDigitFound, to_mnist


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def drawn(ink=0, paper=255, size=(200, 300), mode="L", box=(60, 40, 120, 250), width=14):
    img = Image.new(mode, size, paper)
    d = ImageDraw.Draw(img)
    d.line([box[:2], box[2:]], fill=ink, width=width)
    d.ellipse((box[0] - 20, box[1], box[0] + 40, box[1] + 60), outline=ink, width=width)
    return img


def check_mnist_form(image):
    assert image.shape == (28, 28) and image.dtype == np.uint8 and image.max() == 255
    cy, cx = ndimage.center_of_mass(image.astype(float))
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5, (cy, cx)
    ys, xs = np.nonzero(image > 30)
    side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    assert 19 <= side <= 22, side  # the ink fits a 20x20 box (plus anti-aliasing)


def test_dark_ink_on_light_paper_is_inverted():
    pre = to_mnist(png(drawn()))
    assert pre.inverted
    check_mnist_form(pre.image)
    assert pre.image[0].max() == 0 and pre.image[:, 0].max() == 0, "background is 0, as in MNIST"


def test_both_polarities_give_the_same_digit():
    dark = to_mnist(png(drawn(ink=0, paper=255)))
    light = to_mnist(png(drawn(ink=255, paper=0)))
    assert dark.inverted and not light.inverted
    assert np.abs(dark.image.astype(int) - light.image.astype(int)).mean() < 3


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "I;16"])
def test_colour_modes(mode):
    if mode == "I;16":
        arr = np.asarray(drawn(), dtype=np.uint16) * 257
        img = Image.fromarray(arr)  # uint16 -> mode I;16
        assert img.mode == "I;16"
    elif mode == "RGBA":  # strokes on a transparent canvas, as a drawing app saves them
        img = Image.new("RGBA", (200, 300), (0, 0, 0, 0))
        ImageDraw.Draw(img).line([(60, 40), (120, 250)], fill=(20, 20, 200, 255), width=14)
    else:
        img = drawn().convert(mode)
    pre = to_mnist(png(img))
    check_mnist_form(pre.image)


def test_white_strokes_on_transparency():
    img = Image.new("RGBA", (200, 300), (255, 255, 255, 0))
    ImageDraw.Draw(img).line([(60, 40), (120, 250)], fill=(255, 255, 255, 255), width=14)
    check_mnist_form(to_mnist(png(img)).image)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "BMP"])
def test_file_formats(fmt, tmp_path):
    p = tmp_path / f"d.{fmt.lower()}"
    drawn().convert("RGB").save(p, format=fmt)
    check_mnist_form(to_mnist(p).image)


def test_specks_are_ignored():
    clean = to_mnist(png(drawn()))
    img = drawn()
    d = ImageDraw.Draw(img)
    for x, y in [(10, 10), (190, 290), (180, 20), (15, 280)]:
        d.ellipse((x - 2, y - 2, x + 2, y + 2), fill=0)
    dusty = to_mnist(png(img))
    assert np.abs(dusty.image.astype(int) - clean.image.astype(int)).mean() < 2


def test_uneven_light_and_noise():
    rng = np.random.default_rng(0)
    base = np.asarray(drawn(), dtype=float) / 255
    yy, xx = np.mgrid[0:300, 0:200]
    lit = base * (0.95 - 0.35 * xx / 200) + rng.normal(0, 0.03, base.shape)  # a strong shadow across the page
    img = Image.fromarray(np.clip(lit * 255, 0, 255).astype(np.uint8))
    pre = to_mnist(png(img))
    check_mnist_form(pre.image)
    assert np.abs(pre.image.astype(int) - to_mnist(png(drawn())).image.astype(int)).mean() < 6


@pytest.mark.parametrize("make", [lambda: Image.new("L", (100, 100), 255), lambda: Image.new("L", (100, 100), 0),
                                  lambda: Image.new("RGB", (50, 80), (120, 120, 120)), lambda: Image.new("RGBA", (64, 64), (0, 0, 0, 0))])
def test_blank_images_say_no_digit(make):
    with pytest.raises(NoDigitFound, match="no digit found"):
        to_mnist(png(make()))


def test_not_an_image(tmp_path):
    p = tmp_path / "x.png"
    p.write_bytes(b"<html>not a png</html>")
    with pytest.raises(ImageError, match="not an image"):
        to_mnist(p)
    with pytest.raises(ImageError, match="no such file"):
        to_mnist(tmp_path / "missing.png")


def test_deskew_stands_a_slanted_stroke_upright():
    img = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(img).line([(70, 180), (130, 20)], fill=0, width=16)
    plain = to_mnist(png(img)).image.astype(float)
    straight = to_mnist(png(img), deskew_digit=True).image.astype(float)

    def slant(a):
        ys, xs = np.mgrid[:28, :28]
        t = a.sum()
        cy, cx = (ys * a).sum() / t, (xs * a).sum() / t
        return abs(((ys - cy) * (xs - cx) * a).sum() / t)

    assert slant(straight) < 0.3 * slant(plain)


def test_debug_steps():
    pre = to_mnist(png(drawn()), keep_steps=True)
    assert list(pre.steps) == ["1-gray", "2-ink", "3-clean", "4-crop", "5-fit20", "6-mnist"]


@pytest.mark.realdata
def test_real_mnist_digits_photographed(real_home, mnist_run):
    """MNIST test digits re-drawn as phone photos and brought back: the model agrees with itself."""
    test = mnistlab.load_dataset("mnist", "test", data_dir=real_home)
    rng = np.random.default_rng(0)
    idx = rng.choice(len(test), 150, replace=False)
    back = np.stack([to_mnist(photo_of(test.images[i], rng)).image for i in idx])
    for img in back[:20]:
        check_mnist_form(img)
    direct = mnist_run.predict(test.images[idx])
    photo = mnist_run.predict(back)
    assert (photo == direct).mean() >= 0.93
    assert (photo == test.labels[idx]).mean() >= 0.9


# --------------------------------------------------------------------- every pen and paper (serve/photos.py)

@pytest.mark.realdata
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_gives_clear_digits_back(family, real_home, mnist_run):
    """A handful of MNIST test digits drawn in each family come back as the digits they were, and every
    step of the pipeline shows something (what --save-preprocessed writes)."""
    test = mnistlab.load_dataset("mnist", "test", data_dir=real_home)
    rng = np.random.default_rng(7)
    idx = CLEAR[:4]
    pictures = [render(test.images[i], family, rng) for i in idx]
    back = [to_mnist(p, keep_steps=True) for p in pictures]
    for pre in back:
        check_mnist_form(pre.image)
        assert pre.inverted  # dark ink on paper, in every family
        assert list(pre.steps) == ["1-gray", "2-ink", "3-clean", "4-crop", "5-fit20", "6-mnist"]
        assert all(np.asarray(v).max() > 0 for v in pre.steps.values())
    assert mnist_run.predict(np.stack([p.image for p in back])).tolist() == test.labels[idx].tolist()


# test digits of plain shapes (a 1, a 2, a 3 and a 4), which the serving fixture's model reads with certainty
CLEAR = [2, 1, 18, 4]


def test_stroke_width_is_measured_and_brought_into_mnist_range():
    from mnistlab.preprocess import STROKE, normalize_stroke, stroke_width

    canvas = np.zeros((200, 200), bool)
    canvas[20:180, 90:110] = True  # a bar 20 px wide
    assert abs(stroke_width(canvas) - 20) <= 1.5
    thin = np.zeros((200, 200), bool)
    thin[20:180, 100] = True  # a 1-px pen
    grown = normalize_stroke(thin, thin.astype(float)) > 0.5
    assert stroke_width(grown) >= 0.7 * STROKE * 200 * 0.72
    fat = np.zeros((200, 200), bool)
    fat[20:180, 60:140] = True  # a marker 80 px wide on a 160 px digit
    slim = normalize_stroke(fat, fat.astype(float)) > 0.5
    assert stroke_width(slim) <= 1.5 * STROKE * 200 * 1.44 and slim[100, 100]  # thinner, its centre kept


def ring(side=120, radius=30, width=16, hole_floor=0.0, blur=0.0):
    """An ink map of one loop: a disc of ink `radius` with a round hole whose ink is `hole_floor`."""
    yy, xx = np.mgrid[:side, :side] - side / 2
    r = np.hypot(yy, xx)
    ink = np.where(r <= radius, 1.0, 0.0)
    ink[r <= radius - width] = hole_floor
    return ndimage.gaussian_filter(ink, blur) if blur else ink


def test_paper_level_is_the_paper_even_when_the_digit_covers_most_of_the_picture():
    from mnistlab.preprocess import _paper_stats

    rng = np.random.default_rng(0)
    ink = np.where(rng.uniform(size=(100, 100)) < 0.6, 0.8, 0.1) + rng.normal(0, 0.01, (100, 100))  # 60% ink
    level, grain = _paper_stats(ink)
    assert level == pytest.approx(0.1, abs=0.005) and grain == pytest.approx(0.01, rel=0.2)
    assert np.median(ink) > 0.7  # the plain median, which this replaces, lands on the ink


def test_a_loop_filled_by_a_thick_pen_is_opened_down_to_half_its_depth():
    from mnistlab.preprocess import HOLE_DEPTH, _loop_holes

    ink = ring(hole_floor=0.6)  # the hole's ink 0.6: over any threshold, 0.4 below its rim
    holes = _loop_holes(ink, ink > 0.3)
    yy, xx = np.mgrid[:120, :120] - 60
    hole = np.hypot(yy, xx) <= 30 - 16
    assert (holes == hole).mean() > 0.99, "the whole flat-floored hole, nothing of the ring"
    shallow = ring(hole_floor=1 - HOLE_DEPTH / 2)  # a dip of half the depth: grain, not a loop
    assert not _loop_holes(shallow, shallow > 0.3).any()
    bay = ink.copy()
    bay[55:65, 60:] = 0.6  # the same dip opened to the outside: a bay (a 3's), not a hole
    assert not _loop_holes(bay, bay > 0.3).any()


def test_a_blurred_wide_stroke_is_taken_at_the_level_where_it_is_mnist_wide():
    from mnistlab.preprocess import STROKE, STROKE_BAND, _inner_level, stroke_width

    soft = ring(side=140, radius=60, width=40, blur=8)  # a marker's O: stroke 40 px in a 120 px digit, soft edges
    mask = soft > 0.25
    hi = STROKE_BAND[1] * STROKE * 120
    assert stroke_width(mask) > hi
    inner, ink = _inner_level(mask, soft, hi)
    assert stroke_width(inner) <= hi and inner.sum() < mask.sum()
    ys, xs = np.nonzero(inner)
    assert np.ptp(ys) + 1 >= 0.9 * (120 - 40) and np.ptp(xs) + 1 >= 0.9 * (120 - 40), "the O keeps its centre line"
    assert ((ink > 0) == inner).all(), "the ink above the level, and nothing else"
    flat = ring(side=140, radius=60, width=40) > 0.5  # a hard-edged marker: no higher level is thinner
    assert _inner_level(flat, flat.astype(float), hi)[0] is flat


def test_a_wide_digit_filling_the_frame_keeps_its_strokes_whole():
    side, width, grow = 160, 28, 6  # an O cut by the frame, its stroke a sixth of the picture, under a light gradient
    img = Image.new("L", (side, side), 230)
    ImageDraw.Draw(img).ellipse((-grow, -grow, side + grow, side + grow), outline=20, width=width)
    gray = np.asarray(img, np.float64) / 255 - np.linspace(0, 0.25, side)[None, :] * (np.asarray(img) > 100)
    pre = to_mnist(gray, keep_steps=True)
    yy, xx = np.mgrid[:side, :side] - (side - 1) / 2
    r = np.hypot(yy, xx)
    outer = side / 2 + grow
    stroke = (r > outer - width + 3) & (r < outer - 3)
    assert pre.steps["3-clean"][stroke].min() > 0.5, "no part of the wide stroke worn away"
    assert pre.steps["3-clean"][r < outer - width - 3].max() == 0, "the paper inside is paper"


def test_otsu_s_histogram_is_numpy_s_on_every_edge():
    from mnistlab.preprocess import _histogram

    rng = np.random.default_rng(0)
    edges = np.arange(257) / 256  # every bin's edge exactly, and beside it
    values = np.concatenate([rng.random(5000), edges, np.nextafter(edges, 2), np.nextafter(edges, -1), [-0.1, 1.2]])
    for v in (values, values.astype(np.float32)):
        assert np.array_equal(_histogram(v), np.histogram(v, bins=256, range=(0.0, 1.0))[0])
