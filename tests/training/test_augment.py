"""Batched augmentation: reproducible under a seed, and each transform's statistics are those its
setting promises (measured on synthetic images whose geometry is known exactly)."""

import math

import pytest
import torch
import torch.nn.functional as F

from mnistlab.errors import InvalidArgument
from mnistlab.training.augment import Augment, _gaussian_kernel, augment_batch, augment_uint8, parse_augment

N = 2000


def blob(n: int = N, size: int = 28, radius: float = 3.0) -> torch.Tensor:
    """A round blob of ink at the centre: its centre of mass shows any shift exactly."""
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    img = torch.exp(-(((ys - size / 2) ** 2 + (xs - size / 2) ** 2) / (2 * radius ** 2)))
    return img.expand(n, 1, size, size).clone()


def bar(n: int = N, size: int = 28) -> torch.Tensor:
    """A horizontal bar through the centre: its second moments show any rotation."""
    img = torch.zeros(size, size)
    img[13:15, 4:24] = 1
    return img.expand(n, 1, size, size).clone()


def centre_of_mass(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    size = x.shape[-1]
    grid = torch.arange(size, dtype=x.dtype) + 0.5
    m = x.sum((1, 2, 3))
    return (x.sum((1, 3)) * grid).sum(1) / m, (x.sum((1, 2)) * grid).sum(1) / m


def orientation(x: torch.Tensor) -> torch.Tensor:
    """Angle of the principal axis of each image's ink, in degrees (0: horizontal)."""
    size = x.shape[-1]
    ys, xs = torch.meshgrid(torch.arange(size, dtype=x.dtype), torch.arange(size, dtype=x.dtype), indexing="ij")
    w = x[:, 0]
    m = w.sum((1, 2))
    cy, cx = (w * ys).sum((1, 2)) / m, (w * xs).sum((1, 2)) / m
    dy, dx = ys - cy.view(-1, 1, 1), xs - cx.view(-1, 1, 1)
    mxx, myy, mxy = (w * dx * dx).sum((1, 2)), (w * dy * dy).sum((1, 2)), (w * dx * dy).sum((1, 2))
    return torch.rad2deg(0.5 * torch.atan2(2 * mxy, mxx - myy))


def test_same_seed_same_images_other_seed_other_images():
    x = bar(64)
    aug = parse_augment("strong")
    a = augment_batch(x, aug, torch.Generator().manual_seed(1))
    b = augment_batch(x, aug, torch.Generator().manual_seed(1))
    c = augment_batch(x, aug, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (augment_uint8((x[:8, 0] * 255).byte().numpy(), aug, seed=3) == augment_uint8((x[:8, 0] * 255).byte().numpy(), aug, seed=3)).all()


def test_no_augmentation_is_the_identity():
    x = bar(4)
    assert augment_batch(x, parse_augment("none"), torch.Generator()) is x


def test_shift_moves_the_centre_uniformly_within_its_range():
    out = augment_batch(blob(), Augment(shift=0.1), torch.Generator().manual_seed(0))
    cy, cx = centre_of_mass(out)
    limit = 0.1 * 28  # pixels either way
    for c in (cx - 14, cy - 14):
        assert c.abs().max() <= limit + 0.05
        assert abs(float(c.mean())) < 0.1
        assert abs(float(c.std()) - limit / math.sqrt(3)) < 0.08 * limit  # uniform on [-limit, limit]


def test_rotation_turns_the_bar_uniformly_within_its_range():
    out = augment_batch(bar(), Augment(rotate=12), torch.Generator().manual_seed(0))
    angles = orientation(out)
    assert angles.abs().max() <= 12.5
    assert abs(float(angles.mean())) < 0.4
    assert abs(float(angles.std()) - 12 / math.sqrt(3)) < 0.5  # uniform on [-12, 12] degrees


def test_scale_changes_the_size_within_its_range():
    x = blob(radius=4)
    out = augment_batch(x, Augment(scale=0.15), torch.Generator().manual_seed(0))
    ratio = (out.sum((1, 2, 3)) / x.sum((1, 2, 3))).sqrt()  # area grows with the square of the zoom
    assert 0.84 <= float(ratio.min()) and float(ratio.max()) <= 1.16
    assert abs(float(ratio.mean()) - 1) < 0.01 and float(ratio.std()) > 0.07


def _simard_displacement_rms(alpha: float, sigma: float, n: int = 64, size: int = 28) -> float:
    """Simard et al.'s field (uniform noise smoothed by a Gaussian), the definition the fast field imitates."""
    g = torch.Generator().manual_seed(0)
    field = torch.rand(n * 2, 1, size, size, generator=g, dtype=torch.float64) * 2 - 1
    k = _gaussian_kernel(sigma)
    pad = k.numel() // 2
    field = F.conv2d(F.pad(field, (pad, pad, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    field = F.conv2d(F.pad(field, (0, 0, pad, pad), mode="reflect"), k.view(1, 1, -1, 1))
    return float((field * alpha).pow(2).mean().sqrt())


def test_elastic_field_has_the_strength_of_simard_et_al():
    # The displacement itself, read off a sampling of the coordinate images: x and y positions as ink
    size, n = 28, 256
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    coords = torch.stack([xs, ys]).expand(n, 2, size, size).clone()
    aug = Augment(elastic=1.0, elastic_alpha=34, elastic_sigma=4)
    moved = augment_batch(coords, aug, torch.Generator().manual_seed(0))
    inner = (slice(None), slice(None), slice(6, 22), slice(6, 22))  # away from the zero padding at the border
    rms = float((moved - coords)[inner].pow(2).mean().sqrt())  # RMS displacement along each axis, pixels
    expected = _simard_displacement_rms(34, 4)
    assert 0.8 * expected < rms < 1.25 * expected, (rms, expected)


def test_elastic_probability_and_erase_probability():
    x = blob(radius=5)
    some = augment_batch(x, Augment(elastic=0.3), torch.Generator().manual_seed(0))
    changed = ((some - x).abs().amax((1, 2, 3)) > 1e-4).float().mean()
    assert abs(float(changed) - 0.3) < 0.04
    erased = augment_batch(torch.ones(N, 1, 28, 28), Augment(erase=0.25), torch.Generator().manual_seed(0))
    holes = (erased == 0).sum((1, 2, 3))
    assert abs(float((holes > 0).float().mean()) - 0.25) < 0.03
    sides = holes[holes > 0].float()
    assert float(sides.min()) >= 2 * 2 and float(sides.max()) <= 12 * 12  # 10% .. 40% of each side, rounded to pixels


def test_bad_settings_are_one_line():
    with pytest.raises(InvalidArgument, match="elastic_sigma=0.0 is out of range"):
        parse_augment("elastic=0.5,elastic_sigma=0")
    with pytest.raises(InvalidArgument, match="unknown augmentation setting 'rotat'"):
        parse_augment("rotat=3")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_inside_a_captured_graph():
    torch.manual_seed(0)  # the device's default generator, which a captured graph draws from
    x = bar(512).cuda()
    aug = parse_augment("strong")
    static = x.clone()
    graph = torch.cuda.CUDAGraph()
    augment_batch(static, aug)  # warm-up outside the capture
    torch.cuda.synchronize()
    with torch.cuda.graph(graph):
        out = augment_batch(static, aug)
    graph.replay()
    first = out.clone()
    graph.replay()
    assert not torch.equal(first, out)  # new random numbers on every replay
    # rotated as on the CPU: a mean tilt of about 7 degrees (12 at most, plus shear and elastic noise; the
    # maximum is heavy-tailed, as an erased piece of the bar can leave any angle)
    assert 5 < float(orientation(out.float().cpu()).abs().mean()) < 9


def test_flip_mirrors_exactly_the_chosen_share():
    x = torch.rand(N, 1, 28, 28)
    out = augment_batch(x, Augment(flip=0.5), torch.Generator().manual_seed(0))
    mirrored = (out - x.flip(3)).abs().amax((1, 2, 3)) < 1e-5
    kept = (out - x).abs().amax((1, 2, 3)) < 1e-5
    assert bool((mirrored ^ kept).all())  # every image is either the mirror or itself, exactly
    assert 0.45 < mirrored.float().mean() < 0.55


def test_mixup_blends_with_the_previous_image_and_says_how_much():
    from mnistlab.training.augment import mix_batch

    x, y = torch.rand(N, 1, 28, 28), torch.arange(N) % 10
    out, y2, w = mix_batch(x, y, Augment(mixup=1.0), torch.Generator().manual_seed(0))
    assert torch.equal(y2, y.roll(1, 0))
    torch.testing.assert_close(out, w.view(-1, 1, 1, 1) * x + (1 - w.view(-1, 1, 1, 1)) * x.roll(1, 0))
    assert 0.45 < float(w.mean()) < 0.55 and float(w.min()) >= 0 and float(w.max()) <= 1  # uniform weights


def test_cutmix_pastes_a_box_and_weighs_by_what_is_left():
    from mnistlab.training.augment import mix_batch

    x, y = torch.zeros(N, 1, 28, 28), torch.arange(N) % 10
    x += (torch.arange(N) % 2).view(-1, 1, 1, 1).float()  # odd images all 1, even all 0: a pasted pixel shows
    out, _, w = mix_batch(x, y, Augment(cutmix=1.0), torch.Generator().manual_seed(1))
    own = (out == x).float().flatten(1).mean(1)
    torch.testing.assert_close(w, own)  # the weight is the share of the image's own pixels
    assert bool(((out == x) | (out == x.roll(1, 0))).all())  # every pixel is its own or the neighbour's
    assert 0.3 < float(w.mean()) < 0.8 and float(w.min()) < 0.2


def test_mixing_chooses_the_asked_share_and_reproduces():
    from mnistlab.training.augment import mix_batch

    x, y = torch.rand(N, 1, 28, 28), torch.arange(N) % 10
    a = mix_batch(x, y, Augment(mixup=0.3), torch.Generator().manual_seed(5))
    b = mix_batch(x, y, Augment(mixup=0.3), torch.Generator().manual_seed(5))
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert 0.25 < float((a[2] < 1).float().mean()) < 0.35
    with pytest.raises(InvalidArgument, match="cutmix=1.5"):
        parse_augment("cutmix=1.5")


def test_other_pens_and_low_resolution_scans():
    """stroke: the ink grows by a pixel (two in three images) or shrinks; blocky: the image is made of square blocks
    of one grey, from a scan 7 to 14 pixels across."""
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 6:22, 12:16] = 1.0  # a bar four pixels wide
    thick = augment_batch(x, parse_augment("stroke=1"), gen)
    widths = (thick[:, 0, 14] > 0.5).sum(1)
    assert set(widths.tolist()) <= {2, 6} and 30 < int((widths == 6).sum()) < 56  # about 2 in 3 thicker
    assert torch.equal(augment_batch(x, parse_augment("stroke=0"), gen), x)
    marker = augment_batch(x, parse_augment("marker=1"), gen)
    assert set((marker[:, 0, 14] > 0.5).sum(1).tolist()) == {8}  # two pixels more on each side, every image
    half = (augment_batch(x, parse_augment("marker=0.5"), gen)[:, 0, 14] > 0.5).sum(1)
    assert set(half.tolist()) == {4, 8} and 16 < int((half == 8).sum()) < 48
    blocky = augment_batch(torch.rand(8, 1, 28, 28), parse_augment("blocky=1"), gen)
    for img in blocky[:, 0]:
        assert len({tuple(r.tolist()) for r in img}) <= 14 and len({tuple(c.tolist()) for c in img.T}) <= 14
    with pytest.raises(InvalidArgument, match="out of range"):
        parse_augment("stroke=1.5")
