"""torchvision-style datasets: a typical torchvision training script runs on real MNIST with one import
line changed; the classes behave as torchvision's (items, attributes, errors, EMNIST's and QMNIST's labels)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

import mnistlab
from mnistlab.data import catalog, import_files
from mnistlab.datasets import EMNIST, MNIST, QMNIST, FashionMNIST
from mnistlab.errors import InvalidArgument
from tests.conftest import make_tiny

# A torchvision tutorial's script, its one import line changed: DataLoader with worker processes, a transform
SCRIPT = textwrap.dedent('''
    import sys
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Subset
    from mnistlab.datasets import MNIST          # was: from torchvision.datasets import MNIST

    def to_tensor(img):                          # torchvision.transforms.ToTensor, then Normalize
        return (torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).unsqueeze(0) - 0.1307) / 0.3081

    if __name__ == "__main__":
        torch.manual_seed(0)
        train = MNIST(sys.argv[1], train=True, download=True, transform=to_tensor)
        test = MNIST(sys.argv[1], train=False, transform=to_tensor)
        loader = DataLoader(Subset(train, range(12000)), batch_size=64, shuffle=True, num_workers=2)
        net = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        for x, y in loader:
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        correct = 0
        with torch.no_grad():
            for x, y in DataLoader(test, batch_size=1000, num_workers=2):
                correct += (net(x).argmax(1) == y).sum().item()
        print(len(train), len(test), correct / len(test))
''')


@pytest.mark.realdata
def test_a_torchvision_script_runs_with_one_import_changed(real_home, tmp_path):
    script = tmp_path / "train_mnist.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(real_home)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    n_train, n_test, acc = done.stdout.split()
    assert (int(n_train), int(n_test)) == (60000, 10000) and float(acc) > 0.9


@pytest.mark.realdata
def test_items_and_attributes_are_torchvisions(real_home):
    train = MNIST(real_home, train=True)
    ours = mnistlab.load_dataset("mnist", "train", data_dir=real_home)
    img, target = train[0]
    assert isinstance(img, Image.Image) and img.mode == "L" and img.size == (28, 28) and type(target) is int
    assert (np.asarray(img) == ours.images[0]).all() and target == int(ours.labels[0]) == 5
    assert train.data.dtype == torch.uint8 and tuple(train.data.shape) == (60000, 28, 28)
    assert train.targets.dtype == torch.int64 and train.targets[:10].tolist() == ours.labels[:10].tolist()
    assert train.classes[5] == "5 - five" and train.class_to_idx["5 - five"] == 5 and len(train) == 60000
    assert repr(train).splitlines()[:2] == ["Dataset MNIST", "    Number of datapoints: 60000"]
    test = FashionMNIST(real_home, train=False, transform=np.asarray, target_transform=lambda t: t * 10)
    x, y = test[0]
    assert x.shape == (28, 28) and y == 90 and test.classes[9] == "Ankle boot" and len(test) == 10000


def test_missing_data_without_download_is_torchvisions_error(tmp_path):
    with pytest.raises(RuntimeError, match="^Dataset not found. You can use download=True to download it$"):
        MNIST(tmp_path / "empty", train=True, download=False)
    assert not (tmp_path / "empty").exists() or not any((tmp_path / "empty").rglob("*.npy"))


def test_emnist_letters_count_from_one_as_in_torchvision(tmp_path, register, monkeypatch):
    tiny = make_tiny(tmp_path / "files", catalog.get_spec("emnist-letters"), name="tiny-emnist-letters")
    register(tiny.spec)
    import_files(tiny.spec, tiny.folder, data_dir=tmp_path / "home")
    monkeypatch.setattr(EMNIST, "_name", lambda self: "tiny-emnist-letters")
    letters = EMNIST(tmp_path / "home", split="letters", train=True)
    assert letters.classes[0] == "N/A" and letters.classes[1] == "a" and len(letters.classes) == 27
    assert letters.targets.tolist() == (tiny.arrays[("train", "labels")] + 1).tolist()
    assert letters.targets.min() >= 1 and letters[0][1] == int(tiny.arrays[("train", "labels")][0]) + 1
    with pytest.raises(InvalidArgument, match="EMNIST split 'letterz' is not one of"):
        EMNIST(tmp_path / "home", split="letterz")


def test_qmnist_subsets(tmp_path, register, monkeypatch):
    tiny = make_tiny(tmp_path / "files", catalog.get_spec("qmnist"), name="tiny-qmnist", n_test=40)
    spec = register(tiny.spec)
    import_files(spec, tiny.folder, data_dir=tmp_path / "home")
    monkeypatch.setattr(QMNIST, "_name", lambda self: "tiny-qmnist")
    assert len(QMNIST(tmp_path / "home", what="train")) == 30 and len(QMNIST(tmp_path / "home", train=False)) == 40
    with pytest.raises(InvalidArgument, match="compat=False"):
        QMNIST(tmp_path / "home", compat=False)
    with pytest.raises(InvalidArgument, match="'nist' set is not in mnistlab's catalog"):
        QMNIST(tmp_path / "home", what="nist")
