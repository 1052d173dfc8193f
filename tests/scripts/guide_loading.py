"""The PyTorch loading snippet of the seed guide, as a user runs it (the test changes only its import line)."""
import sys

import torch
from torchvision import datasets, transforms

root = sys.argv[1]
transform = transforms.Compose([transforms.ToTensor()])
train_set = datasets.MNIST(root=root, train=True, download=True, transform=transform)
test_set = datasets.MNIST(root=root, train=False, download=True, transform=transform)
loader = torch.utils.data.DataLoader(train_set, batch_size=64, shuffle=True)
images, labels = next(iter(loader))
print(images.shape, images.dtype, labels.shape, float(images.min()), float(images.max()), len(train_set), len(test_set))
