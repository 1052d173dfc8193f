"""The batches of one epoch, as the training step takes them: in the epoch's shuffled order, this process's
shard of each global batch, and augmented a chunk of batches at a time.

Per-image augmentation (rotation, shift, scale, shear, mirror, elastic distortion, erasing) is a fixed number
of batched operations whatever the number of images, so drawing it for 16 batches at once launches its few
dozen small kernels 16 times less often: on a GPU, where a batch of 128 digits costs about as much to
augment as to train on, that is most of the augmentation's time (BENCHMARKS.md). Each image still gets its
own random transform every epoch, drawn from the epoch's generator, so a seed reproduces the run.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from mnistlab.training.augment import Augment, augment_batch

CHUNK_BATCHES = 16


def epoch_batches(x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor, batch_size: int, augment: Augment,
                  gen: torch.Generator | None = None, *, rank: int = 0, world: int = 1, min_batch: int = 1,
                  chunk: int = CHUNK_BATCHES) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield (step index, images, labels) for each step of an epoch over x[perm].

    A global batch of fewer than `min_batch` images is skipped (batch norm cannot train on one image per
    process); with `world` processes each takes every world-th image of the global batch from `rank` on."""
    steps = (len(perm) + batch_size - 1) // batch_size
    for first in range(0, steps, chunk):
        chosen = []
        for i in range(first, min(first + chunk, steps)):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            if len(idx) >= min_batch:
                chosen.append((i, idx[rank::world]))
        if not chosen:
            continue
        idx = torch.cat([part for _, part in chosen])
        images, labels = x[idx], y[idx]
        if augment.active:
            images = augment_batch(images, augment, gen)
        sizes = [len(part) for _, part in chosen]
        for (i, _), xb, yb in zip(chosen, images.split(sizes), labels.split(sizes)):
            yield i, xb, yb
