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
