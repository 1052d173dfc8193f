"""What every mnistlab net shares: input normalisation inside the model, a features/head split
for transfer learning, and cost counting (parameters, multiply-adds per image)."""

from __future__ import annotations

import torch
from torch import nn

# MNIST's training-set pixel mean and std: the default until a run hands a factory its dataset's own (a factory asks
# for them by naming `mean` and `std` parameters; mnistlab/models/registry.py)
MEAN, STD = 0.1307, 0.3081


class Net(nn.Module):
    """A classifier over (N, 1, 28, 28) float images in [0, 1].

    Subclasses build `self.features` (images -> flat feature vector of size `self.num_features`)
    and call `self.reset_classifier(num_classes)`. Normalisation by the dataset's pixel mean and
    std lives in buffers, so a saved or exported model takes plain [0, 1] images.
    """

    num_features: int

    def __init__(self, mean: float = MEAN, std: float = STD):
        super().__init__()
        self.register_buffer("input_mean", torch.tensor(float(mean)))
        self.register_buffer("input_std", torch.tensor(float(std)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - self.input_mean) / self.input_std)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """A new, freshly initialised head for `num_classes` (the backbone is kept)."""
        self.num_classes = num_classes
        self.head = self.make_head(num_classes)

    def make_head(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes)


def has_convolutions(model: nn.Module) -> bool:
    """Whether `model` has a Conv2d: then it and its batches go channels_last, about 2x faster convolutions and
    pooling on CPUs (oneDNN) as on GPUs (DomainBed's CNN: 18% faster steps, 46% faster evaluation;
    benchmarks/shift_speed.py)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, shape=(1, 1, 28, 28)) -> int:
    """Multiply-adds for one image: half the floating-point operations that PyTorch's flop counter finds in a
    forward pass (matrix products and convolutions, whatever module holds them)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(shape))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
