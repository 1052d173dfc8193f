"""An et al. 2020's simple CNNs: a stack of KxK convolutions with batch norm and ReLU, no padding and no
pooling (each layer shrinks the map by K-1 pixels), then one linear layer with batch norm. Three kernel
sizes give three nets that see digits differently, the members of their 99.87% ensemble."""

from __future__ import annotations

from torch import nn

from mnistlab.models.base import MEAN, STD, Net
from mnistlab.models.registry import register_model

# the published layouts: kernel size -> channels of each layer (M3, M5, M7)
LAYOUTS = {3: (32, 48, 64, 80, 96, 112, 128, 144, 160, 176), 5: (32, 64, 96, 128, 160), 7: (48, 96, 144, 192)}


class SimpleCNN(Net):
    def __init__(self, num_classes: int = 10, kernel: int = 5, width: float = 1.0, dropout: float = 0.0, **norm):
        super().__init__(**norm)
        if kernel not in LAYOUTS:
            raise ValueError(f"kernel must be one of {sorted(LAYOUTS)}, got {kernel!r}")
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        layers: list[nn.Module] = []
        cin, size = 1, 28
        for channels in LAYOUTS[kernel]:
            cout = max(1, round(channels * width))
            layers += [nn.Conv2d(cin, cout, kernel, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin, size = cout, size - (kernel - 1)
        self.features = nn.Sequential(*layers, nn.Flatten(), nn.Dropout(dropout))
        self.num_features = cin * size * size
        self.reset_classifier(num_classes)

    def make_head(self, num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Linear(self.num_features, num_classes, bias=False), nn.BatchNorm1d(num_classes))


@register_model("simplecnn", family="neural",
                description="An et al.'s simple CNN: 5x5 convs (kernel=3 or 7 for the others) with batch norm, no pooling.",
                reference="An et al. 2020: M3/M5/M7, 99.87% as a three-net majority vote after 150 epochs each",
                # the paper's settings (Adam 1e-3, batch 120, weight average 0.999, rotations of 20 degrees and
                # shifts of 20%) on a one-cycle schedule of 15 epochs instead of a 0.98 decay over 150
                defaults={"epochs": 15, "batch_size": 120, "optimizer": "adam", "lr": 1e-3, "schedule": "onecycle",
                          "ema": 0.999, "augment": "rotate=20,shift=0.2"})
def simplecnn(num_classes: int = 10, mean: float = MEAN, std: float = STD, **kw) -> SimpleCNN:
    return SimpleCNN(num_classes, mean=mean, std=std, **kw)
