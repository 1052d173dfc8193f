"""Batched data augmentation on tensors: rotation, shift, scale, shear, elastic distortion, erasing.

One affine grid per batch (plus an optional smooth displacement field) and one `grid_sample`:
no per-image Python work. All randomness comes from a `torch.Generator`, so a seed reproduces it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F

from mnistlab.errors import InvalidArgument


@dataclass(frozen=True)
class Augment:
    rotate: float = 0.0  # max rotation, degrees either way
    shift: float = 0.0  # max translation, fraction of the image size
    scale: float = 0.0  # max zoom in or out, fraction (0.1: 0.9x .. 1.1x)
    shear: float = 0.0  # max shear, degrees
    elastic: float = 0.0  # probability that an image also gets an elastic distortion (Simard et al. 2003)
    elastic_alpha: float = 34.0  # displacement strength in pixels, before smoothing
    elastic_sigma: float = 4.0  # smoothness of the displacement field, pixels
    erase: float = 0.0  # probability of erasing one random rectangle (Zhong et al. 2017)

    @property
    def active(self) -> bool:
        return any((self.rotate, self.shift, self.scale, self.shear, self.elastic, self.erase))


PRESETS = {
    "none": Augment(),
    "light": Augment(rotate=10, shift=0.1, scale=0.1),
    "strong": Augment(rotate=12, shift=0.12, scale=0.15, shear=10, elastic=0.5, erase=0.1),
}


def parse_augment(text: str | Augment | None) -> Augment:
    """'none', 'light', 'strong', or KEY=VAL,... optionally after a preset: 'light,elastic=0.3'."""
    if isinstance(text, Augment):
        return text
    aug = PRESETS["none"]
    known = {f.name for f in fields(Augment)}
    for part in filter(None, (p.strip() for p in (text or "none").split(","))):
        if "=" not in part:
            if part not in PRESETS:
                raise InvalidArgument(f"unknown augmentation preset {part!r}; use none, light, strong or KEY=VAL,...")
            aug = PRESETS[part]
            continue
        key, _, val = part.partition("=")
        key = key.strip().replace("-", "_")
        if key not in known:
            raise InvalidArgument(f"unknown augmentation setting {key!r}; known: {', '.join(sorted(known))}")
        try:
            value = float(val)
        except ValueError:
            raise InvalidArgument(f"augmentation setting {key}={val!r} is not a number") from None
        if value < 0 or (key in ("elastic", "erase") and value > 1):
            raise InvalidArgument(f"augmentation setting {key}={value} is out of range")
        aug = replace(aug, **{key: value})
    return aug


def describe(aug: Augment) -> dict:
    return asdict(aug)


def _gaussian_kernel(sigma: float, device) -> torch.Tensor:
    radius = max(1, int(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def augment_batch(x: torch.Tensor, aug: Augment, gen: torch.Generator) -> torch.Tensor:
    """Return an augmented copy of `x` (N, C, H, W), float, background 0."""
    if not aug.active:
        return x
    n, _, h, w = x.shape
    dev = x.device

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(n, generator=gen) * 2 - 1) * limit

    angle = uniform(math.radians(aug.rotate))
    shear = uniform(math.radians(aug.shear))
    zoom = 1 + uniform(aug.scale)
    tx, ty = uniform(2 * aug.shift), uniform(2 * aug.shift)  # grid coordinates span 2 units
    cos, sin = torch.cos(angle), torch.sin(angle)
    # sampling grid = inverse transform: rotate, shear along x, then scale
    theta = torch.stack([
        torch.stack([cos / zoom, (-sin + torch.tan(shear) * cos) / zoom, tx], 1),
        torch.stack([sin / zoom, (cos + torch.tan(shear) * sin) / zoom, ty], 1),
    ], 1).to(dev, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if aug.elastic > 0:
        chosen = (torch.rand(n, generator=gen) < aug.elastic).to(dev)
        field = (torch.rand(n, 2, h, w, generator=gen) * 2 - 1).to(dev, x.dtype)
        k = _gaussian_kernel(aug.elastic_sigma, dev).to(x.dtype)
        pad = k.numel() // 2
        field = F.conv2d(F.pad(field.reshape(-1, 1, h, w), (pad, pad, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
        field = F.conv2d(F.pad(field, (0, 0, pad, pad), mode="reflect"), k.view(1, 1, -1, 1)).reshape(n, 2, h, w)
        # pixels -> grid units; the smoothing shrinks the field, alpha restores its scale as in Simard et al.
        disp = field.permute(0, 2, 3, 1) * aug.elastic_alpha * torch.tensor([2 / w, 2 / h], device=dev, dtype=x.dtype)
        grid = grid + disp * chosen.view(n, 1, 1, 1).to(x.dtype)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if aug.erase > 0:
        chosen = torch.rand(n, generator=gen) < aug.erase
        eh = (torch.rand(n, generator=gen) * 0.3 + 0.1) * h  # 10% .. 40% of the side
        ew = (torch.rand(n, generator=gen) * 0.3 + 0.1) * w
        y0 = torch.rand(n, generator=gen) * (h - eh)
        x0 = torch.rand(n, generator=gen) * (w - ew)
        ys = torch.arange(h).view(1, h, 1)
        xs = torch.arange(w).view(1, 1, w)
        mask = ((ys >= y0.view(-1, 1, 1)) & (ys < (y0 + eh).view(-1, 1, 1)) & (xs >= x0.view(-1, 1, 1))
                & (xs < (x0 + ew).view(-1, 1, 1)) & chosen.view(-1, 1, 1))
        out = out.masked_fill(mask.unsqueeze(1).to(dev), 0.0)
    return out


def augment_uint8(images, aug: Augment, seed: int = 0):
    """Augmented copies of uint8 images (N, 28, 28), as uint8: for looking at what a setting does."""
    import numpy as np

    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / 255).unsqueeze(1)
    out = augment_batch(x, aug, torch.Generator().manual_seed(seed))
    return (out.squeeze(1).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
