"""Without the explain extra: one line that says how to install it, from the library and from the command line.
Its own module, without test_explain.py's skip when Captum is missing: this is the test for exactly that case, so it
runs with or without Captum (Captum is hidden from the import system when it is installed)."""

import sys

import pytest

import mnistlab
from mnistlab.cli import invoke
from mnistlab.explain import inside


@pytest.fixture
def no_captum(monkeypatch):
    for name in [m for m in sys.modules if m == "captum" or m.startswith("captum.")] + ["captum", "captum.attr"]:
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: `import captum` raises ImportError


def test_the_library_says_how_to_install_it(no_captum):
    with pytest.raises(mnistlab.MnistlabError, match=r"pip install 'mnistlab\[explain\]'") as caught:
        inside.captum()
    assert type(caught.value).__name__ == "InvalidArgument"


def test_the_command_line_says_it_in_one_line(no_captum, tiny_run, tmp_path, capsys):
    from PIL import Image

    Image.new("L", (28, 28), 0).save(tmp_path / "d.png")
    assert invoke(["explain", str(tiny_run), str(tmp_path / "d.png")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'mnistlab[explain]'" in err


@pytest.fixture
def tiny_run(tmp_path, register):
    from mnistlab.data import catalog
    from mnistlab.training import train
    from tests.conftest import make_tiny

    tiny = make_tiny(tmp_path / "files", catalog.MNIST, n_train=40)
    register(tiny.spec)
    assert invoke(["data", "import", tiny.spec.name, str(tiny.folder)]) == 0
    return train("mlp", tiny.spec.name, out=tmp_path / "run", epochs=1).path
