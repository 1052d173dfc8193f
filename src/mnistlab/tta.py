"""Test-time augmentation: a net's logits averaged over a few slightly moved copies of each image.

The views are one-pixel shifts (and, for `shift-rotate`, two small rotations), and for clothes the
left-right mirror of each (`flip`, `shift-flip`): a mirrored shirt is a shirt, but a mirrored 2 is no digit,
so the mirrors are for Fashion-MNIST, never for digits or letters (as the `flip` augmentation). The views are
made with padding, slicing, a flip and one affine grid, so the averaged net is an ordinary module: evaluation,
`Run.predict_proba` (hence the API, the pad and ensembles) and the exports all compute the same thing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mnistlab.errors import UnknownName

SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))  # (dy, dx) in pixels
ROTATIONS = (-8.0, 8.0)  # degrees
# the views' shifts; the rotations and the mirrors are added by name
TTA = {"none": ((0, 0),), "shift": SHIFTS, "shift-rotate": SHIFTS, "flip": ((0, 0),), "shift-flip": SHIFTS}


def check_tta(name: str) -> str:
    if name not in TTA:
        raise UnknownName("test-time augmentation", name, TTA)
    return name


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Images (N, C, H, W) moved by one pixel at most down (dy) and right (dx), the edge filled with zeros."""
    h, w = x.shape[-2:]
    return F.pad(x, (1, 1, 1, 1))[:, :, 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]


def turned(x: torch.Tensor, degrees: float, scale: float = 1.0) -> torch.Tensor:
    """Images (N, C, H, W) rotated about their centre (and shrunk by `scale` > 1, enlarged by < 1): one affine grid."""
    n, c, h, w = x.shape
    cos, sin = scale * math.cos(math.radians(degrees)), scale * math.sin(math.radians(degrees))
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device).expand(n, 2, 3)
    return F.grid_sample(x, F.affine_grid(theta, [n, c, h, w], align_corners=False), align_corners=False)


class Views(torch.nn.Module):
    """The mean of `inner`'s logits over the views of a test-time augmentation."""

    def __init__(self, inner: torch.nn.Module, name: str):
        super().__init__()
        self.inner, self.shifts = inner, TTA[check_tta(name)]
        self.angles = ROTATIONS if name == "shift-rotate" else ()
        self.mirror = name.endswith("flip")

    def forward(self, x):
        views = [shifted(x, dy, dx) for dy, dx in self.shifts] + [turned(x, degrees) for degrees in self.angles]
        if self.mirror:
            views += [v.flip(-1) for v in views]
        total = sum(self.inner(v.contiguous(memory_format=torch.channels_last)).float() for v in views)  # one at a time: the memory of one batch
        return total / len(views)


def with_tta(net: torch.nn.Module, name: str | None) -> torch.nn.Module:
    """`net` itself for no test-time augmentation, else the averaged net."""
    return net if check_tta(name or "none") == "none" else Views(net, name).eval()
