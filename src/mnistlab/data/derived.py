"""Datasets generated from the cached MNIST exactly as their papers' published code builds them, seeded, with the
generated arrays' sha256 recorded: Colored MNIST (IRM's and DomainBed's) and Rotated MNIST (DomainBed's).

Each recipe is the published code's sequence of random draws, in its order, from the generators that code uses:
NumPy's legacy global generator and PyTorch's CPU generator, here as `np.random.RandomState(seed)` and
`torch.Generator().manual_seed(seed)` (the same streams as `np.random.seed(seed)` and `torch.manual_seed(seed)`
placed before it). The images of each environment are stored one environment after another.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np

from mnistlab.data.cache import DatasetCache
from mnistlab.data.catalog import DatasetSpec
from mnistlab.errors import ChecksumError

# IRM's Colored MNIST: the colour of each environment agrees with the label except with this probability
IRM_COLOUR_FLIPS = (0.2, 0.1, 0.9)
DOMAINBED_COLOUR_FLIPS = (0.1, 0.2, 0.9)
LABEL_FLIP = 0.25  # both: the label (digit < 5) is flipped with this probability, so 75% is the best invariant accuracy
ROTATIONS = (0, 15, 30, 45, 60, 75)  # degrees, counter-clockwise, DomainBed's RotatedMNIST


def _bernoulli(p: float, n: int, gen):
    """The published `torch_bernoulli`: (torch.rand(n) < p) as 0/1 floats."""
    import torch

    return (torch.rand(n, generator=gen) < p).float()


def _colour(images: np.ndarray, digits: np.ndarray, flip: float, gen) -> tuple[np.ndarray, np.ndarray]:
    """Both papers' `make_environment`/`color_dataset`: label = digit < 5, flipped with probability 0.25; colour =
    label, flipped with probability `flip`; the image goes in the colour's channel, the other is zeroed.
    Returns uint8 images (n, 2, H, W) and int64 labels; the draws are made in the published order."""
    import torch

    labels = (torch.from_numpy(digits) < 5).float()
    labels = (labels - _bernoulli(LABEL_FLIP, len(labels), gen)).abs()
    colours = (labels - _bernoulli(flip, len(labels), gen)).abs()
    pair = np.stack([images, images], axis=1)
    pair[np.arange(len(pair)), (1 - colours).long().numpy()] = 0
    return pair, labels.long().numpy()


def colored_mnist_irm(train_images: np.ndarray, train_labels: np.ndarray, seed: int) -> tuple[list, list]:
    """IRM's `code/colored_mnist/main.py`: the first 50,000 training digits shuffled (images and labels by the same
    state), even and odd places as the two training environments, the last 10,000 (unshuffled) as the test one;
    2x subsampled to 14x14."""
    import torch

    rng, gen = np.random.RandomState(seed), torch.Generator().manual_seed(seed)
    images, labels = np.array(train_images[:50000]), np.array(train_labels[:50000], dtype=np.int64)
    state = rng.get_state()
    rng.shuffle(images)
    rng.set_state(state)
    rng.shuffle(labels)
    held_images, held_labels = np.array(train_images[50000:]), np.array(train_labels[50000:], dtype=np.int64)
    parts = ((images[::2], labels[::2]), (images[1::2], labels[1::2]), (held_images, held_labels))
    return [_colour(x[:, ::2, ::2], y, flip, gen) for (x, y), flip in zip(parts, IRM_COLOUR_FLIPS)], list(range(3))


def _domainbed_environments(images: np.ndarray, labels: np.ndarray, parts: int, gen):
    """DomainBed's `MultipleEnvironmentMNIST`: MNIST's training and test digits together, one `torch.randperm`, and
    every `parts`-th image of it for each environment."""
    import torch

    shuffle = torch.randperm(len(images), generator=gen).numpy()
    images, labels = images[shuffle], labels[shuffle]
    return [(images[i::parts], labels[i::parts]) for i in range(parts)]


def colored_mnist_domainbed(all_images: np.ndarray, all_labels: np.ndarray, seed: int):
    """DomainBed's `ColoredMNIST`: 28x28, environments +90%, +80%, -90%."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    envs = _domainbed_environments(all_images, all_labels, 3, gen)
    return [_colour(x, y, flip, gen) for (x, y), flip in zip(envs, DOMAINBED_COLOUR_FLIPS)], list(range(3))


def rotate(images: np.ndarray, degrees: float) -> np.ndarray:
    """uint8 images (n, 28, 28) rotated counter-clockwise about their centre, bilinear, black outside: what
    torchvision's `rotate(ToPILImage()(x), angle, fill=(0,), interpolation=BILINEAR)` does, which is Pillow's."""
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(x).rotate(degrees, resample=Image.BILINEAR, fillcolor=0))
                     for x in images]) if len(images) else images.copy()


def rotated_mnist_domainbed(all_images: np.ndarray, all_labels: np.ndarray, seed: int):
    """DomainBed's `RotatedMNIST`: 28x28, environments rotated 0, 15, 30, 45, 60 and 75 degrees."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    envs = _domainbed_environments(all_images, all_labels, len(ROTATIONS), gen)
    return [(rotate(x, angle), y) for (x, y), angle in zip(envs, ROTATIONS)], list(range(len(ROTATIONS)))


def _base_arrays(spec: DatasetSpec, home) -> tuple[np.ndarray, np.ndarray]:
    """The base dataset's (images, labels) from the cache (fetch.py has put a verified copy there)."""
    base = DatasetCache(home, spec.derived.base)
    if spec.derived.recipe == "colored-mnist-irm":
        return (base.load("train", "images"), base.load("train", "labels"))
    return (np.concatenate([base.load("train", "images"), base.load("test", "images")]),
            np.concatenate([base.load("train", "labels"), base.load("test", "labels")]).astype(np.int64))


RECIPES = {"colored-mnist-irm": colored_mnist_irm, "colored-mnist-domainbed": colored_mnist_domainbed,
           "rotated-mnist-domainbed": rotated_mnist_domainbed}


def build(spec: DatasetSpec, images: np.ndarray, labels: np.ndarray, seed: int | None = None) -> dict[str, np.ndarray]:
    """The dataset's arrays from its base's (images, labels): uint8 images, int64 labels and int64 environment
    numbers, environment after environment."""
    envs, numbers = RECIPES[spec.derived.recipe](images, labels, spec.derived.seed if seed is None else seed)
    return {"images": np.ascontiguousarray(np.concatenate([x for x, _ in envs])),
            "labels": np.concatenate([y for _, y in envs]).astype(np.int64),
            "environments": np.concatenate([np.full(len(y), i, np.int64) for (_, y), i in zip(envs, numbers)])}


def array_sha256(array: np.ndarray) -> str:
    """sha256 of an array's bytes in C order (its dtype and shape are the spec's)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def generate(spec: DatasetSpec, cache: DatasetCache) -> dict:
    """Build the dataset from its cached base, check it against the recorded checksums, and store it."""
    import torch

    t0 = time.perf_counter()
    arrays = build(spec, *_base_arrays(spec, cache.home))
    digests = {kind: array_sha256(a) for kind, a in arrays.items()}
    for kind, expected in spec.derived.sha256.items():
        if digests.get(kind) != expected:
            raise ChecksumError(f"{spec.name}: the generated {kind} have sha256 {digests.get(kind, '?')[:16]}..., not the "
                                f"recorded {expected[:16]}...; this NumPy {np.__version__} / PyTorch {torch.__version__} "
                                f"draws other random numbers than the ones it was recorded with: report it with these versions")
    base = DatasetCache(cache.home, spec.derived.base).meta() or {}
    how = "sha256 of the generated array" + (" (as recorded)" if spec.derived.sha256 else " (no recorded one)")
    return cache.store({("train", kind): a for kind, a in arrays.items()}, {
        "source": f"generated from {spec.derived.base} ({spec.derived.reference}, seed {spec.derived.seed})",
        "verified_by": {kind: how for kind in arrays}, "content_sha256": digests,
        "base_content_sha256": base.get("content_sha256"), "generated_seconds": round(time.perf_counter() - t0, 2),
        "numpy": np.__version__, "torch": torch.__version__})
