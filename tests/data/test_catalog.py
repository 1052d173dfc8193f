import dataclasses
import re

import pytest

from mnistlab import get_spec, list_datasets
from mnistlab.data import catalog
from mnistlab.errors import MnistlabError, UnknownName

ALL = ["mnist", "fashion-mnist", "kmnist", "emnist-balanced", "emnist-byclass", "emnist-bymerge", "emnist-digits",
       "emnist-letters", "emnist-mnist", "qmnist"] + [
    f"mnist-c-{c}" for c in ("shot-noise", "impulse-noise", "glass-blur", "motion-blur", "shear", "scale", "rotate",
                             "brightness", "translate", "stripe", "fog", "spatter", "dotted-line", "zigzag", "canny-edges")]


def test_mnist_c_is_a_family_of_fifteen_from_one_archive():
    from mnistlab.data.catalog import FAMILIES, family_members

    assert family_members("MNIST_C") == FAMILIES["mnist-c"] and len(FAMILIES["mnist-c"]) == 15
    assert family_members("mnist") == ("mnist",)
    assert {get_spec(n).archive.sha256 for n in FAMILIES["mnist-c"]} == {
        "af9ee8c6a815870c7fdde5af84c7bf8db0bcfa1f41056db83871037fba70e493"}
    with pytest.raises(MnistlabError, match="family of 15"):
        get_spec("mnist-c")


GENERATED = ["colored-mnist", "colored-mnist-domainbed", "rotated-mnist"]


def test_catalog_has_the_whole_family():
    assert sorted(list_datasets()) == sorted(ALL + GENERATED)


@pytest.mark.parametrize("name", GENERATED)
def test_every_generated_spec_is_pinned(name):
    spec = get_spec(name)
    assert spec.derived.base == "mnist" and spec.files == () and spec.licence and spec.citation
    assert set(spec.derived.sha256) == {"images", "labels", "environments"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in spec.derived.sha256.values())
    assert sum(spec.subsets[e][2] - spec.subsets[e][1] for e in spec.environments) == spec.sizes["train"]


@pytest.mark.parametrize("name", ALL)
def test_every_spec_is_complete(name):
    spec = get_spec(name)
    assert len(spec.files) == 4 and {(f.split, f.kind) for f in spec.files} == {
        (s, k) for s in ("train", "test") for k in ("images", "labels")}
    assert spec.mirrors or spec.archive, "every dataset needs an official source"
    assert spec.licence and spec.citation and spec.homepage
    assert len(set(spec.classes)) == spec.num_classes
    for f in spec.files:
        assert f.md5 is None or re.fullmatch(r"[0-9a-f]{32}", f.md5)
        assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256)
    # a spec published over plain http must still be pinned by checksums
    assert all(f.md5 or f.sha256 for f in spec.files) or spec.archive.md5


@pytest.mark.parametrize("name, n_classes, n_train, n_test", [
    ("mnist", 10, 60000, 10000), ("emnist-byclass", 62, 697932, 116323), ("emnist-balanced", 47, 112800, 18800),
    ("emnist-letters", 26, 124800, 20800), ("emnist-digits", 10, 240000, 40000), ("qmnist", 10, 60000, 60000),
])
def test_published_sizes(name, n_classes, n_train, n_test):
    spec = get_spec(name)
    assert (spec.num_classes, spec.sizes["train"], spec.sizes["test"]) == (n_classes, n_train, n_test)


def test_published_checksums_are_recorded():
    mnist = get_spec("mnist")
    assert mnist.file("train", "images").md5 == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert mnist.file("test", "labels").md5 == "ec29112dd5afa0611ce80d1b7f02629c"
    assert mnist.mirrors[-1].startswith("http://yann.lecun.com"), "LeCun's host is tried last"
    assert get_spec("emnist-letters").archive.md5 == "58c8d27c78d21e728a6bc7b3cc06412e"
    assert get_spec("qmnist").file("test", "labels").name == "qmnist-test-labels-idx2-int.gz"


def test_unknown_name_suggests():
    with pytest.raises(UnknownName, match="did you mean 'mnist'"):
        get_spec("mnsit")
    with pytest.raises(UnknownName, match="known: "):
        get_spec("cifar10")
    assert get_spec("Fashion_MNIST").name == "fashion-mnist"


def test_duplicate_registration_is_refused():
    with pytest.raises(MnistlabError, match="already registered"):
        catalog.register_dataset(dataclasses.replace(get_spec("mnist")))
