"""torchvision-style dataset classes on mnistlab's verified cache, without torchvision. A script built on
`torchvision.datasets.MNIST` changes one import line and nothing else:

    from mnistlab.datasets import MNIST          # was: from torchvision.datasets import MNIST
    train = MNIST(root="data", train=True, download=True, transform=to_tensor)
    image, label = train[0]                      # a PIL image (mode "L", 28x28) and an int, before the transforms

Same constructor arguments and behaviour as torchvision's: `root` (here, the data folder of mnistlab's
cache: the files are fetched from whichever source works and verified by checksum), `train`, `transform`,
`target_transform`, `download` (False: an error when the data are not there yet); the attributes `data`
(uint8 tensor N x 28 x 28), `targets` (int64 tensor), `classes`, `class_to_idx`; `len()`. EMNIST takes
`split=`, QMNIST `what=`; their labels follow torchvision too (EMNIST letters count from 1, class 0 is 'N/A').
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from mnistlab.data import get_spec, load_dataset
from mnistlab.errors import DatasetNotFound, InvalidArgument

__all__ = ["EMNIST", "ColoredMNIST", "FashionMNIST", "KMNIST", "MNIST", "QMNIST", "RotatedMNIST"]

NOT_FOUND = "Dataset not found. You can use download=True to download it"  # torchvision's words


class _Family(Dataset):
    """One split of a catalog dataset, as torchvision's classes present it."""

    catalog_name = "mnist"
    classes: list[str] = []

    def __init__(self, root: str | Path, train: bool = True, transform: Callable | None = None,
                 target_transform: Callable | None = None, download: bool = False):
        self.root = str(Path(root).expanduser())
        self.train = train
        self.transform, self.target_transform = transform, target_transform
        try:
            ds = load_dataset(self._name(), self._split(), data_dir=self.root, download=download)
        except DatasetNotFound:
            if download:
                raise
            raise RuntimeError(NOT_FOUND) from None
        self.data = torch.from_numpy(np.array(ds.images, dtype=np.uint8))  # a copy: the cache maps are read-only
        self.targets = torch.from_numpy(np.array(ds.labels, dtype=np.int64)) + self._label_offset()
        if not type(self).classes:
            self.classes = list(get_spec(self._name()).classes)
        self._loaded(ds)

    def _loaded(self, ds) -> None:
        """What a subclass keeps of the loaded dataset besides its images and labels."""

    def _name(self) -> str:
        return self.catalog_name

    def _split(self) -> str:
        return "train" if self.train else "test"

    def _label_offset(self) -> int:
        return 0

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        from PIL import Image

        img = Image.fromarray(self.data[index].numpy(), mode="L")
        target = int(self.targets[index])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def __repr__(self) -> str:
        lines = [f"Dataset {type(self).__name__}", f"    Number of datapoints: {len(self)}", f"    Root location: {self.root}",
                 f"    Split: {'Train' if self.train else 'Test'}"]
        if self.transform is not None:
            lines.append(f"    Transform: {self.transform!r}")
        if self.target_transform is not None:
            lines.append(f"    Target transform: {self.target_transform!r}")
        return "\n".join(lines)


class MNIST(_Family):
    catalog_name = "mnist"
    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "7 - seven",
               "8 - eight", "9 - nine"]


class FashionMNIST(_Family):
    catalog_name = "fashion-mnist"
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


class KMNIST(_Family):
    catalog_name = "kmnist"
    classes = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]


class EMNIST(_Family):
    """EMNIST(root, split="byclass" | "bymerge" | "balanced" | "letters" | "digits" | "mnist", train=...)."""

    splits = ("byclass", "bymerge", "balanced", "letters", "digits", "mnist")
    classes = []

    def __init__(self, root: str | Path, split: str, **kwargs: Any):
        if split not in self.splits:
            raise InvalidArgument(f"EMNIST split {split!r} is not one of {', '.join(self.splits)}")
        self.split = split
        super().__init__(root, **kwargs)
        if split == "letters":  # torchvision keeps the files' labels 1..26 and names class 0 'N/A'
            self.classes = ["N/A", *self.classes]

    def _name(self) -> str:
        return f"emnist-{self.split}"

    def _label_offset(self) -> int:
        return 1 if self.split == "letters" else 0


class QMNIST(_Family):
    """QMNIST(root, what="train" | "test" | "test10k" | "test50k", compat=True, train=True)."""

    subsets = ("train", "test", "test10k", "test50k")
    classes = MNIST.classes

    def __init__(self, root: str | Path, what: str | None = None, compat: bool = True, train: bool = True, **kwargs: Any):
        what = what or ("train" if train else "test")
        if what not in self.subsets:
            raise InvalidArgument(f"QMNIST what={what!r} is not one of {', '.join(self.subsets)} (the 'nist' set is not in mnistlab's catalog)")
        if not compat:
            raise InvalidArgument("QMNIST(compat=False) (the eight-column label records) is not offered; use compat=True for class labels")
        self.what, self.compat = what, compat
        super().__init__(root, train=what == "train", **kwargs)

    def _name(self) -> str:
        return "qmnist"

    def _split(self) -> str:
        return self.what


class _Environments(_Family):
    """A dataset of environments (no torchvision counterpart; DomainBed's shape): `environment=None` for every
    image, or one environment's name; `draw=N` the construction drawn with seed N (the dataset NAME@N; 0: the pinned
    one); the attribute `environments` holds each image's environment number and `environment_names` their names."""

    def __init__(self, root: str | Path, environment: str | None = None, draw: int = 0, **kwargs: Any):
        if draw:
            self.catalog_name = f"{self.catalog_name}@{draw}"
        spec = get_spec(self.catalog_name)
        if environment is not None and environment not in spec.environments:
            from mnistlab.errors import UnknownName

            raise UnknownName(f"environment of {spec.name}", environment, spec.environments)
        self.environment = environment
        self.environment_names = list(spec.environments)
        super().__init__(root, **kwargs)

    def _loaded(self, ds) -> None:
        self.environments = torch.from_numpy(np.array(ds.environments, dtype=np.int64))

    def _split(self) -> str:
        return self.environment or "train"


class ColoredMNIST(_Environments):
    """ColoredMNIST(root, environment=None | "+80%" | "+90%" | "-90%", domainbed=False, draw=0): IRM's Colored MNIST (2 x 14 x 14)
    or, with `domainbed=True`, DomainBed's (2 x 28 x 28; environments +90%, +80%, -90%). An item is a float tensor
    (2, H, W) in [0, 1], as both papers' code gives it (two channels have no PIL mode), and a label (1: digit < 5)."""

    def __init__(self, root: str | Path, environment: str | None = None, domainbed: bool = False, draw: int = 0,
                 **kwargs: Any):
        self.catalog_name = "colored-mnist-domainbed" if domainbed else "colored-mnist"
        super().__init__(root, environment, draw, **kwargs)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        img, target = self.data[index].float().div(255), int(self.targets[index])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target


class RotatedMNIST(_Environments):
    """RotatedMNIST(root, environment=None | "0" | "15" | ... | "75", draw=0): DomainBed's Rotated MNIST; an item is a PIL
    image (mode "L", 28x28) and its digit, as MNIST's."""

    catalog_name = "rotated-mnist"
    classes = MNIST.classes
