"""A small pre-activation-free ResNet for 28x28 images, meant for the best single-model accuracy."""

from __future__ import annotations

from torch import nn

from mnistlab.models.base import MEAN, STD, Net
from mnistlab.models.cnn import conv_bn
from mnistlab.models.registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
        )
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.body(x) + self.skip(x))


class ResNet(Net):
    """Stem conv, three stages at 28, 14 and 7 pixels, global average pooling, dropout, linear head."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (24, 48, 96),
                 blocks: tuple[int, int, int] = (1, 1, 2), dropout: float = 0.2, **norm):
        super().__init__(**norm)
        layers: list[nn.Module] = [conv_bn(1, widths[0])]
        cin = widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            for j in range(n):
                layers.append(BasicBlock(cin, w, stride=2 if (i > 0 and j == 0) else 1))
                cin = w
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout)]
        self.features = nn.Sequential(*layers)
        self.num_features = cin
        self.reset_classifier(num_classes)


@register_model("resnet", family="neural",
                description="A small ResNet (24-48-96 wide, 4 residual blocks) for the best accuracy, with strong augmentation.",
                reference="He et al. 2016 (ResNet); best published MNIST single model 99.83%",
                defaults={"epochs": 20, "batch_size": 128, "optimizer": "adamw", "lr": 4e-3, "schedule": "onecycle",
                          "weight_decay": 5e-4, "augment": "strong", "label_smoothing": 0.1})
def resnet(num_classes: int = 10, mean: float = MEAN, std: float = STD, **kw) -> ResNet:
    return ResNet(num_classes, mean=mean, std=std, **kw)
