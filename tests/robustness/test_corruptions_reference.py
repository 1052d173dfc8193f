"""The corruptions that BENCHMARKS.md says agree with the reference's library, held to it: scikit-image (which
google-research/mnist-c called) computes each on real MNIST digits independently of mnistlab's tensor code."""

import numpy as np
import pytest
import torch
from benchmarks.corruptions_check import ours, reference

import mnistlab

# the largest pixel difference each may show (pixels in [0, 1]); float32 against scikit-image's float64
TOLERANCE = {"scale": 1e-5, "rotate": 1e-5, "shear": 1e-5, "translate": 1e-5, "gaussian_rows": 1e-5,
             "brightness": 1e-6, "stripe": 1e-6, "canny_edges": 0.0}


@pytest.fixture(scope="module")
def both(real_home):
    x = mnistlab.load_dataset("mnist", "test", data_dir=real_home).images[:200].astype(np.float32) / 255
    return ours(torch.from_numpy(x)), reference(x)


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(TOLERANCE))
def test_the_corruption_agrees_with_scikit_image_on_real_digits(both, name):
    mine, theirs = both
    diff = np.abs(mine[name] - theirs[name])
    assert diff.max() <= TOLERANCE[name], f"{name}: largest difference {diff.max():.2e}"
    assert theirs[name].std() > 0.05, "the reference changed something: a comparison of blanks proves nothing"
