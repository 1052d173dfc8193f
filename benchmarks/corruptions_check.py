"""How close mnistlab's MNIST-C corruptions (tensors) come to the reference code's libraries, pixel by pixel.

The reference (google-research/mnist-c) made its images with scikit-image (warps, Gaussian, Canny); this script feeds
the first N MNIST test digits to both with the same parameters where a corruption is deterministic given them
(scale; rotate, shear and translate with the sign fixed; canny edges; brightness; stripe; glass blur's Gaussian) and
prints the mean and largest absolute pixel difference (pixels in [0, 1]) and, for Canny, the share of pixels that
differ. scikit-image is a test dependency (`pip install -e '.[test]'`), not one of mnistlab's;
tests/robustness/test_corruptions_reference.py holds the same comparison to its tolerances.

    .venv/bin/python benchmarks/corruptions_check.py [--images 1000]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from mnistlab.data import load_dataset
from mnistlab.robustness import corruptions as C


def reference(x: np.ndarray) -> dict:
    """The same operations through scikit-image, as google-research/mnist-c calls it (x: N x 28 x 28 in [0, 1])."""
    from skimage import feature, transform
    from skimage.filters import gaussian

    def about_centre(m):
        a = transform.AffineTransform(matrix=np.vstack([np.hstack([m, (13.5 * (1 - m.sum(1)))[:, None]]), [0, 0, 1]]))
        return np.stack([np.clip(transform.warp(i, inverse_map=a), 0, 1) for i in x])

    c, s = np.cos(0.4), np.sin(0.4)
    shift = transform.AffineTransform(translation=[3, -3])
    return {"scale": about_centre(np.eye(2) / 0.7), "rotate": about_centre(np.array([[c, -s], [s, c]])),
            "shear": about_centre(np.array([[1, -np.sin(0.4)], [0, np.cos(0.4)]])),
            "translate": np.stack([np.clip(transform.warp(i, inverse_map=shift), 0, 1) for i in x]),
            "canny_edges": np.stack([feature.canny(i).astype(np.float32) for i in x]),
            # the reference's quirk: a 2-D image's last axis read as channels, so the Gaussian runs down the columns
            "gaussian_rows": np.stack([gaussian(i, sigma=0.7, channel_axis=-1) for i in x]),
            "brightness": np.clip(x + 0.5, 0, 1),
            "stripe": np.concatenate([1 - x[:, :, :7], x[:, :, 7:21], 1 - x[:, :, 21:]], 2)}


def ours(x: torch.Tensor) -> dict:
    n = len(x)
    c, s = torch.cos(torch.tensor(0.4)), torch.sin(torch.tensor(0.4))
    fixed = {"scale": torch.eye(2) / 0.7, "rotate": torch.tensor([[c, -s], [s, c]]), "shear": torch.tensor([[1, -s], [0, c]])}
    out = {k: C.warp(x, C._about_centre(m.expand(n, 2, 2))).clamp(0, 1) for k, m in fixed.items()}
    move = torch.zeros(n, 2, 3)
    move[:, 0, 0] = move[:, 1, 1] = 1.0
    move[:, :, 2] = torch.tensor([3.0, -3.0])
    out["translate"] = C.warp(x, move).clamp(0, 1)
    out["canny_edges"] = C.canny(x)
    out["gaussian_rows"] = C.gaussian(x, 0.7, rows_only=True)
    out["brightness"] = C.brightness(x, None)
    out["stripe"] = C.stripe(x, None)
    return {k: v.numpy() for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    args = ap.parse_args()
    import skimage

    x = load_dataset("mnist", "test").images[:args.images].astype(np.float32) / 255
    ref = reference(x)
    mine = ours(torch.from_numpy(x))
    print(f"scikit-image {skimage.__version__}, first {len(x):,} MNIST test digits, pixels in [0, 1]")
    print("| operation | mean abs difference | largest | pixels that differ by > 1/255 |")
    print("| --- | ---: | ---: | ---: |")
    for name, theirs in ref.items():
        d = np.abs(mine[name] - theirs)
        print(f"| {name} | {d.mean():.2e} | {d.max():.3f} | {(d > 1 / 255).mean():.3%} |")


if __name__ == "__main__":
    sys.exit(main())
