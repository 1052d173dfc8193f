"""A small conv net for the speedrun: cheap early layers (5x5 then pool), batch norm for large
learning rates, three stages, global pooling. Sized for one or two epochs on an ordinary CPU."""

from __future__ import annotations

from torch import nn

from mnistlab.models.base import MEAN, STD, Net
from mnistlab.models.registry import register_model


def _block(cin: int, cout: int, k: int, bn: bool) -> list[nn.Module]:
    # Pool first, then batch norm and ReLU on the 4x smaller map: on a CPU these element-wise layers cost as
    # much as the convolutions (max-pool and ReLU commute; batch norm after the pool is a different, equally
    # valid net).
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=k // 2, bias=not bn), nn.MaxPool2d(2)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    return layers + [nn.ReLU(inplace=True)]


class SpeedNet(Net):
    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (16, 32, 64), bn: bool = True,
                 dropout: float = 0.0, **norm):
        super().__init__(**norm)
        c1, c2, c3 = widths
        self.features = nn.Sequential(
            *_block(1, c1, 5, bn),  # 28 -> 14
            *_block(c1, c2, 3, bn),  # 14 -> 7
            *_block(c2, c3, 3, bn),  # 7 -> 3
            nn.Flatten(), nn.Dropout(dropout),
        )
        self.num_features = c3 * 3 * 3
        self.reset_classifier(num_classes)


@register_model("speednet", family="neural",
                description="The speedrun's net: 5x5 then 3x3 convs with batch norm, pooling early; one or two epochs.",
                reference="after the published 1-epoch MNIST speed recipe (5x5/3x3 conv net, Adam + OneCycle, batch 256)",
                defaults={"epochs": 1, "batch_size": 128, "optimizer": "adam", "lr": 4e-3, "schedule": "onecycle",
                          "label_smoothing": 0.1})
def speednet(num_classes: int = 10, mean: float = MEAN, std: float = STD, **kw) -> SpeedNet:
    return SpeedNet(num_classes, mean=mean, std=std, **kw)
