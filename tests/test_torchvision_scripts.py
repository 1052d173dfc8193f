"""Scripts written for torchvision run on mnistlab with their import line changed and nothing else: the guide's
PyTorch loading snippet, and a script of the shape of pytorch/examples' mnist/main.py (tests/scripts/)."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.realdata

SCRIPTS = Path(__file__).parent / "scripts"
TORCHVISION = "from torchvision import datasets, transforms"
MNISTLAB = "from mnistlab import datasets, transforms"


def _with_the_import_changed(name: str, folder: Path) -> Path:
    original = (SCRIPTS / name).read_text()
    changed = original.replace(TORCHVISION, MNISTLAB)
    differ = [(a, b) for a, b in zip(original.splitlines(), changed.splitlines()) if a != b]
    assert differ == [(TORCHVISION, MNISTLAB)]  # one line, the import
    path = folder / name
    path.write_text(changed)
    return path


def _run(script: Path, *args) -> str:
    proc = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_the_guides_loading_snippet(real_home, tmp_path):
    out = _run(_with_the_import_changed("guide_loading.py", tmp_path), real_home)
    assert out.split() == ["torch.Size([64,", "1,", "28,", "28])", "torch.float32", "torch.Size([64])", "0.0", "1.0", "60000", "10000"]


def test_an_examples_shaped_script_learns_mnist(real_home, tmp_path):
    out = _run(_with_the_import_changed("examples_mnist.py", tmp_path), real_home, 1, TRAIN_IMAGES)
    accuracy = float(out.split("test accuracy:")[1])
    assert accuracy >= FLOOR, out


# one epoch on TRAIN_IMAGES of the training images, judged on all 10,000 test digits (see BENCHMARKS.md for the time)
TRAIN_IMAGES, FLOOR = 60_000, 0.98
