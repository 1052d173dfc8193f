"""MNIST-C's corruptions held to their published definitions, on generated images (no data needed)."""

import numpy as np
import pytest
import torch

from mnistlab.data.catalog import MNIST_C_CORRUPTIONS
from mnistlab.errors import UnknownName
from mnistlab.robustness.corruptions import CORRUPTIONS, canny, corrupt

RANDOM = {"shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "rotate", "translate", "fog", "spatter",
          "dotted_line", "zigzag"}


def digits(n=12, seed=0):
    """Bright strokes on black, like MNIST: a box outline and a bar, moved around."""
    g = np.random.default_rng(seed)
    x = np.zeros((n, 28, 28), np.float32)
    for i in range(n):
        r, c = g.integers(6, 12, 2)
        x[i, r:r + 12, c] = x[i, r:r + 12, c + 8] = 1.0
        x[i, r, c:c + 9] = x[i, r + 11, c:c + 9] = 0.8
    return torch.from_numpy(x)


def test_the_fifteen_of_the_paper_in_the_catalogs_order():
    assert list(CORRUPTIONS) == list(MNIST_C_CORRUPTIONS) and len(CORRUPTIONS) == 15
    with pytest.raises(UnknownName, match="did you mean"):
        corrupt(digits(2), "shot_nois")


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_changes_images_within_range_and_repeats_under_its_seed(name):
    x = digits()
    y = corrupt(x, name, seed=3)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert float((y - x).abs().mean()) > 1e-3  # it did something
    assert torch.equal(y, corrupt(x, name, seed=3))
    if name in RANDOM:
        assert not torch.equal(y, corrupt(x, name, seed=4))


def test_brightness_stripe_and_scale_follow_their_formulas():
    x = digits()
    assert torch.allclose(corrupt(x, "brightness"), (x + 0.5).clamp(0, 1))
    s = corrupt(x, "stripe")
    assert torch.allclose(s[:, :, :7], 1 - x[:, :, :7]) and torch.allclose(s[:, :, 7:21], x[:, :, 7:21])
    assert torch.allclose(s[:, :, 21:], 1 - x[:, :, 21:])
    dot = torch.zeros(1, 28, 28)
    dot[0, 3, 3] = 1.0  # 10.5 px from the centre (13.5) on each axis: at 70% it lands 7.35 px from it, on (6.15, 6.15)
    scaled = corrupt(dot, "scale")[0]
    rows, cols = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    centre = ((scaled * rows).sum() / scaled.sum(), (scaled * cols).sum() / scaled.sum())
    assert abs(float(centre[0]) - 6.15) < 0.3 and abs(float(centre[1]) - 6.15) < 0.3


def test_translate_moves_every_digit_three_pixels_along_each_axis():
    x = digits(16)
    y = corrupt(x, "translate", seed=1)
    for a, b in zip(x, y):
        found = [(dr, dc) for dr in (-3, 3) for dc in (-3, 3) if torch.allclose(torch.roll(a, (dr, dc), (0, 1))[4:24, 4:24], b[4:24, 4:24])]
        assert len(found) == 1


def test_impulse_noise_flips_about_17_percent_of_pixels_to_black_or_white():
    x = torch.full((50, 28, 28), 0.5)
    y = corrupt(x, "impulse_noise")
    flipped = (y != 0.5).float().mean()
    assert 0.16 < float(flipped) < 0.18 and set(torch.unique(y).tolist()) == {0.0, 0.5, 1.0}


def test_dotted_line_leaves_every_other_pair_of_columns_alone():
    x = digits()
    y = corrupt(x, "dotted_line", seed=2)
    off = (torch.arange(28) // 2) % 2 == 0
    assert torch.equal(y[:, :, off], x[:, :, off]) and not torch.equal(y[:, :, ~off], x[:, :, ~off])


def test_canny_outlines_a_filled_square_and_leaves_its_inside_and_outside_dark():
    x = torch.zeros(1, 28, 28)
    x[0, 8:20, 8:20] = 1.0
    edges = canny(x)[0]
    assert set(torch.unique(edges).tolist()) == {0.0, 1.0}
    ring = torch.zeros(28, 28, dtype=torch.bool)
    ring[6:22, 6:22] = True
    ring[10:18, 10:18] = False
    assert bool(edges[~ring].eq(0).all())  # nothing far inside or outside
    assert all(bool(edges[r].any()) for r in range(9, 19)) and all(bool(edges[:, c].any()) for c in range(9, 19))


def test_corruptions_run_batch_by_batch_and_on_an_empty_batch():
    x = digits(10)
    assert corrupt(x, "fog", batch_size=4).shape == x.shape
    assert corrupt(torch.zeros(0, 28, 28), "zigzag").shape == (0, 28, 28)
