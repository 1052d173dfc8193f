"""The training data as tensors on the training device: uint8 pixels cross once and are converted there; the
pixel statistics the nets normalise by; and the evaluation of a net over a tensor split."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from mnistlab.split import Split


def _every_row(idx: np.ndarray, n: int) -> bool:
    """Whether sorted unique indices `idx` are all n rows in order."""
    return len(idx) == n and (n == 0 or idx[-1] == n - 1)


def _take(array: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """array[idx], without the copy when idx is every row in order (the usual case)."""
    return array if _every_row(idx, len(array)) else array[idx]


def pixel_stats(images: np.ndarray, idx: np.ndarray | None = None, *, chunk: int = 4096, device=None) -> tuple[float, float]:
    """Mean and std of the uint8 pixels of rows `idx` (default all), scaled to [0, 1], in float64: on a CUDA
    `device` in one reduction there (the pixels cross as uint8 and are selected there), else on the host in
    chunks (no full-size float copy)."""
    if device is not None and device.type == "cuda":
        x = _on_device(_uint8_tensor(images), idx, device).double()
        total, sq, n = float(x.sum()), float((x * x).sum()), x.numel()
        mean = total / max(n, 1) / 255
        return mean, float(np.sqrt(max(sq / max(n, 1) / 255**2 - mean**2, 1e-12)))
    images = images if idx is None else _take(images, idx)
    total, sq, n = 0.0, 0.0, 0
    for i in range(0, len(images), chunk):
        x = np.asarray(images[i:i + chunk], dtype=np.float64).reshape(-1)
        total += float(x.sum(dtype=np.float64))
        sq += float(np.dot(x, x))
        n += x.size
    mean = total / max(n, 1) / 255
    return mean, float(np.sqrt(max(sq / max(n, 1) / 255**2 - mean**2, 1e-12)))


def _uint8_tensor(images: np.ndarray):
    """A tensor over uint8 images without a host copy (the cache's read-only maps included: it is only read)."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))


def _on_device(t, idx: np.ndarray | None, device):
    """t's rows `idx` (default all) on `device`, selected there: the whole array crosses once, in one copy."""
    import torch

    t = t.to(device)
    if idx is None or _every_row(idx, len(t)):
        return t
    return t[torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(device)]


def to_tensors(images: np.ndarray, labels: np.ndarray, device, idx: np.ndarray | None = None, channels_last: bool = False):
    """Rows `idx` (default all) as float images in [0, 1] (N, C, H, W) and int64 labels on `device`. The pixels
    cross to the device as uint8, a quarter of float32's bytes, and are selected and converted there.
    channels_last: one channel, so the same bytes; only the strides say so (what the conv nets' kernels want)."""
    import torch

    x = _on_device(_uint8_tensor(images), idx, device)  # only read: selecting and converting make new tensors
    y = _on_device(torch.from_numpy(np.array(labels, dtype=np.int64)), idx, device)  # a copy: the cache maps are read-only
    x = (x.unsqueeze(1) if x.ndim == 3 else x).float().div_(255)  # (N, H, W) grey, or (N, C, H, W) already
    return (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y


@dataclass
class TrainingData:
    """A net's data on its device: the images it trains on, its validation images and the test set (None where a
    run has none), and what it needs to calibrate after training."""

    x: object
    y: object
    val: tuple | None  # (images, labels)
    test: tuple | None
    test_labels: np.ndarray | None  # the test labels on the host
    calibration: tuple[np.ndarray, np.ndarray] | None  # host uint8 images and labels, moved only when used
    channels_last: bool

    @classmethod
    def load(cls, train_ds, test_ds, split: Split, device, channels_last: bool) -> "TrainingData":
        def on_device(images, labels, idx=None):
            return to_tensors(images, labels, device, idx, channels_last)

        return cls(*on_device(train_ds.images, train_ds.labels, split.train),
                   on_device(train_ds.images[split.val], train_ds.labels[split.val]) if len(split.val) else None,
                   on_device(test_ds.images, test_ds.labels) if test_ds is not None else None,
                   np.asarray(test_ds.labels) if test_ds is not None else None,
                   (train_ds.images[split.calibration], np.asarray(train_ds.labels[split.calibration]))
                   if len(split.calibration) else None, channels_last)

    def calibration_tensors(self, device):
        images, labels = self.calibration
        return to_tensors(images, labels, device, channels_last=self.channels_last)


def evaluate_net(net, x, y, batch_size: int) -> tuple[float, float, np.ndarray]:
    """Mean cross-entropy, accuracy and float32 logits over (x, y); one wait for the device, at the end.

    In fp32 whatever the training's precision: the numbers are those of the saved weights, as
    `Run.predict`, the server and the exports compute them."""
    import torch
    import torch.nn.functional as F

    net.eval()
    if len(x) == 0:
        return 0.0, float("nan"), np.zeros((0, 0), np.float32)
    loss, out = torch.zeros((), device=x.device, dtype=torch.float64), []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            logits = net(x[i:i + batch_size]).float()
            loss += F.cross_entropy(logits, y[i:i + batch_size], reduction="sum")
            out.append(logits)
        z = torch.cat(out).cpu().numpy()
    acc = float((z.argmax(1) == y.cpu().numpy()).mean())
    return float(loss) / len(x), acc, z
