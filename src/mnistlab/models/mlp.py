"""The classic dense network of the MNIST guides: Flatten -> Dense 128 ReLU -> Dense 10."""

from __future__ import annotations

from torch import nn

from mnistlab.models.base import MEAN, STD, Net
from mnistlab.models.registry import register_model


class MLP(Net):
    def __init__(self, num_classes: int = 10, hidden: tuple[int, ...] = (128,), dropout: float = 0.0, **norm):
        super().__init__(**norm)
        layers: list[nn.Module] = [nn.Flatten()]
        width = 28 * 28
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.features = nn.Sequential(*layers)
        self.num_features = width
        self.reset_classifier(num_classes)


@register_model("mlp", family="neural",
                description="The guides' dense net: Flatten, Dense 128 ReLU, Dense 10 (softmax in the loss).",
                reference="TensorFlow/Keras beginner quickstart; the guides promise about 98%",
                defaults={"epochs": 5, "batch_size": 64, "optimizer": "adam", "lr": 2e-3, "schedule": "onecycle"})
def mlp(num_classes: int = 10, mean: float = MEAN, std: float = STD, **kw) -> MLP:
    return MLP(num_classes, mean=mean, std=std, **kw)


@register_model("mlp-300", family="neural",
                description="LeCun's 2-layer net: 784-300-10 (his table: 4.7% error).",
                reference="LeCun et al. 1998, table of results on MNIST",
                defaults={"epochs": 10, "batch_size": 64, "optimizer": "adam", "lr": 2e-3, "schedule": "onecycle"})
def mlp_300(num_classes: int = 10, mean: float = MEAN, std: float = STD, **kw) -> MLP:
    return MLP(num_classes, hidden=(300,), mean=mean, std=std, **kw)
