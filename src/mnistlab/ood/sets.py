"""The images a run was not trained on: the catalog's other datasets (those that are cached and share no class with
the run's dataset: Fashion-MNIST, KMNIST and EMNIST letters for a digit model, MNIST for a clothes model), and three
sets generated from a seed that need no download:

- `uniform`: every pixel uniform in 0..255 (Hendrycks & Gimpel's "Uniform");
- `gaussian`: every pixel from N(0.5, 1) clipped to [0, 1] (their "Gaussian", an isotropic Gaussian per pixel);
- `scrambled`: the run's own test images with their 7x7 grid of 4x4 blocks shuffled, a new order for each image:
  the ink and stroke of the real images, and no digit (or garment).
"""

from __future__ import annotations

import numpy as np

from mnistlab.errors import DatasetNotFound, InvalidArgument

GENERATED = ("uniform", "gaussian", "scrambled")
BLOCK = 4


def generated(name: str, n: int, seed: int, test_images: np.ndarray) -> np.ndarray:
    """`n` images (uint8, 28x28) of the generated set `name`."""
    rng = np.random.default_rng([seed, GENERATED.index(name)])
    if name == "uniform":
        return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    if name == "gaussian":
        return np.round(np.clip(rng.normal(0.5, 1.0, (n, 28, 28)), 0, 1) * 255).astype(np.uint8)
    return scramble(test_images[:n], rng)


def scramble(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image's 4x4 blocks (a 7x7 grid of them) put back in a random order of its own."""
    n, side = len(images), 28 // BLOCK
    blocks = images.reshape(n, side, BLOCK, side, BLOCK).transpose(0, 1, 3, 2, 4).reshape(n, side * side, BLOCK, BLOCK)
    order = np.argsort(rng.random((n, side * side)), axis=1)
    shuffled = np.take_along_axis(blocks, order[:, :, None, None], axis=1)
    return shuffled.reshape(n, side, side, BLOCK, BLOCK).transpose(0, 1, 3, 2, 4).reshape(n, 28, 28)


def catalog_sets(dataset: str, data_dir=None) -> tuple[list[str], list[str]]:
    """The catalog's datasets with no class in common with `dataset`: those whose test split is cached, and those
    that are not (to say how to fetch them)."""
    from mnistlab.data.cache import DatasetCache, data_home
    from mnistlab.data.catalog import get_spec, list_datasets

    own = get_spec(dataset)
    cached, missing = [], []
    for name in list_datasets():
        spec = get_spec(name)
        if name == dataset or set(own.classes) & set(spec.classes) or spec.input_shape != own.input_shape or spec.environments:
            continue
        (cached if DatasetCache(data_home(data_dir), name).meta() is not None else missing).append(name)
    return cached, missing


def choose(dataset: str, against, data_dir=None) -> list[str]:
    """The sets to measure against: `against` checked, or every cached catalog set and the generated ones."""
    cached, missing = catalog_sets(dataset, data_dir)
    if not against:
        return cached + list(GENERATED)
    chosen = []
    for name in against:
        key = str(name).strip().lower()
        if key in GENERATED or key in cached:
            chosen.append(key)
        elif key in missing:
            raise DatasetNotFound(f"{key} is not cached; mnistlab data fetch {key} (or import it), then measure against it")
        else:
            raise InvalidArgument(f"unknown set {name!r} for a {dataset} run; known: {', '.join(cached + missing + list(GENERATED))}")
    return list(dict.fromkeys(chosen))
