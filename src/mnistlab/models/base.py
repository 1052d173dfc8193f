"""What every mnistlab net shares: input normalisation inside the model, a features/head split
for transfer learning, and cost counting (parameters, multiply-adds per image)."""

from __future__ import annotations

import torch
from torch import nn


class Net(nn.Module):
    """A classifier over (N, 1, 28, 28) float images in [0, 1].

    Subclasses build `self.features` (images -> flat feature vector of size `self.num_features`)
    and call `self.reset_classifier(num_classes)`. Normalisation by the dataset's pixel mean and
    std lives in buffers, so a saved or exported model takes plain [0, 1] images.
    """

    num_features: int

    def __init__(self, mean: float = 0.1307, std: float = 0.3081):
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


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, shape=(1, 1, 28, 28)) -> int:
    """Multiply-adds for one image, counted by hooks on conv and linear layers."""
    total = 0

    def conv_hook(mod, inp, out):
        nonlocal total
        k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
        total += out.numel() // out.shape[0] * k

    def linear_hook(mod, inp, out):
        nonlocal total
        total += out.numel() // out.shape[0] * mod.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(shape))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return total
