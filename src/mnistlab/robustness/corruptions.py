"""MNIST-C's 15 corruptions (Mu & Gilmer 2019, arXiv 1906.02337), written on tensors from the published definitions.

Each corruption takes a batch of images (N, 28, 28), floats in [0, 1], on any device, and a torch.Generator on that
device, and returns the corrupted batch in [0, 1]; the same seed gives the same images. The constants are the
severities the paper's dataset was made with (the default arguments of google-research/mnist-c's corruptions.py),
and the quirks of that code are kept where they change the images: glass blur's Gaussian runs down the columns only
(scikit-image read the 28x28 image's last axis as colour channels), a line's width is measured vertically, dotted
line's last column stays dark. Where the reference used a library (scikit-image's warps and Canny, ImageMagick's
motion blur), the operation is rebuilt here from that library's definition: bilinear warps with zeros outside,
one-sided Gaussian motion blur of width 21, Canny with sigma 1 and thresholds 0.1 and 0.2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SIZE = 28
CENTRE = 13.5  # the reference keeps pixel (13.5, 13.5) fixed under its affine maps


# ------------------------------------------------------------------------------------------------ helpers

def _uniform(shape, gen, lo=0.0, hi=1.0):
    return torch.rand(shape, generator=gen, device=gen.device) * (hi - lo) + lo


def _signs(n, gen):
    """+1 or -1 per image, each with probability one half."""
    return torch.where(torch.rand(n, generator=gen, device=gen.device) < 0.5, -1.0, 1.0)


def _gaussian_weights(sigma: float, device) -> torch.Tensor:
    """scipy.ndimage's Gaussian kernel: radius int(4 sigma + 0.5), normalised."""
    radius = int(4.0 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    w = torch.exp(-0.5 * (t / sigma) ** 2)
    return w / w.sum()


def gaussian(x: torch.Tensor, sigma: float, *, mode: str = "replicate", rows_only: bool = False) -> torch.Tensor:
    """A Gaussian blur of (N, H, W) images, separable; `mode` "replicate" is scikit-image's default 'nearest',
    "constant" pads with zeros. `rows_only`: blur along each column only (glass blur's reference)."""
    w = _gaussian_weights(sigma, x.device)
    r = len(w) // 2
    y = x.unsqueeze(1)
    pad = "replicate" if mode == "replicate" else "constant"
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode=pad), w.view(1, 1, -1, 1))
    if not rows_only:
        y = F.conv2d(F.pad(y, (r, r, 0, 0), mode=pad), w.view(1, 1, 1, -1))
    return y.squeeze(1)


def warp(x: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """scikit-image's warp(x, inverse_map=A), order 1, zeros outside: output pixel (col, row) takes the input at
    A @ (col, row, 1), bilinearly. `matrices`: (N, 2, 3), in pixel coordinates."""
    n = len(x)
    rows, cols = torch.meshgrid(torch.arange(SIZE, dtype=x.dtype, device=x.device),
                                torch.arange(SIZE, dtype=x.dtype, device=x.device), indexing="ij")
    points = torch.stack([cols, rows, torch.ones_like(cols)], -1).view(1, -1, 3)  # (1, H*W, 3)
    src = points @ matrices.transpose(1, 2)  # (N, H*W, 2): (col, row) in the input
    grid = (src / (SIZE - 1) * 2 - 1).view(n, SIZE, SIZE, 2)
    return F.grid_sample(x.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros", align_corners=True).squeeze(1)


def _about_centre(linear: torch.Tensor) -> torch.Tensor:
    """(N, 2, 2) linear maps as (N, 2, 3) affine ones that keep the image centre where it is."""
    shift = CENTRE * (1 - linear.sum(2, keepdim=True))  # t = c (1 - a1 - a2), per row
    return torch.cat([linear, shift], 2)


def line(c0, r0, c1, r1) -> torch.Tensor:
    """The reference's line_from_points, per image ((N,) tensors): a line through two points whose brightness falls
    with the *vertical* distance d as log(1 - d / 2.3) + 1, kept between columns floor(c0) and ceil(c1)."""
    dev = c0.device
    cc = torch.arange(SIZE, dtype=torch.float32, device=dev).view(1, 1, SIZE)
    rr = torch.arange(SIZE, dtype=torch.float32, device=dev).view(1, SIZE, 1)
    c0, r0, c1, r1 = (t.float().view(-1, 1, 1) for t in (c0, r0, c1, r1))
    flat = c1 == c0
    slope = (r1 - r0) / torch.where(flat, torch.ones_like(c1), c1 - c0)
    dist = (rr - (slope * (cc - c0) + r0)).abs().clamp(0, 2.3 - 1e-10)
    out = (torch.log(1 - dist / 2.3) + 1).clamp(0, 1)
    inside = (cc >= torch.floor(c0)) & (cc < torch.ceil(c1))
    return torch.where(inside & ~flat, out, torch.zeros_like(out))


# ---------------------------------------------------------------------------------------- the corruptions

def shot_noise(x, gen):
    c = 3.0  # severity 5: Poisson noise of a photon count of 3 at full white
    return (torch.poisson(x * c, generator=gen) / c).clamp(0, 1)


def impulse_noise(x, gen):
    amount = 0.17  # severity 4: salt and pepper on 17% of the pixels, half each
    flipped = torch.rand(x.shape, generator=gen, device=x.device) < amount
    salted = torch.rand(x.shape, generator=gen, device=x.device) < 0.5
    return torch.where(flipped, salted.to(x.dtype), x)


def glass_blur(x, gen):
    sigma, delta, iterations = 0.7, 1, 2  # severity 1
    y = torch.floor(gaussian(x, sigma, rows_only=True) * 255)  # np.uint8(...): truncated
    n, idx = len(y), torch.arange(len(y), device=x.device)
    for _ in range(iterations):  # swap each pixel with a neighbour, in the reference's order (a sequential process)
        for h in range(SIZE - delta, delta, -1):
            for w in range(SIZE - delta, delta, -1):
                swap = torch.rand(n, generator=gen, device=x.device) < 0.5
                dx, dy = torch.randint(-delta, delta, (2, n), generator=gen, device=x.device)
                a, b = y[:, h, w].clone(), y[idx, h + dy, w + dx].clone()
                y[:, h, w] = torch.where(swap, b, a)
                y[idx, h + dy, w + dx] = torch.where(swap, a, b)
    return gaussian(y / 255, sigma, rows_only=True).clamp(0, 1)


def motion_blur(x, gen):
    radius, sigma = 10, 3.0  # severity 1; ImageMagick's kernel: 2 radius + 1 taps of a one-sided Gaussian
    n, width = len(x), 2 * radius + 1
    angle = torch.deg2rad(_uniform(n, gen, -45.0, 45.0))
    taps = torch.arange(width, dtype=torch.float32, device=x.device)
    weights = torch.exp(-taps ** 2 / (2 * sigma ** 2))
    weights = weights / weights.sum()
    rows = torch.arange(SIZE, device=x.device).view(1, SIZE, 1)
    cols = torch.arange(SIZE, device=x.device).view(1, 1, SIZE)
    idx = torch.arange(n, device=x.device).view(n, 1, 1)
    out = torch.zeros_like(x)
    for i in range(width):  # each tap reads the image moved along the blur's direction, edges repeated
        ox = torch.ceil(i * torch.cos(angle) - 0.5).long().view(n, 1, 1)
        oy = torch.ceil(i * torch.sin(angle) - 0.5).long().view(n, 1, 1)
        out += weights[i] * x[idx, (rows + oy).clamp(0, SIZE - 1), (cols + ox).clamp(0, SIZE - 1)]
    return (torch.round(out * 255) / 255).clamp(0, 1)  # the reference read it back as 8-bit PNG


def shear(x, gen):
    c = 0.4 * _signs(len(x), gen)  # severity 2, either way; scikit-image's (0.14) shear angle in radians
    linear = torch.zeros(len(x), 2, 2, device=x.device)
    linear[:, 0, 0], linear[:, 0, 1], linear[:, 1, 1] = 1.0, -torch.sin(c), torch.cos(c)
    return warp(x, _about_centre(linear)).clamp(0, 1)


def scale(x, gen):
    s = 1 / 0.7  # severity 3: the digit shrunk to 70% about the centre
    linear = torch.tensor([[s, 0.0], [0.0, s]], device=x.device).expand(len(x), 2, 2)
    return warp(x, _about_centre(linear)).clamp(0, 1)


def rotate(x, gen):
    c = 0.4 * _signs(len(x), gen)  # severity 2: 0.4 rad (23 degrees), either way
    linear = torch.stack([torch.stack([torch.cos(c), -torch.sin(c)], 1), torch.stack([torch.sin(c), torch.cos(c)], 1)], 1)
    return warp(x, _about_centre(linear)).clamp(0, 1)


def translate(x, gen):
    n = len(x)
    shift = 3.0 * torch.stack([_signs(n, gen), _signs(n, gen)], 1)  # severity 3: 3 pixels along each axis, either way
    matrices = torch.zeros(n, 2, 3, device=x.device)
    matrices[:, 0, 0] = matrices[:, 1, 1] = 1.0
    matrices[:, :, 2] = shift
    return warp(x, matrices).clamp(0, 1)


def brightness(x, gen):
    # severity 5: HSV value + 0.5; a gray pixel's value is its gray level, so this is the whole of it
    return (x + 0.5).clamp(0, 1)


def stripe(x, gen):
    y = x.clone()
    y[:, :, :7] = 1 - y[:, :, :7]  # the outer quarters' columns inverted
    y[:, :, 21:] = 1 - y[:, :, 21:]
    return y


def plasma_fractal(n: int, gen, mapsize: int = 256, decay: float = 1.4) -> torch.Tensor:
    """The reference's diamond-square height maps, (n, mapsize, mapsize) in [0, 1] (its wibble enters squared)."""
    m = torch.zeros(n, mapsize, mapsize, device=gen.device)
    step, wibble = mapsize, 100.0

    def wibbled(a):
        return a / 4 + wibble * _uniform(a.shape, gen, -wibble, wibble)

    while step >= 2:
        half = step // 2
        corners = m[:, 0::step, 0::step]
        squares = corners + torch.roll(corners, -1, 1)
        squares = squares + torch.roll(squares, -1, 2)
        m[:, half::step, half::step] = wibbled(squares)
        down_right = m[:, half::step, half::step]
        up_left = m[:, 0::step, 0::step]
        m[:, 0::step, half::step] = wibbled(down_right + torch.roll(down_right, 1, 1) + up_left + torch.roll(up_left, -1, 2))
        m[:, half::step, 0::step] = wibbled(down_right + torch.roll(down_right, 1, 2) + up_left + torch.roll(up_left, -1, 1))
        step //= 2
        wibble /= decay
    flat = m.view(n, -1)
    lo, hi = flat.min(1).values.view(n, 1, 1), flat.max(1).values.view(n, 1, 1)
    return (m - lo) / (hi - lo)


def fog(x, gen):
    strength, decay = 3.0, 1.4  # severity 5
    top = x.flatten(1).max(1).values.view(-1, 1, 1)
    clouds = torch.cat([plasma_fractal(len(part), gen, decay=decay)[:, :SIZE, :SIZE] for part in x.split(256)])
    return ((x + strength * clouds) * top / (top + strength)).clamp(0, 1)


def spatter(x, gen):
    loc, spread, blur, threshold, mask_blur = 0.65, 0.3, 1.0, 0.65, 1.5  # severity 4
    liquid = gaussian(torch.randn(x.shape, generator=gen, device=x.device) * spread + loc, blur)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    mask = gaussian((liquid > threshold).to(x.dtype), mask_blur)
    mask = torch.where(mask < 0.8, torch.zeros_like(mask), mask)
    return (x * (1 - mask) + 63 / 255 * mask).clamp(0, 1)  # mud the colour 63


def dotted_line(x, gen):
    n = len(x)
    r0, r1 = torch.randint(0, 27, (2, n), generator=gen, device=x.device)
    streak = line(torch.zeros(n, device=x.device), r0, torch.full((n,), 27.0, device=x.device), r1)
    on = (torch.arange(SIZE, device=x.device) // 2) % 2 == 1  # columns 2-3, 6-7, ... kept, the rest dark
    return (x + streak * on).clamp(0, 1)


def zigzag(x, gen):
    n, a, b, c0, c1 = len(x), 2.0, 2.0, 2.0, 25.0  # a, b: length and height of each zig
    r0 = torch.randint(0, 27, (n,), generator=gen, device=x.device).float()
    r1 = r0 + torch.randint(-5, 5, (n,), generator=gen, device=x.device).float()
    theta = torch.atan((r1 - r0) / (c1 - c0))
    d = (c1 - c0) / torch.cos(theta)  # the straight line's length: 23 to 23.5, so always six zigs and an end
    zigs = int((23.0 - a) // (2 * a)) + 1
    along = [torch.zeros(n, device=x.device)] + [torch.full((n,), (2 * i + 1) * a, device=x.device) for i in range(zigs)]
    across = [torch.zeros(n, device=x.device)] + [torch.full((n,), (-1) ** i * b, device=x.device) for i in range(zigs)]
    last = (2 * a) * torch.floor(d / (2 * a))
    along.append(d)
    across.append(across[-1] / (2 * (d - last)))
    u, v = torch.stack(along), torch.stack(across)  # (points, N), then turned by theta and moved to (c0, r0)
    cs = torch.cos(theta) * u - torch.sin(theta) * v + c0
    rs = torch.sin(theta) * u + torch.cos(theta) * v + r0
    strokes = sum(line(cs[i - 1], rs[i - 1], cs[i], rs[i]) for i in range(1, len(u)))
    return (x + strokes).clamp(0, 1)


def _sobel(x, axis: int) -> torch.Tensor:
    """scipy.ndimage.sobel (edges reflected): the derivative along `axis` (0 rows, 1 columns), smoothed across it."""
    y = F.pad(x.unsqueeze(1), (1, 1, 1, 1), mode="replicate")
    deriv = torch.tensor([-1.0, 0.0, 1.0], device=x.device)
    smooth = torch.tensor([1.0, 2.0, 1.0], device=x.device)
    kernel = (deriv.view(3, 1) * smooth.view(1, 3)) if axis == 0 else (smooth.view(3, 1) * deriv.view(1, 3))
    return F.conv2d(y, kernel.view(1, 1, 3, 3)).squeeze(1)


def canny(x: torch.Tensor, sigma: float = 1.0, low: float = 0.1, high: float = 0.2) -> torch.Tensor:
    """scikit-image's Canny edge detector, batched: Gaussian smoothing (zeros outside, renormalised at the edges),
    Sobel gradients, non-maximum suppression interpolated in four sectors, hysteresis by 8-connected growth."""
    smoothed = gaussian(x, sigma, mode="constant") / gaussian(torch.ones_like(x[:1]), sigma, mode="constant")
    gi, gj = _sobel(smoothed, 0), _sobel(smoothed, 1)  # along rows, along columns
    ai, aj = gi.abs(), gj.abs()
    mag = torch.hypot(gi, gj)
    padded = F.pad(mag, (1, 1, 1, 1))

    def at(dr, dc):  # the magnitude of the neighbour (row + dr, col + dc)
        return padded[:, 1 + dr:1 + dr + SIZE, 1 + dc:1 + dc + SIZE]

    interior = torch.zeros_like(x, dtype=torch.bool)
    interior[:, 1:-1, 1:-1] = True
    maxima = torch.zeros_like(interior)
    sectors = (  # (points of the sector, weight, the neighbours one way, the other way), in the reference's order
        (((gi >= 0) & (gj >= 0) | (gi <= 0) & (gj <= 0)) & (ai >= aj), aj / ai, ((1, 0), (1, 1)), ((-1, 0), (-1, -1))),
        (((gi >= 0) & (gj >= 0) | (gi <= 0) & (gj <= 0)) & (ai <= aj), ai / aj, ((0, 1), (1, 1)), ((0, -1), (-1, -1))),
        (((gi <= 0) & (gj >= 0) | (gi >= 0) & (gj <= 0)) & (ai <= aj), ai / aj, ((0, 1), (-1, 1)), ((0, -1), (1, -1))),
        (((gi <= 0) & (gj >= 0) | (gi >= 0) & (gj <= 0)) & (ai >= aj), aj / ai, ((-1, 0), (-1, 1)), ((1, 0), (1, -1))),
    )
    for points, w, plus, minus in sectors:
        points = points & interior
        beats = [at(*near) * (1 - w) + at(*far) * w <= mag for near, far in (plus, minus)]
        maxima = torch.where(points, beats[0] & beats[1], maxima)  # NaN weights (no gradient) compare False
    strong, weak = maxima & (mag >= high), maxima & (mag >= low)
    edges = strong
    while True:  # grow the strong edges through the weak ones, 8-connected, until nothing changes
        grown = weak & (F.max_pool2d(edges.unsqueeze(1).float(), 3, 1, 1).squeeze(1) > 0)
        if torch.equal(grown, edges):
            return edges.to(x.dtype)
        edges = grown


def canny_edges(x, gen):
    return canny(x)


CORRUPTIONS = {f.__name__: f for f in (shot_noise, impulse_noise, glass_blur, motion_blur, shear, scale, rotate,
                                       brightness, translate, stripe, fog, spatter, dotted_line, zigzag, canny_edges)}


def corrupt(images: torch.Tensor, name: str, seed: int = 0, batch_size: int = 2000) -> torch.Tensor:
    """`images` (N, 28, 28) in [0, 1] with one corruption, batch by batch on their device; a pure function of
    (images, name, seed)."""
    from mnistlab.errors import UnknownName

    if name not in CORRUPTIONS:
        raise UnknownName("corruption", name, CORRUPTIONS)
    gen = torch.Generator(device=images.device).manual_seed(seed * 1000 + list(CORRUPTIONS).index(name))
    fn = CORRUPTIONS[name]
    return torch.cat([fn(part.float(), gen) for part in images.split(batch_size)]) if len(images) else images.float()

