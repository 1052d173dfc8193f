"""Loading a cached dataset in milliseconds: memory-mapped NumPy arrays in a small dataclass.

The first call fetches and verifies (see fetch.py); every later call maps the cached .npy files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnistlab.data.cache import DatasetCache, data_home
from mnistlab.data.catalog import DatasetSpec, get_spec
from mnistlab.data.fetch import fetch
from mnistlab.errors import DatasetNotFound, UnknownName


@dataclass(frozen=True)
class Dataset:
    """One split of a dataset.

    images: uint8 array of shape (N, 28, 28), 0 = background, 255 = full ink, upright; (N, C, H, W) for a dataset
    of C > 1 colour channels (Colored MNIST: (N, 2, 14, 14) or (N, 2, 28, 28)).
    labels: int64 array of shape (N,), values 0 .. len(classes)-1.
    environments: for a dataset of several environments (Colored and Rotated MNIST), each image's, else None.
    Both are read-only memory maps of the cache; copy them (``np.array(ds.images)``) to modify.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    spec: DatasetSpec
    split: str
    environments: np.ndarray | None = None  # int64 (N,): each image's environment, an index into environment_names

    @property
    def environment_names(self) -> tuple[str, ...]:
        return self.spec.environments

    def in_environment(self, name: str) -> np.ndarray:
        """The row numbers of the images of one environment."""
        if name not in self.environment_names:
            raise UnknownName(f"environment of {self.spec.name}", name, self.environment_names)
        return np.flatnonzero(self.environments == self.environment_names.index(name))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return f"Dataset({self.spec.name!r}, split={self.split!r}, n={len(self)}, classes={len(self.classes)})"

    def to_torch(self, *, normalize: bool = True, device=None):
        """A `torch.utils.data.TensorDataset` of (images, labels), copied once from the cache.

        images: float32 (N, 1, 28, 28) in [0, 1] when `normalize`, else uint8 (N, 1, 28, 28);
        labels: int64 (N,). Batches can then be sliced from `.tensors` without per-sample work.
        """
        import torch

        x = torch.from_numpy(np.array(self.images, copy=True))  # the one copy out of the read-only map
        x = x.unsqueeze(1) if x.ndim == 3 else x
        y = torch.from_numpy(np.array(self.labels, copy=True))
        if device is not None:
            x, y = x.to(device), y.to(device)
        if normalize:
            x = x.float().div_(255.0)
        return torch.utils.data.TensorDataset(x, y)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.classes))


def load_dataset(name: str | DatasetSpec, split: str = "train", *, data_dir=None, download: bool = True,
                 progress: bool = False) -> Dataset:
    """Load one split of a dataset from the cache, fetching and verifying it first if needed.

    Args:
        name: a catalog name (see `list_datasets()`), e.g. "mnist", "fashion-mnist", "emnist-letters".
        split: "train" or "test" (QMNIST also has "test10k", MNIST's own test digits, and "test50k"). A dataset of
            environments (colored-mnist, colored-mnist-domainbed, rotated-mnist) has every image in "train", with
            `environments` saying whose each is, and each environment as a split of its own ("-90%", "15").
        data_dir: cache folder; default $MNISTLAB_HOME or ~/.cache/mnistlab.
        download: if False, raise DatasetNotFound instead of fetching.

    Returns a Dataset with `images` uint8 (N, 28, 28), values 0..255, and `labels` int64 (N,).

    Example:
        >>> ds = load_dataset("mnist", "test")
        >>> ds.images.shape, ds.labels[:3]
        ((10000, 28, 28), array([7, 2, 1]))

    Each dataset keeps its owners' licence, given in `ds.spec.licence` (MNIST: CC BY-SA 3.0).
    """
    spec = get_spec(name)
    if split not in spec.splits:
        raise UnknownName(f"split of {spec.name}", split, spec.splits)
    cache = DatasetCache(data_home(data_dir), spec.name)
    meta = cache.meta()
    if meta is None or cache.check(meta):
        if not download:
            raise DatasetNotFound(f"{spec.name} is not in the cache at {cache.dir}; run: mnistlab data fetch {spec.name}")
        fetch(spec, data_dir=data_dir, progress=progress)
    base, start, stop = spec.subsets.get(split, (split, None, None))
    images = cache.load(base, "images")[start:stop]
    labels = cache.load(base, "labels")[start:stop]
    environments = cache.load(base, "environments")[start:stop] if spec.environments else None
    return Dataset(images, labels, spec.classes, spec, split, environments)


def load_data(name: str | DatasetSpec = "mnist", *, data_dir=None):
    """Keras-style: `(x_train, y_train), (x_test, y_test)` as uint8 images (N, 28, 28) and int64 labels.

    >>> (x_train, y_train), (x_test, y_test) = load_data("mnist")
    >>> x_train.shape, x_test.shape
    ((60000, 28, 28), (10000, 28, 28))
    """
    train = load_dataset(name, "train", data_dir=data_dir)
    test = load_dataset(name, "test", data_dir=data_dir)
    return (train.images, train.labels), (test.images, test.labels)
