"""The nets of the papers on distribution shift, as their code builds them: IRM's MLP for Colored MNIST (Arjovsky et
al. 2019, `code/colored_mnist/main.py`) and DomainBed's MNIST CNN (Gulrajani & Lopez-Paz 2020, `networks.py`)."""

from __future__ import annotations

import torch
from torch import nn

from mnistlab.models.base import Net
from mnistlab.models.registry import register_model


class OneLogit(nn.Module):
    """Two classes from one output z, as logits (0, z): their softmax cross-entropy is the binary cross-entropy of z
    that IRM's code trains, and its dummy-scale penalty is the same function of z."""

    def __init__(self, width: int):
        super().__init__()
        self.linear = nn.Linear(width, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = self.linear(features)
        return torch.cat([torch.zeros_like(z), z], dim=1)


def _xavier(module: nn.Module) -> nn.Module:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return module


class IrmMLP(Net):
    """Linear-ReLU-Linear-ReLU-Linear on the flat image, Xavier-uniform weights and zero biases, no input
    normalisation (the papers' code feeds pixels / 255). `grayscale`: the channels summed first (the paper's oracle)."""

    def __init__(self, num_classes: int = 2, input_shape=(1, 28, 28), hidden: int = 256, grayscale: bool = False):
        super().__init__(mean=0.0, std=1.0)
        channels, height, width = input_shape
        self.grayscale = grayscale
        first = height * width * (1 if grayscale else channels)
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(first, hidden), nn.ReLU(True), nn.Linear(hidden, hidden),
                                      nn.ReLU(True))
        self.num_features = hidden
        self.reset_classifier(num_classes)
        _xavier(self)

    def make_head(self, num_classes: int) -> nn.Module:
        return _xavier(OneLogit(self.num_features) if num_classes == 2 else nn.Linear(self.num_features, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x.sum(dim=1, keepdim=True) if self.grayscale else x)


class DomainBedCNN(Net):
    """Four 3x3 convolutions (64, 128 stride 2, 128, 128), each followed by ReLU and then GroupNorm of 8 groups,
    global average pooling to 128 features, a linear classifier. No input normalisation, as DomainBed."""

    def __init__(self, num_classes: int = 10, input_shape=(1, 28, 28)):
        super().__init__(mean=0.0, std=1.0)
        layers: list[nn.Module] = []
        for cin, cout, stride in ((input_shape[0], 64, 1), (64, 128, 2), (128, 128, 1), (128, 128, 1)):
            layers += [nn.Conv2d(cin, cout, 3, stride, padding=1), nn.ReLU(), nn.GroupNorm(8, cout)]
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = 128
        self.reset_classifier(num_classes)


@register_model("irm-mlp", family="neural",
                description="IRM's Colored MNIST MLP: 2 hidden layers (256 wide), one output for two classes, no normalisation.",
                reference="Arjovsky et al. 2019, Table 1 (code/colored_mnist/main.py); --preset irm-colored-mnist",
                defaults={"steps": 501, "batch_size": 25000, "optimizer": "adam", "lr": 1e-3, "schedule": "none",
                          "l2_weight": 1e-3, "calibration_split": 0})
def irm_mlp(num_classes: int = 2, input_shape=(1, 28, 28), hidden: int = 256, grayscale: bool = False) -> IrmMLP:
    return IrmMLP(num_classes, tuple(input_shape), hidden, grayscale)


@register_model("domainbed-cnn", family="neural",
                description="DomainBed's MNIST CNN: 4 convs 64-128-128-128 with GroupNorm, average pooling, a linear head.",
                reference="Gulrajani & Lopez-Paz 2020 (DomainBed networks.MNIST_CNN): RotatedMNIST ERM 98.0% on average",
                defaults={"steps": 5001, "batch_size": 64, "optimizer": "adam", "lr": 1e-3, "schedule": "none",
                          "calibration_split": 0})
def domainbed_cnn(num_classes: int = 10, input_shape=(1, 28, 28)) -> DomainBedCNN:
    return DomainBedCNN(num_classes, tuple(input_shape))
