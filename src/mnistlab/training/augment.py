"""Batched data augmentation on tensors: rotation, shift, scale, shear, mirror, elastic distortion, erasing,
and the label-mixing kinds (mixup, cutmix), which return a second label and its weight.

One random draw, one affine grid per batch (plus an optional smooth displacement field, upsampled from a
few random knots) and one `grid_sample`, all on the images' device: no per-image Python work and no
copy from the host. All randomness comes from a `torch.Generator`, so a seed reproduces it.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from mnistlab.vocabulary import Augment, parse_augment  # noqa: F401  (parse_augment: training's name for it)

# columns of the one random draw per batch: every per-image number the augmentation needs
_ANGLE, _SHEAR, _ZOOM, _TX, _TY, _ELASTIC, _ERASE, _EH, _EW, _EY, _EX = range(11)


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


@functools.cache
def _elastic_field_shape(h: int, w: int, sigma: float) -> tuple[int, int, float]:
    """Knots of the low-resolution noise, and the gain that gives the upsampled field the spread of
    Simard et al.'s field (uniform noise smoothed by a Gaussian of `sigma` pixels) before alpha.

    The smoothed field's correlation length is about 2 sigma, so one knot per 2 sigma pixels, upsampled
    bicubically, has the same smoothness at a fraction of the cost: no convolution, and random numbers
    for a few dozen knots per image instead of every pixel."""
    kh, kw = max(2, math.ceil(h / (2 * sigma)) + 1), max(2, math.ceil(w / (2 * sigma)) + 1)
    k = _gaussian_kernel(sigma)
    target = (1 / math.sqrt(3)) * float((k ** 2).sum())  # std of uniform(-1, 1) noise after the 2-D kernel
    gen = torch.Generator().manual_seed(0)  # a fixed sample: the gain is a property of the shapes, not of a run
    knots = torch.rand(256, 1, kh, kw, generator=gen, dtype=torch.float64) * 2 - 1
    up = F.interpolate(knots, size=(h, w), mode="bicubic", align_corners=True)
    return kh, kw, target / float(up.std())


def augment_batch(x: torch.Tensor, aug: Augment, gen: torch.Generator | None = None) -> torch.Tensor:
    """Return an augmented copy of `x` (N, C, H, W), float, background 0.

    Everything runs on x's device in a fixed number of batched operations whatever N is, with no
    copy from the host, so on a GPU it fits inside a captured CUDA graph."""
    if not aug.active:
        return x
    n, _, h, w = x.shape
    dev, dt = x.device, x.dtype
    # every per-image number in one draw from `gen` (which must live on x's device; None: the device's
    # default generator, as inside a captured CUDA graph)
    u = torch.rand(n, 11, generator=gen, device=dev)
    r = u * 2 - 1

    angle = r[:, _ANGLE] * math.radians(aug.rotate)
    shear = r[:, _SHEAR] * math.radians(aug.shear)
    zoom = 1 + r[:, _ZOOM] * aug.scale
    tx, ty = r[:, _TX] * (2 * aug.shift), r[:, _TY] * (2 * aug.shift)  # grid coordinates span 2 units
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    # a mirror negates the output's x: the first column of the sampling matrix (drawn apart, and only when
    # asked for, so the other settings' random numbers stay what they were)
    mirror = (1 - 2 * (torch.rand(n, generator=gen, device=dev) < aug.flip).float()) if aug.flip > 0 else torch.ones(n, device=dev)
    # sampling grid = inverse transform: rotate, shear along x, then scale; one grid for all of them
    theta = torch.stack([
        torch.stack([mirror * cos / zoom, (-sin + tan * cos) / zoom, tx], 1),
        torch.stack([mirror * sin / zoom, (cos + tan * sin) / zoom, ty], 1),
    ], 1).to(dt)
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    if aug.elastic > 0:
        kh, kw, gain = _elastic_field_shape(h, w, aug.elastic_sigma)
        knots = torch.rand(n, 2, kh, kw, generator=gen, device=dev, dtype=dt) * 2 - 1
        field = F.interpolate(knots, size=(h, w), mode="bicubic", align_corners=True)
        chosen = (u[:, _ELASTIC] < aug.elastic).to(dt).view(n, 1, 1, 1)
        # pixels -> grid units (x then y); alpha scales the field as in Simard et al.
        scale = torch.stack([field[:, 0] * (2 / w), field[:, 1] * (2 / h)], -1)
        grid = grid + scale * (aug.elastic_alpha * gain) * chosen
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if aug.erase > 0:
        eh, ew = (u[:, _EH] * 0.3 + 0.1) * h, (u[:, _EW] * 0.3 + 0.1) * w  # 10% .. 40% of the side
        y0, x0 = u[:, _EY] * (h - eh), u[:, _EX] * (w - ew)
        ys = torch.arange(h, device=dev).view(1, h, 1)
        xs = torch.arange(w, device=dev).view(1, 1, w)
        mask = ((ys >= y0.view(-1, 1, 1)) & (ys < (y0 + eh).view(-1, 1, 1)) & (xs >= x0.view(-1, 1, 1))
                & (xs < (x0 + ew).view(-1, 1, 1)) & (u[:, _ERASE] < aug.erase).view(-1, 1, 1))
        out = out.masked_fill(mask.unsqueeze(1), 0.0)
    return _other_pens(out, aug, gen)


def _other_pens(x: torch.Tensor, aug: Augment, gen: torch.Generator | None) -> torch.Tensor:
    """Strokes thicker or thinner by a pixel (grey-level dilation or erosion: a 3x3 max of the ink, or of the
    paper), low-resolution scans (down to one side length per batch, 7 to 14 px, by area, then up to 28 by nearest
    neighbour), and a marker's strokes (two pixels thicker). Drawn apart, and only when asked for, so the other
    settings' random numbers stay."""
    n, dev = len(x), x.device
    if aug.stroke > 0:
        u = torch.rand(n, 2, generator=gen, device=dev)
        thick = F.max_pool2d(x, 3, stride=1, padding=1)
        thin = -F.max_pool2d(-x, 3, stride=1, padding=1)
        pen = torch.where((u[:, 1] < 2 / 3).view(n, 1, 1, 1), thick, thin)
        x = torch.where((u[:, 0] < aug.stroke).view(n, 1, 1, 1), pen, x)
    if aug.blocky > 0:
        u = torch.rand(n + 1, generator=gen, device=dev)
        side = 7 + int(u[-1].item() * 8) if dev.type != "cuda" else 10  # one size per batch (a fixed one inside a CUDA graph)
        low = F.interpolate(F.adaptive_avg_pool2d(x, side), size=x.shape[-2:], mode="nearest")
        x = torch.where((u[:n] < aug.blocky).view(n, 1, 1, 1), low, x)
    if aug.marker > 0:  # a 5x5 dilation: two pixels more ink on every side
        u = torch.rand(n, generator=gen, device=dev)
        x = torch.where((u < aug.marker).view(n, 1, 1, 1), F.max_pool2d(x, 5, stride=1, padding=2), x)
    return x


def mix_batch(x: torch.Tensor, y: torch.Tensor, aug: Augment, gen: torch.Generator | None = None):
    """Mixup and cutmix within a batch: image i is mixed with image i-1 (the batch is already shuffled).

    Returns (images, second labels, weight of the first label per image): the loss is
    w * CE(y) + (1 - w) * CE(y2). The mixing weight is uniform in (0, 1) (Beta(1, 1), as in cutmix's paper);
    a cutmix image's weight is the share of its own pixels left. Images not chosen keep weight 1."""
    n, _, h, w = x.shape
    dev, dt = x.device, x.dtype
    u = torch.rand(n, 5, generator=gen, device=dev)
    other, y2 = x.roll(1, 0), y.roll(1, 0)
    lam = u[:, 1]
    use_cut = u[:, 0] < aug.cutmix
    use_mix = ~use_cut & (u[:, 0] < aug.cutmix + aug.mixup * (1 - aug.cutmix))
    # cutmix: a box of (1 - lam) of the area, centred anywhere, clipped at the border
    side = torch.sqrt(1 - lam)
    cy, cx = u[:, 2] * h, u[:, 3] * w
    y0, y1 = (cy - side * h / 2).clamp(0, h), (cy + side * h / 2).clamp(0, h)
    x0, x1 = (cx - side * w / 2).clamp(0, w), (cx + side * w / 2).clamp(0, w)
    ys = torch.arange(h, device=dev, dtype=dt).view(1, h, 1) + 0.5
    xs = torch.arange(w, device=dev, dtype=dt).view(1, 1, w) + 0.5
    box = ((ys >= y0.view(-1, 1, 1)) & (ys < y1.view(-1, 1, 1)) & (xs >= x0.view(-1, 1, 1)) & (xs < x1.view(-1, 1, 1))
           & use_cut.view(-1, 1, 1)).unsqueeze(1)
    cut_weight = 1 - box.flatten(1).float().mean(1)
    mix_weight = torch.where(use_mix, lam, torch.ones_like(lam)).to(dt)
    out = torch.where(box, other, x)
    out = out * mix_weight.view(-1, 1, 1, 1) + other * (1 - mix_weight).view(-1, 1, 1, 1)
    weight = torch.where(use_cut, cut_weight, mix_weight)
    return out, y2, weight


def augment_uint8(images, aug: Augment, seed: int = 0):
    """Augmented copies of uint8 images (N, 28, 28), as uint8: for looking at what a setting does."""
    import numpy as np

    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / 255).unsqueeze(1)
    out = augment_batch(x, aug, torch.Generator().manual_seed(seed))
    return (out.squeeze(1).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
