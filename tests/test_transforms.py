"""mnistlab.transforms against values computed by hand from torchvision's documented definitions."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from mnistlab import transforms as T
from mnistlab.errors import InvalidArgument


def _img(h=5, w=7):
    return (np.arange(h * w, dtype=np.uint8).reshape(h, w) * 7) % 251


def test_to_tensor_is_chw_float_in_0_1_and_pil_to_tensor_is_unscaled():
    rgb = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    t = T.ToTensor()(Image.fromarray(rgb))
    assert t.shape == (3, 4, 6) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), rgb.transpose(2, 0, 1) / 255.0, rtol=0, atol=1e-7)
    gray = T.ToTensor()(Image.fromarray(_img()))
    assert gray.shape == (1, 5, 7) and float(gray.max()) <= 1.0
    assert T.ToTensor()(_img()).shape == (1, 5, 7)  # an HW ndarray
    floats = np.ones((2, 2, 1), np.float64) * 3
    assert T.ToTensor()(floats).dtype == torch.float64 and float(T.ToTensor()(floats).max()) == 3  # not scaled
    raw = T.PILToTensor()(Image.fromarray(rgb))
    assert raw.dtype == torch.uint8 and torch.equal(raw, torch.from_numpy(rgb).permute(2, 0, 1))
    with pytest.raises(InvalidArgument, match="pic should be PIL Image"):
        T.PILToTensor()(rgb)


def test_normalize_is_per_channel_and_refuses_what_torchvision_refuses():
    x = torch.rand(3, 4, 4)
    out = T.Normalize((0.1, 0.2, 0.3), (0.5, 0.25, 2.0))(x)
    for c, (m, s) in enumerate(zip((0.1, 0.2, 0.3), (0.5, 0.25, 2.0))):
        torch.testing.assert_close(out[c], (x[c] - m) / s)
    assert not torch.equal(out, x)  # a new tensor unless inplace
    mnist = T.Normalize((0.1307,), (0.3081,))(torch.full((1, 2, 2), 0.5))
    assert torch.allclose(mnist, torch.full((1, 2, 2), (0.5 - 0.1307) / 0.3081))
    with pytest.raises(InvalidArgument, match="std evaluated to zero"):
        T.Normalize((0.5,), (0.0,))(x)
    with pytest.raises(InvalidArgument, match="float tensor"):
        T.Normalize((0.5,), (0.5,))(torch.zeros(1, 2, 2, dtype=torch.uint8))
    with pytest.raises(InvalidArgument, match="Tensor Image"):
        T.Normalize((0.5,), (0.5,))(Image.fromarray(_img()))


def test_convert_image_dtype_rescales():
    u8 = torch.tensor([[[0, 128, 255]]], dtype=torch.uint8)
    assert torch.allclose(T.ConvertImageDtype(torch.float32)(u8), u8.float() / 255)
    back = T.ConvertImageDtype(torch.uint8)(torch.tensor([[[0.0, 0.5, 1.0]]]))
    assert back.tolist() == [[[0, 127, 255]]]  # x * (255 + 1 - 0.001), truncated
    assert T.ConvertImageDtype(torch.int16)(u8).tolist() == [[[0, 128 << 7, 255 << 7]]]


def test_compose_lambda_and_to_pil_round_trip():
    img = Image.fromarray(_img())
    pipeline = T.Compose([T.ToTensor(), T.Lambda(lambda t: 1 - t), T.ToPILImage()])
    out = pipeline(img)
    want = ((1 - torch.from_numpy(_img()).float() / 255) * 255).byte().numpy()  # to_pil_image: x * 255, truncated
    assert out.mode == "L" and np.array_equal(np.array(out), want)
    assert "ToTensor()" in repr(pipeline)
    with pytest.raises(InvalidArgument, match="lambd should be callable"):
        T.Lambda(3)


@pytest.mark.parametrize("mode, row", [("constant", [9, 9, 1, 2, 3, 9, 9]), ("edge", [1, 1, 1, 2, 3, 3, 3]),
                                       ("reflect", [3, 2, 1, 2, 3, 2, 1]), ("symmetric", [2, 1, 1, 2, 3, 3, 2])])
def test_pad_modes(mode, row):
    """torchvision's documented examples: padding [1, 2, 3] by 2 on each side."""
    x = torch.tensor([[[1, 2, 3]]], dtype=torch.uint8)
    out = T.Pad((2, 0), fill=9, padding_mode=mode)(x)
    assert out.shape == (1, 1, 7) and out[0, 0].tolist() == row
    pil = T.Pad((2, 0), fill=9, padding_mode=mode)(Image.fromarray(x[0].numpy()))
    assert np.array(pil)[0].tolist() == row
    assert T.Pad((1, 2))(x).shape == (1, 5, 5) and T.Pad((1, 0, 2, 3))(x).shape == (1, 4, 6)
    with pytest.raises(InvalidArgument, match="Padding mode"):
        T.Pad(1, padding_mode="wrap")
    with pytest.raises(InvalidArgument, match="1, 2, or 4 element"):
        T.Pad((1, 2, 3))
    with pytest.raises(InvalidArgument, match="reflect padding of 2"):
        T.Pad(2, padding_mode="reflect")(x)


def test_random_crop_draws_as_torchvision_and_pads():
    x = torch.arange(28 * 28, dtype=torch.float32).view(1, 28, 28)
    torch.manual_seed(3)
    out = T.RandomCrop(28, padding=4)(x)
    torch.manual_seed(3)
    i = torch.randint(0, 36 - 28 + 1, size=(1,)).item()
    j = torch.randint(0, 36 - 28 + 1, size=(1,)).item()
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    assert torch.equal(out, padded[..., i:i + 28, j:j + 28])
    assert T.RandomCrop(10, pad_if_needed=True)(torch.ones(1, 6, 8)).shape == (1, 10, 10)
    with pytest.raises(InvalidArgument, match="larger than input image size"):
        T.RandomCrop(30)(x)
    pil = T.RandomCrop(20)(Image.fromarray(_img(28, 28)))
    assert pil.size == (20, 20)


def test_center_crop_and_resize():
    x = torch.arange(36, dtype=torch.float32).view(1, 6, 6)
    assert torch.equal(T.CenterCrop(2)(x), x[..., 2:4, 2:4])
    assert torch.equal(T.CenterCrop(8)(x)[..., 1:7, 1:7], x) and T.CenterCrop(8)(x)[..., 0, :].abs().sum() == 0
    assert np.array(T.CenterCrop(2)(Image.fromarray(x[0].numpy().astype(np.uint8)))).tolist() == [[14, 15], [20, 21]]
    img = torch.rand(1, 28, 56)
    assert T.Resize(14)(img).shape == (1, 14, 28) and T.Resize((10, 12))(img).shape == (1, 10, 12)
    assert T.Resize(14)(Image.new("L", (56, 28))).size == (28, 14)
    flat = torch.full((1, 8, 8), 0.25)
    assert torch.allclose(T.Resize(4)(flat), torch.full((1, 4, 4), 0.25))  # an average of equal pixels
    near = T.Resize(4, interpolation=T.InterpolationMode.NEAREST)(torch.arange(64.0).view(1, 8, 8))
    assert near[0, 0].tolist() == [0.0, 2.0, 4.0, 6.0]


def test_rotations_and_affine_maps_follow_the_definitions():
    x = torch.from_numpy(_img(6, 6)).view(1, 6, 6)
    rot90 = torch.rot90(x, 1, dims=(-2, -1))  # anticlockwise, as RandomRotation's positive angles
    assert torch.equal(T.RandomRotation((90, 90))(x), rot90)
    assert np.array_equal(np.array(T.RandomRotation((90, 90))(Image.fromarray(x[0].numpy()))), rot90[0].numpy())
    # RandomAffine's angle is clockwise; a shift moves the content right and down, filling with `fill`
    assert torch.equal(T.RandomAffine((-90, -90))(x), rot90)
    shifted = T.affine(x, 0.0, (2, 1), 1.0, (0.0, 0.0), fill=7)
    assert torch.equal(shifted[..., 1:, 2:], x[..., :-1, :-2]) and (shifted[..., 0, :] == 7).all() and (shifted[..., :, :2] == 7).all()
    m = T.inverse_affine((0, 0), 30.0, (0, 0), 2.0, (0.0, 0.0))  # the inverse of rotate-then-scale: 1/2 R(-30)
    c, s = math.cos(math.radians(30)) / 2, math.sin(math.radians(30)) / 2
    assert m == pytest.approx([c, s, 0.0, -s, c, 0.0])
    with pytest.raises(InvalidArgument, match="translate should be"):
        T.RandomAffine(0, translate=(0.5, 2))
    with pytest.raises(InvalidArgument, match="must be positive"):
        T.RandomRotation(-5)


def test_random_affine_draws_in_torchvisions_order():
    torch.manual_seed(7)
    got = T.RandomAffine.get_params((-10, 10), (0.1, 0.2), (0.9, 1.1), (-5, 5, -3, 3), (28, 28))
    torch.manual_seed(7)
    u = [torch.empty(1).uniform_(lo, hi).item() for lo, hi in ((-10, 10), (-2.8, 2.8), (-5.6, 5.6), (0.9, 1.1), (-5, 5), (-3, 3))]
    assert got == (pytest.approx(u[0]), (int(round(u[1])), int(round(u[2]))), pytest.approx(u[3]), (pytest.approx(u[4]), pytest.approx(u[5])))


def test_flip_erasing_and_blur():
    x = torch.arange(12, dtype=torch.float32).view(1, 3, 4)
    assert torch.equal(T.RandomHorizontalFlip(p=1.0)(x), x.flip(-1)) and T.RandomHorizontalFlip(p=0.0)(x) is x
    assert np.array(T.RandomVerticalFlip(p=1.0)(Image.fromarray(_img()))).tolist() == _img()[::-1].tolist()
    torch.manual_seed(1)
    erased = T.RandomErasing(p=1.0, value=-1)(torch.zeros(1, 28, 28))
    box = erased == -1
    rows, cols = box.any(-1)[0], box.any(-2)[0]
    assert box.sum() == rows.sum() * cols.sum() > 0  # one rectangle
    assert 0.02 * 784 * 0.5 <= box.sum() <= 0.33 * 784 * 1.5
    with pytest.raises(InvalidArgument, match="should be 'random'"):
        T.RandomErasing(value="noise")
    flat = torch.full((1, 9, 9), 0.5)
    assert torch.allclose(T.GaussianBlur(5, sigma=1.0)(flat), flat)  # the kernel sums to one
    dot = torch.zeros(1, 9, 9)
    dot[0, 4, 4] = 1.0
    blurred = T.GaussianBlur(3, sigma=1.0)(dot)
    g = [math.exp(-0.5), 1.0, math.exp(-0.5)]
    g = [v / sum(g) for v in g]
    assert blurred[0, 3:6, 3:6].numpy() == pytest.approx(np.outer(g, g), abs=1e-6)
    assert T.GaussianBlur(3)(Image.fromarray(_img())).size == (7, 5)
    with pytest.raises(InvalidArgument, match="odd and positive"):
        T.GaussianBlur(4)


def test_seeded_pipelines_repeat():
    pipe = T.Compose([T.RandomAffine(10, translate=(0.1, 0.1), scale=(0.9, 1.1)), T.ToTensor(), T.RandomErasing()])
    img = Image.fromarray(_img(28, 28))
    torch.manual_seed(0)
    a = pipe(img)
    torch.manual_seed(0)
    assert torch.equal(a, pipe(img))


@pytest.mark.parametrize("device", ["meta", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                                           reason="needs a CUDA GPU"))])
def test_warps_and_blurs_build_their_grids_and_kernels_on_the_image_s_device(device):
    """A grid or kernel made on the CPU for a GPU image fails ('expected all tensors on the same device'); the meta
    device checks devices as CUDA does, without one."""
    from mnistlab import transforms as T

    x = torch.rand(2, 1, 28, 28, device=device)
    for t in (T.RandomAffine(10, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=5, fill=0.5), T.RandomRotation(15),
              T.GaussianBlur(5, sigma=(0.5, 1.5)), T.Pad(2, padding_mode="reflect")):
        out = t(x)
        assert out.device.type == device and out.shape[:2] == (2, 1), type(t).__name__


def test_random_erasing_draws_in_torchvisions_order():
    """torchvision's v1 RandomErasing, as its source has it: forward draws torch.rand(1) against p, then get_params
    draws the area share, then the log aspect ratio (up to 10 tries until the box fits), then the row and column;
    a given value draws nothing. Written out from that source, not from mnistlab's code."""
    torch.manual_seed(5)
    erased = T.RandomErasing(p=1.0, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=-1)(torch.zeros(1, 28, 28))
    torch.manual_seed(5)
    assert torch.rand(1).item() < 1.0
    log_ratio = torch.log(torch.tensor((0.3, 3.3)))
    for _ in range(10):
        erase_area = 784 * torch.empty(1).uniform_(0.02, 0.33).item()
        aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
        h, w = int(round(math.sqrt(erase_area * aspect))), int(round(math.sqrt(erase_area / aspect)))
        if h < 28 and w < 28:
            break
    i = torch.randint(0, 28 - h + 1, size=(1,)).item()
    j = torch.randint(0, 28 - w + 1, size=(1,)).item()
    expected = torch.zeros(1, 28, 28)
    expected[:, i:i + h, j:j + w] = -1
    assert torch.equal(erased, expected)
