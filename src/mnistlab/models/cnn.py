"""Convolutional nets: the guides' CNN exactly, LeNet-5, and a CNN with batch norm and dropout."""

from __future__ import annotations

from torch import nn

from mnistlab.models.base import MEAN, STD, Net
from mnistlab.models.registry import register_model


class GuideCNN(Net):
    """Conv 32 3x3 ReLU, MaxPool 2, Conv 64 3x3 ReLU, MaxPool 2, Flatten, Dense 128 ReLU, Dense classes."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.0, **norm):
        super().__init__(**norm)
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 28 -> 26 -> 13
            nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 13 -> 11 -> 5
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(64 * 5 * 5, 128), nn.ReLU(inplace=True),
        )
        self.num_features = 128
        self.reset_classifier(num_classes)


class LeNet5(Net):
    """LeNet-5's layout (6 and 16 feature maps of 5x5, then 120, 84), with ReLU and max-pooling."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.0, **norm):
        super().__init__(**norm)
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 28 -> 14
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 14 -> 10 -> 5
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
        )
        self.num_features = 84
        self.reset_classifier(num_classes)


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, bn: bool = True) -> nn.Sequential:
    """Conv, batch norm, ReLU (without batch norm the conv has its own bias)."""
    norm = [nn.BatchNorm2d(cout)] if bn else []
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=not bn), *norm, nn.ReLU(inplace=True))


class CNNBN(Net):
    """Two double-conv blocks with batch norm, max-pool and dropout, then a dense layer: the guides'
    'improve it' step."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.25, width: int = 32, batch_norm: bool = True, **norm):
        super().__init__(**norm)
        w, bn = width, batch_norm  # batch_norm=False: the same net without it, to measure what it brings
        self.features = nn.Sequential(
            conv_bn(1, w, bn=bn), conv_bn(w, w, bn=bn), nn.MaxPool2d(2), nn.Dropout(dropout),  # 14x14
            conv_bn(w, 2 * w, bn=bn), conv_bn(2 * w, 2 * w, bn=bn), nn.MaxPool2d(2), nn.Dropout(dropout),  # 7x7
            nn.Flatten(), nn.Linear(2 * w * 7 * 7, 256, bias=not bn), *([nn.BatchNorm1d(256)] if bn else []),
            nn.ReLU(inplace=True), nn.Dropout(2 * dropout),
        )
        self.num_features = 256
        self.reset_classifier(num_classes)


@register_model("cnn", family="neural",
                description="The guides' CNN exactly: Conv32-Pool-Conv64-Pool-Dense128-Dense.",
                reference="Keras/TensorFlow MNIST CNN guide; promises over 99%",
                defaults={"epochs": 4, "batch_size": 64, "optimizer": "adam", "lr": 3e-3, "schedule": "onecycle"})
def cnn(num_classes: int = 10, mean: float = MEAN, std: float = STD, **kw) -> GuideCNN:
    return GuideCNN(num_classes, mean=mean, std=std, **kw)


@register_model("lenet5", family="neural",
                description="LeNet-5 (6-16-120-84) with ReLU and max-pooling.",
                reference="LeCun et al. 1998: LeNet-5, 0.95% error",
                defaults={"epochs": 6, "batch_size": 64, "optimizer": "adam", "lr": 3e-3, "schedule": "onecycle"})
def lenet5(num_classes: int = 10, mean: float = MEAN, std: float = STD, **kw) -> LeNet5:
    return LeNet5(num_classes, mean=mean, std=std, **kw)


@register_model("cnn-bn", family="neural",
                description="A 4-conv CNN with batch norm and dropout, trained with light augmentation.",
                reference="the guides' batch-norm + dropout + augmentation step",
                defaults={"epochs": 8, "batch_size": 128, "optimizer": "adamw", "lr": 4e-3, "schedule": "onecycle",
                          "weight_decay": 5e-4, "augment": "light"})
def cnn_bn(num_classes: int = 10, mean: float = MEAN, std: float = STD, **kw) -> CNNBN:
    return CNNBN(num_classes, mean=mean, std=std, **kw)
