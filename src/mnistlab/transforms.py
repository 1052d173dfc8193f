"""torchvision's transforms (the v1 API) that MNIST-family scripts use, without torchvision: a script changes one
import line, `from mnistlab import datasets, transforms`, and nothing else.

Same names, arguments, defaults and semantics as torchvision's, on PIL images and on tensors (..., C, H, W), and the
same random draws through `torch.manual_seed`: Compose, ToTensor, PILToTensor, ConvertImageDtype, Normalize, Lambda,
Pad, Resize, CenterCrop, RandomCrop, RandomRotation, RandomAffine, RandomHorizontalFlip, RandomVerticalFlip,
RandomErasing, GaussianBlur,
ToPILImage, and InterpolationMode. An argument torchvision would refuse is refused in one line naming it.
"""

from __future__ import annotations

import math
import numbers
from enum import Enum

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mnistlab.errors import InvalidArgument

__all__ = ["CenterCrop", "Compose", "ConvertImageDtype", "GaussianBlur", "InterpolationMode", "Lambda", "Normalize", "PILToTensor",
           "Pad", "RandomAffine", "RandomCrop", "RandomErasing", "RandomHorizontalFlip", "RandomRotation", "RandomVerticalFlip", "Resize",
           "ToPILImage", "ToTensor"]


class InterpolationMode(Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


_PIL_RESAMPLE = {InterpolationMode.NEAREST: Image.NEAREST, InterpolationMode.BILINEAR: Image.BILINEAR,
                 InterpolationMode.BICUBIC: Image.BICUBIC}


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise InvalidArgument(what)


def _pair(value, name: str) -> tuple[int, int]:
    """An int (a square) or a sequence of one or two ints, as (height, width)."""
    if isinstance(value, numbers.Number):
        return int(value), int(value)
    _need(isinstance(value, (list, tuple)) and len(value) in (1, 2), f"{name} should be an int or a sequence of 1 or 2 ints, got {value!r}")
    return (int(value[0]), int(value[0])) if len(value) == 1 else (int(value[0]), int(value[1]))


def _range(value, name: str, centred: bool = True) -> tuple[float, float]:
    """A number d (the range -d..d) or a sequence (min, max)."""
    if isinstance(value, numbers.Number):
        _need(value >= 0 or not centred, f"if {name} is a single number, it must be positive, got {value!r}")
        return (-float(value), float(value)) if centred else (float(value), float(value))
    _need(isinstance(value, (list, tuple)) and len(value) == 2, f"{name} should be a number or a sequence of length 2, got {value!r}")
    return float(value[0]), float(value[1])


def _uniform(low: float, high: float) -> float:
    return float(torch.empty(1).uniform_(low, high).item())


# ------------------------------------------------------------------------------------------ conversions

def _to_tensor_uint8(pic) -> tuple[torch.Tensor, str | None]:
    """A PIL image or an HWC/HW array as a CHW tensor of its own dtype, and the PIL mode it came from."""
    if isinstance(pic, Image.Image):
        mode = pic.mode
        arr = np.array(pic, dtype=np.uint8 if mode == "1" else None, copy=True)
        if mode == "1":
            arr = arr * 255
        return torch.from_numpy(arr if arr.ndim == 3 else arr[:, :, None]).permute(2, 0, 1).contiguous(), mode
    if isinstance(pic, np.ndarray):
        _need(pic.ndim in (2, 3), f"pic should be 2 or 3 dimensional, got {pic.ndim} dimensions")
        arr = pic if pic.ndim == 3 else pic[:, :, None]
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))), None
    raise InvalidArgument(f"pic should be a PIL Image or an ndarray, got {type(pic).__name__}")


class ToTensor:
    """A PIL image or an HWC ndarray to a float CHW tensor, uint8 values scaled to [0, 1] (others kept as they are)."""

    def __call__(self, pic) -> torch.Tensor:
        t, _ = _to_tensor_uint8(pic)
        return t.to(torch.float32).div(255) if t.dtype == torch.uint8 else t

    def __repr__(self) -> str:
        return "ToTensor()"


class PILToTensor:
    """A PIL image to a CHW tensor of its own dtype, unscaled."""

    def __call__(self, pic) -> torch.Tensor:
        _need(isinstance(pic, Image.Image), f"pic should be PIL Image, got {type(pic).__name__}")
        return _to_tensor_uint8(pic)[0]

    def __repr__(self) -> str:
        return "PILToTensor()"


class ConvertImageDtype:
    """A tensor image to another dtype, its values rescaled: uint8 255 is float 1.0."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        _need(isinstance(image, torch.Tensor), f"image should be a Tensor, got {type(image).__name__}")
        src, dst = image.dtype, self.dtype
        if src == dst:
            return image
        if image.is_floating_point():
            if dst.is_floating_point:
                return image.to(dst)
            top = torch.iinfo(dst).max
            return image.mul(top + 1.0 - 0.001).to(dst)
        top_in = float(torch.iinfo(src).max)
        if dst.is_floating_point:
            return image.to(dst).div(top_in)
        top_out = torch.iinfo(dst).max
        if top_in > top_out:
            return torch.bitwise_right_shift(image, int(math.log2(top_in + 1) - math.log2(top_out + 1))).to(dst)
        return torch.bitwise_left_shift(image.to(dst), int(math.log2(top_out + 1) - math.log2(top_in + 1)))

    def __repr__(self) -> str:
        return f"ConvertImageDtype(dtype={self.dtype})"


class ToPILImage:
    """A CHW tensor (floats in [0, 1] are scaled by 255) or an HWC ndarray to a PIL image: one channel is mode L."""

    def __init__(self, mode: str | None = None):
        self.mode = mode

    def __call__(self, pic) -> Image.Image:
        if isinstance(pic, torch.Tensor):
            _need(pic.ndim in (2, 3), f"pic should be 2/3 dimensional, got {pic.ndim} dimensions")
            t = pic if pic.ndim == 3 else pic[None]
            if t.is_floating_point() and self.mode != "F":
                t = t.mul(255).byte()
            arr = t.permute(1, 2, 0).numpy()
        elif isinstance(pic, np.ndarray):
            arr = pic if pic.ndim == 3 else pic[:, :, None]
        else:
            raise InvalidArgument(f"pic should be Tensor or ndarray, got {type(pic).__name__}")
        if arr.shape[2] == 1:
            arr = arr[:, :, 0]
        return Image.fromarray(arr, mode=self.mode) if self.mode else Image.fromarray(arr)

    def __repr__(self) -> str:
        return f"ToPILImage(mode={self.mode!r})" if self.mode else "ToPILImage()"


def _as_tensor(img):
    """A geometric op works on tensors: a PIL image goes in as its uint8 tensor and comes back a PIL image of its mode."""
    if isinstance(img, Image.Image):
        t, mode = _to_tensor_uint8(img)
        return t, lambda out: Image.fromarray(out.permute(1, 2, 0).numpy()[:, :, 0] if out.shape[0] == 1 else out.permute(1, 2, 0).numpy(),
                                              mode=None if mode == "1" else mode)
    _need(isinstance(img, torch.Tensor), f"img should be PIL Image or Tensor, got {type(img).__name__}")
    return img, lambda out: out


# ------------------------------------------------------------------------------------------ the simple ones

class Compose:
    """Transforms applied in order."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        return "Compose(\n" + "".join(f"    {t}\n" for t in self.transforms) + ")"


class Lambda:
    """A function of your own as a transform."""

    def __init__(self, lambd):
        _need(callable(lambd), f"Argument lambd should be callable, got {type(lambd).__name__}")
        self.lambd = lambd

    def __call__(self, img):
        return self.lambd(img)

    def __repr__(self) -> str:
        return "Lambda()"


class Normalize:
    """(x - mean) / std per channel, on a float tensor image."""

    def __init__(self, mean, std, inplace: bool = False):
        self.mean, self.std, self.inplace = mean, std, inplace

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        _need(isinstance(tensor, torch.Tensor), f"img should be Tensor Image, got {type(tensor).__name__}")
        _need(tensor.is_floating_point(), f"Input tensor should be a float tensor, got {tensor.dtype}")
        _need(tensor.ndim >= 3, f"Expected tensor to be a tensor image of size (..., C, H, W), got {tuple(tensor.shape)}")
        mean = torch.as_tensor(self.mean, dtype=tensor.dtype, device=tensor.device)
        std = torch.as_tensor(self.std, dtype=tensor.dtype, device=tensor.device)
        _need(not (std == 0).any(), f"std evaluated to zero after conversion to {tensor.dtype}, leading to division by zero")
        out = tensor if self.inplace else tensor.clone()
        return out.sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class _RandomFlip:
    mirror, axis = Image.FLIP_LEFT_RIGHT, -1

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, img):
        if torch.rand(1) < self.p:
            return img.transpose(self.mirror) if isinstance(img, Image.Image) else img.flip(self.axis)
        return img

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class RandomHorizontalFlip(_RandomFlip):
    """With probability p, mirrored left to right."""


class RandomVerticalFlip(_RandomFlip):
    """With probability p, mirrored top to bottom."""

    mirror, axis = Image.FLIP_TOP_BOTTOM, -2


# ------------------------------------------------------------------------------------------ padding and cropping

PADDING_MODES = ("constant", "edge", "reflect", "symmetric")


def _check_padding_mode(mode: str) -> None:
    _need(mode in PADDING_MODES, f"Padding mode should be either constant, edge, reflect or symmetric, got {mode!r}")


def _padding(padding) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) from an int, (left/right, top/bottom) or (left, top, right, bottom)."""
    if isinstance(padding, numbers.Number):
        return (int(padding),) * 4
    _need(isinstance(padding, (list, tuple)) and len(padding) in (1, 2, 4),
          f"Padding must be an int or a 1, 2, or 4 element tuple, not a {len(padding) if isinstance(padding, (list, tuple)) else padding!r}")
    if len(padding) == 1:
        return (int(padding[0]),) * 4
    if len(padding) == 2:
        return int(padding[0]), int(padding[1]), int(padding[0]), int(padding[1])
    return tuple(int(p) for p in padding)


def pad(img, padding, fill=0, padding_mode: str = "constant"):
    _check_padding_mode(padding_mode)
    left, top, right, bottom = _padding(padding)
    t, back = _as_tensor(img)
    if padding_mode == "constant":
        out = F.pad(t, (left, right, top, bottom), value=float(fill) if isinstance(fill, numbers.Number) else 0.0)
        if not isinstance(fill, numbers.Number):  # a fill per channel
            inner = torch.zeros_like(out, dtype=torch.bool)
            inner[..., top:top + t.shape[-2], left:left + t.shape[-1]] = True
            out = torch.where(inner, out, torch.as_tensor(fill, dtype=out.dtype).view(-1, 1, 1))
        return back(out)
    rows = _index(t.shape[-2], top, bottom, padding_mode)
    cols = _index(t.shape[-1], left, right, padding_mode)
    return back(t[..., rows, :][..., cols])


def _index(n: int, before: int, after: int, mode: str) -> torch.Tensor:
    """Source indices for a padded axis: edge repeats the border, reflect mirrors without it, symmetric with it."""
    i = torch.arange(-before, n + after)
    if before == after == 0:
        return i
    if mode == "edge":
        return i.clamp(0, n - 1)
    if mode == "reflect":
        _need(max(before, after) < n, f"reflect padding of {max(before, after)} needs an image side longer than it, not {n}")
        period = 2 * (n - 1)
        i = i.remainder(period)
        return torch.where(i >= n, period - i, i)
    period = 2 * n
    i = i.remainder(period)
    return torch.where(i >= n, period - 1 - i, i)


class Pad:
    def __init__(self, padding, fill=0, padding_mode: str = "constant"):
        _padding(padding)
        _check_padding_mode(padding_mode)
        self.padding, self.fill, self.padding_mode = padding, fill, padding_mode

    def __call__(self, img):
        return pad(img, self.padding, self.fill, self.padding_mode)

    def __repr__(self) -> str:
        return f"Pad(padding={self.padding}, fill={self.fill}, padding_mode={self.padding_mode})"


def _size_of(img) -> tuple[int, int]:
    return (img.height, img.width) if isinstance(img, Image.Image) else (int(img.shape[-2]), int(img.shape[-1]))


def crop(img, top: int, left: int, height: int, width: int):
    if isinstance(img, Image.Image):
        return img.crop((left, top, left + width, top + height))
    h, w = _size_of(img)
    if top < 0 or left < 0 or top + height > h or left + width > w:  # beyond the image: zeros, as torchvision
        img = F.pad(img, (max(-left, 0), max(left + width - w, 0), max(-top, 0), max(top + height - h, 0)))
        top, left = max(top, 0), max(left, 0)
    return img[..., top:top + height, left:left + width]


class CenterCrop:
    def __init__(self, size):
        self.size = _pair(size, "size")

    def __call__(self, img):
        (th, tw), (h, w) = self.size, _size_of(img)
        if th > h or tw > w:  # smaller than the crop: padded with zeros around first
            img = pad(img, [(tw - w) // 2 if tw > w else 0, (th - h) // 2 if th > h else 0,
                            (tw - w + 1) // 2 if tw > w else 0, (th - h + 1) // 2 if th > h else 0])
            h, w = _size_of(img)
        return crop(img, int(round((h - th) / 2.0)), int(round((w - tw) / 2.0)), th, tw)

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size})"


class RandomCrop:
    def __init__(self, size, padding=None, pad_if_needed: bool = False, fill=0, padding_mode: str = "constant"):
        self.size = _pair(size, "size")
        if padding is not None:
            _padding(padding)
        _check_padding_mode(padding_mode)
        self.padding, self.pad_if_needed, self.fill, self.padding_mode = padding, pad_if_needed, fill, padding_mode

    @staticmethod
    def get_params(img, output_size) -> tuple[int, int, int, int]:
        (h, w), (th, tw) = _size_of(img), output_size
        _need(h >= th and w >= tw, f"Required crop size {(th, tw)} is larger than input image size {(h, w)}")
        if h == th and w == tw:
            return 0, 0, h, w
        i = torch.randint(0, h - th + 1, size=(1,)).item()
        j = torch.randint(0, w - tw + 1, size=(1,)).item()
        return i, j, th, tw

    def __call__(self, img):
        if self.padding is not None:
            img = pad(img, self.padding, self.fill, self.padding_mode)
        (h, w), (th, tw) = _size_of(img), self.size
        if self.pad_if_needed and w < tw:
            img = pad(img, [tw - w, 0], self.fill, self.padding_mode)
        if self.pad_if_needed and h < th:
            img = pad(img, [0, th - h], self.fill, self.padding_mode)
        return crop(img, *self.get_params(img, self.size))

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class Resize:
    """To `size` (h, w), or the smaller edge to `size` keeping the aspect ratio; PIL images by PIL, tensors by
    interpolation (antialiased, as torchvision's default)."""

    def __init__(self, size, interpolation: InterpolationMode = InterpolationMode.BILINEAR, max_size=None, antialias=True):
        _need(isinstance(size, (int, list, tuple)), f"Size should be int or sequence, got {type(size).__name__}")
        _need(isinstance(interpolation, InterpolationMode), f"interpolation should be an InterpolationMode, got {interpolation!r}")
        self.size, self.interpolation, self.max_size, self.antialias = size, interpolation, max_size, antialias

    def _target(self, h: int, w: int) -> tuple[int, int]:
        if isinstance(self.size, (list, tuple)) and len(self.size) == 2:
            return int(self.size[0]), int(self.size[1])
        edge = int(self.size if isinstance(self.size, int) else self.size[0])
        short, long = sorted((h, w))
        new_short, new_long = edge, int(edge * long / short)
        if self.max_size is not None and new_long > self.max_size:
            new_short, new_long = int(self.max_size * new_short / new_long), self.max_size
        return (new_short, new_long) if h <= w else (new_long, new_short)

    def __call__(self, img):
        th, tw = self._target(*_size_of(img))
        if isinstance(img, Image.Image):
            return img.resize((tw, th), _PIL_RESAMPLE[self.interpolation])
        x = img if img.ndim == 4 else img[None]
        dtype = x.dtype
        mode = self.interpolation.value
        out = F.interpolate(x.float(), size=(th, tw), mode=mode, align_corners=None if mode == "nearest" else False,
                            antialias=bool(self.antialias) and mode != "nearest")
        out = _back_to(out, dtype)
        return out if img.ndim == 4 else out[0]

    def __repr__(self) -> str:
        return f"Resize(size={self.size}, interpolation={self.interpolation.value})"


# ------------------------------------------------------------------------------------------ rotations and affine maps

def inverse_affine(center, angle: float, translate, scale: float, shear) -> list[float]:
    """The matrix from output to input coordinates of a rotation by `angle` degrees (anticlockwise) about `center`,
    then a shear, a scale and a translation: torchvision's definition."""
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    (cx, cy), (tx, ty) = center, translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [x / scale for x in (d, -b, 0.0, -c, a, 0.0)]
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty)
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty)
    m[2] += cx
    m[5] += cy
    return m


def affine(img, angle: float, translate, scale: float, shear, interpolation=InterpolationMode.NEAREST, fill=0, center=None):
    """A PIL image through PIL's own transform (as torchvision does); a tensor through a sampling grid."""
    h, w = _size_of(img)
    if isinstance(img, Image.Image):
        centre = (w * 0.5, h * 0.5) if center is None else tuple(center)
        m = inverse_affine(centre, angle, translate, scale, shear)
        return img.transform((w, h), Image.AFFINE, m, _PIL_RESAMPLE[interpolation], fillcolor=_pil_fill(img, fill))
    centre = (0.0, 0.0) if center is None else (center[0] - w * 0.5, center[1] - h * 0.5)
    # the grid on the image's device, so a CUDA image is warped on the GPU (float64 where the device has it)
    on = {"device": img.device, "dtype": torch.float32 if img.device.type == "mps" else torch.float64}
    m = torch.tensor(inverse_affine(centre, angle, translate, scale, shear), **on).view(2, 3)
    ys, xs = torch.meshgrid(torch.arange(h, **on) + 0.5 - h * 0.5, torch.arange(w, **on) + 0.5 - w * 0.5, indexing="ij")
    src = torch.stack([xs, ys, torch.ones_like(xs)], -1) @ m.T  # (h, w, 2): where each output pixel reads from
    grid = (src / torch.tensor([w * 0.5, h * 0.5], **on)).float()
    return _sample(img, grid, interpolation, fill)


def _pil_fill(img: Image.Image, fill):
    """A fill as PIL takes it: one value per band (a number is repeated over them)."""
    bands = len(img.getbands())
    return fill if not isinstance(fill, numbers.Number) or bands == 1 else tuple([fill] * bands)


def _back_to(out: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Float results in the image's own dtype: an integer image's values rounded and kept in its range."""
    if not dtype.is_floating_point:
        out = out.round_().clamp_(torch.iinfo(dtype).min, torch.iinfo(dtype).max)
    return out.to(dtype)


def _sample(img: torch.Tensor, grid: torch.Tensor, interpolation: InterpolationMode, fill) -> torch.Tensor:
    x = img if img.ndim == 4 else img[None]
    dtype = x.dtype
    xf = x.float()
    mask = torch.ones_like(xf[:, :1])
    both = torch.cat([xf, mask], 1)
    out = F.grid_sample(both, grid[None].expand(len(x), -1, -1, -1), mode=interpolation.value, padding_mode="zeros",
                        align_corners=False)
    out, mask = out[:, :-1], out[:, -1:]
    fills = torch.as_tensor(fill if fill is not None else 0, dtype=torch.float32, device=x.device).view(-1, 1, 1)
    if interpolation == InterpolationMode.NEAREST:
        mask = (mask > 0.5).float()
    out = out * mask + fills * (1 - mask)
    out = _back_to(out, dtype)
    return out if img.ndim == 4 else out[0]


class RandomRotation:
    def __init__(self, degrees, interpolation: InterpolationMode = InterpolationMode.NEAREST, expand: bool = False,
                 center=None, fill=0):
        self.degrees = _range(degrees, "degrees")
        _need(isinstance(interpolation, InterpolationMode), f"interpolation should be an InterpolationMode, got {interpolation!r}")
        _need(not expand, "expand=True is not in mnistlab.transforms (the image keeps its size); drop it")
        _need(center is None or (isinstance(center, (list, tuple)) and len(center) == 2), f"center should be a sequence of length 2, got {center!r}")
        self.interpolation, self.expand, self.center, self.fill = interpolation, expand, center, fill

    @staticmethod
    def get_params(degrees) -> float:
        return _uniform(float(degrees[0]), float(degrees[1]))

    def __call__(self, img):
        angle = self.get_params(self.degrees)
        if isinstance(img, Image.Image):
            return img.rotate(angle, _PIL_RESAMPLE[self.interpolation], False, self.center, fillcolor=_pil_fill(img, self.fill))
        return affine(img, -angle, (0, 0), 1.0, (0.0, 0.0), self.interpolation, self.fill, self.center)

    def __repr__(self) -> str:
        return f"RandomRotation(degrees={list(self.degrees)}, interpolation={self.interpolation.value})"


class RandomAffine:
    def __init__(self, degrees, translate=None, scale=None, shear=None, interpolation: InterpolationMode = InterpolationMode.NEAREST,
                 fill=0, center=None):
        self.degrees = _range(degrees, "degrees")
        if translate is not None:
            _need(isinstance(translate, (list, tuple)) and len(translate) == 2 and all(0.0 <= t <= 1.0 for t in translate),
                  f"translate should be a sequence of two values between 0 and 1, got {translate!r}")
        if scale is not None:
            _need(isinstance(scale, (list, tuple)) and len(scale) == 2 and all(s > 0 for s in scale),
                  f"scale should be a sequence of two positive values, got {scale!r}")
        if shear is not None:
            if isinstance(shear, numbers.Number):
                shear = _range(shear, "shear")
            _need(isinstance(shear, (list, tuple)) and len(shear) in (2, 4),
                  f"shear should be a number or a sequence of 2 or 4 values, got {shear!r}")
        _need(isinstance(interpolation, InterpolationMode), f"interpolation should be an InterpolationMode, got {interpolation!r}")
        self.translate, self.scale, self.shear, self.interpolation, self.fill, self.center = translate, scale, shear, interpolation, fill, center

    @staticmethod
    def get_params(degrees, translate, scale_ranges, shears, img_size) -> tuple[float, tuple[int, int], float, tuple[float, float]]:
        """torchvision's draws, in its order: angle, then the shifts, the scale, the shears."""
        angle = _uniform(float(degrees[0]), float(degrees[1]))
        shift = (0, 0)
        if translate is not None:
            max_dx, max_dy = float(translate[0] * img_size[0]), float(translate[1] * img_size[1])
            shift = (int(round(_uniform(-max_dx, max_dx))), int(round(_uniform(-max_dy, max_dy))))
        scale = _uniform(scale_ranges[0], scale_ranges[1]) if scale_ranges is not None else 1.0
        shear_x = shear_y = 0.0
        if shears is not None:
            shear_x = _uniform(shears[0], shears[1])
            if len(shears) == 4:
                shear_y = _uniform(shears[2], shears[3])
        return angle, shift, scale, (shear_x, shear_y)

    def __call__(self, img):
        h, w = _size_of(img)
        angle, shift, scale, shear = self.get_params(self.degrees, self.translate, self.scale, self.shear, (w, h))
        return affine(img, angle, shift, scale, shear, self.interpolation, self.fill, self.center)

    def __repr__(self) -> str:
        return f"RandomAffine(degrees={list(self.degrees)}, translate={self.translate}, scale={self.scale}, shear={self.shear})"


# ------------------------------------------------------------------------------------------ erasing and blur

class RandomErasing:
    """With probability p, a random rectangle of a tensor image set to `value` (0, a value per channel, or 'random')."""

    def __init__(self, p: float = 0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0, inplace: bool = False):
        _need(isinstance(value, (numbers.Number, str, tuple, list)), "Argument value should be either a number or str or a sequence")
        _need(not isinstance(value, str) or value == "random", "If value is str, it should be 'random'")
        _need(scale[0] <= scale[1] and ratio[0] <= ratio[1], "Scale and ratio should be of kind (min, max)")
        _need(0 <= scale[0] and scale[1] <= 1, "Scale should be between 0 and 1")
        _need(0 <= p <= 1, "Random erasing probability should be between 0 and 1")
        self.p, self.scale, self.ratio, self.value, self.inplace = p, scale, ratio, value, inplace

    @staticmethod
    def get_params(img: torch.Tensor, scale, ratio, value=None):
        img_c, img_h, img_w = img.shape[-3], img.shape[-2], img.shape[-1]
        area = img_h * img_w
        log_ratio = torch.log(torch.tensor(ratio))
        for _ in range(10):
            erase_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
            aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
            h, w = int(round(math.sqrt(erase_area * aspect))), int(round(math.sqrt(erase_area / aspect)))
            if not (h < img_h and w < img_w):
                continue
            v = torch.empty([img_c, h, w], dtype=torch.float32).normal_() if value is None else torch.tensor(value)[:, None, None]
            i = torch.randint(0, img_h - h + 1, size=(1,)).item()
            j = torch.randint(0, img_w - w + 1, size=(1,)).item()
            return i, j, h, w, v
        return 0, 0, img_h, img_w, img

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        _need(isinstance(img, torch.Tensor), f"img should be Tensor Image, got {type(img).__name__}")
        if torch.rand(1) < self.p:
            value = None if self.value == "random" else [float(self.value)] if isinstance(self.value, numbers.Number) else list(self.value)
            _need(value is None or len(value) in (1, img.shape[-3]),
                  f"If value is a sequence, it should have either a single value or {img.shape[-3]} (number of input channels)")
            i, j, h, w, v = self.get_params(img, self.scale, self.ratio, value)
            out = img if self.inplace else img.clone()
            out[..., i:i + h, j:j + w] = v.to(out.dtype)
            return out
        return img

    def __repr__(self) -> str:
        return f"RandomErasing(p={self.p}, scale={self.scale}, ratio={self.ratio}, value={self.value})"


class GaussianBlur:
    """A Gaussian blur with sigma drawn uniformly from `sigma` (a number: fixed), reflect-padded, separable."""

    def __init__(self, kernel_size, sigma=(0.1, 2.0)):
        self.kernel_size = _pair(kernel_size, "kernel_size")
        _need(all(k > 0 and k % 2 == 1 for k in self.kernel_size), "Kernel size value should be an odd and positive number.")
        if isinstance(sigma, numbers.Number):
            _need(sigma > 0, "If sigma is a single number, it must be positive.")
            sigma = (float(sigma), float(sigma))
        _need(isinstance(sigma, (list, tuple)) and len(sigma) == 2 and 0 < sigma[0] <= sigma[1],
              "sigma values should be positive and of the form (min, max).")
        self.sigma = sigma

    @staticmethod
    def get_params(sigma_min: float, sigma_max: float) -> float:
        return _uniform(sigma_min, sigma_max)

    def __call__(self, img):
        s = self.get_params(*self.sigma)
        t, back = _as_tensor(img)
        x = t if t.ndim == 4 else t[None]
        dtype = x.dtype
        kh, kw = self.kernel_size[1], self.kernel_size[0]  # torchvision's kernel_size is (x, y)
        out = F.pad(x.float(), (kw // 2, kw // 2, kh // 2, kh // 2), mode="reflect")
        c = out.shape[1]
        out = F.conv2d(out, _kernel(kh, s, out.device).view(1, 1, kh, 1).expand(c, 1, kh, 1), groups=c)
        out = F.conv2d(out, _kernel(kw, s, out.device).view(1, 1, 1, kw).expand(c, 1, 1, kw), groups=c)
        out = _back_to(out, dtype)
        return back(out if t.ndim == 4 else out[0])

    def __repr__(self) -> str:
        return f"GaussianBlur(kernel_size={self.kernel_size}, sigma={self.sigma})"


def _kernel(size: int, sigma: float, device=None) -> torch.Tensor:
    x = torch.linspace(-(size - 1) * 0.5, (size - 1) * 0.5, size, device=device)
    pdf = torch.exp(-0.5 * (x / sigma).pow(2))
    return pdf / pdf.sum()
