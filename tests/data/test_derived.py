"""The datasets made from MNIST (Colored MNIST as IRM and DomainBed build it, Rotated MNIST) against literal
transcriptions of the published code, an independent rotation, and binomial bounds on the real data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from mnistlab.data import catalog, get_spec, load_dataset
from mnistlab.data.derived import array_sha256, build, rotate
from mnistlab.errors import InvalidArgument, MnistlabError, UnknownName


def _fake_mnist(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n).astype(np.int64)


def _irm_published(images, labels, seed):
    """code/colored_mnist/main.py of facebookresearch/InvariantRiskMinimization, line for line (torch tensors, the
    global generators), with `np.random.seed(seed); torch.manual_seed(seed)` put before it."""
    import torch

    np.random.seed(seed)
    torch.manual_seed(seed)
    data, targets = torch.from_numpy(images.copy()), torch.from_numpy(labels.copy())
    mnist_train = (data[:50000], targets[:50000])
    mnist_val = (data[50000:], targets[50000:])
    rng_state = np.random.get_state()
    np.random.shuffle(mnist_train[0].numpy())
    np.random.set_state(rng_state)
    np.random.shuffle(mnist_train[1].numpy())

    def make_environment(images, labels, e):
        def torch_bernoulli(p, size):
            return (torch.rand(size) < p).float()

        def torch_xor(a, b):
            return (a - b).abs()
        images = images.reshape((-1, 28, 28))[:, ::2, ::2]
        labels = (labels < 5).float()
        labels = torch_xor(labels, torch_bernoulli(0.25, len(labels)))
        colors = torch_xor(labels, torch_bernoulli(e, len(labels)))
        images = torch.stack([images, images], dim=1)
        images[torch.tensor(range(len(images))), (1 - colors).long(), :, :] *= 0
        return images, labels

    envs = [make_environment(mnist_train[0][::2], mnist_train[1][::2], 0.2),
            make_environment(mnist_train[0][1::2], mnist_train[1][1::2], 0.1),
            make_environment(mnist_val[0], mnist_val[1], 0.9)]
    return np.concatenate([x.numpy() for x, _ in envs]), np.concatenate([y.long().numpy() for _, y in envs])


def _domainbed_published(images, labels, seed, environments):
    """domainbed/datasets.py's MultipleEnvironmentMNIST and ColoredMNIST.color_dataset, after train.py's
    `torch.manual_seed(args.seed)`; `environments` as ColoredMNIST passes them."""
    import torch

    torch.manual_seed(seed)
    original_images, original_labels = torch.from_numpy(images.copy()), torch.from_numpy(labels.copy())
    shuffle = torch.randperm(len(original_images))
    original_images, original_labels = original_images[shuffle], original_labels[shuffle]
    out = []
    for i in range(len(environments)):
        imgs, labs = original_images[i::len(environments)], original_labels[i::len(environments)]
        labs = (labs < 5).float()
        labs = (labs - (torch.rand(len(labs)) < 0.25).float()).abs()
        colors = (labs - (torch.rand(len(labs)) < environments[i]).float()).abs()
        imgs = torch.stack([imgs, imgs], dim=1)
        imgs[torch.tensor(range(len(imgs))), (1 - colors).long(), :, :] *= 0
        out.append((imgs.numpy(), labs.view(-1).long().numpy(), shuffle[i::len(environments)].numpy()))
    return out


def test_colored_mnist_is_irms_code_draw_for_draw():
    images, labels = _fake_mnist(60000)
    for seed in (0, 3):
        ours = build(get_spec("colored-mnist"), images, labels, seed)
        theirs_x, theirs_y = _irm_published(images, labels, seed)
        assert ours["images"].shape == (60000, 2, 14, 14) and ours["images"].dtype == np.uint8
        np.testing.assert_array_equal(ours["images"], theirs_x)
        np.testing.assert_array_equal(ours["labels"], theirs_y)
        np.testing.assert_array_equal(np.bincount(ours["environments"]), [25000, 25000, 10000])


def test_colored_mnist_domainbed_is_domainbeds_code_draw_for_draw():
    images, labels = _fake_mnist(3001, seed=1)
    ours = build(get_spec("colored-mnist-domainbed"), images, labels, 0)
    theirs = _domainbed_published(images, labels, 0, [0.1, 0.2, 0.9])
    np.testing.assert_array_equal(ours["images"], np.concatenate([x for x, _, _ in theirs]))
    np.testing.assert_array_equal(ours["labels"], np.concatenate([y for _, y, _ in theirs]))
    np.testing.assert_array_equal(np.bincount(ours["environments"]), [1001, 1000, 1000])


def test_rotated_mnist_takes_domainbeds_images_and_rotates_them_counter_clockwise():
    images, labels = _fake_mnist(600, seed=2)
    ours = build(get_spec("rotated-mnist"), images, labels, 0)
    order = np.concatenate([idx for _, _, idx in _domainbed_published(images, labels, 0, [0] * 6)])
    np.testing.assert_array_equal(ours["labels"], labels[order])
    np.testing.assert_array_equal(ours["images"][ours["environments"] == 0], images[order][:100])  # 0 degrees: untouched
    np.testing.assert_array_equal(ours["images"][ours["environments"] == 5], rotate(images[order][500:], 75))


def _bilinear_rotation(img: np.ndarray, degrees: float) -> np.ndarray:
    """Counter-clockwise (on screen) about the centre: each output pixel's centre mapped back, bilinear, 0 outside."""
    h, w = img.shape
    t = np.deg2rad(degrees)
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    dx, dy = xx - w / 2, yy - h / 2
    sx = np.cos(t) * dx - np.sin(t) * dy + w / 2 - 0.5
    sy = np.sin(t) * dx + np.cos(t) * dy + h / 2 - 0.5
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = sx - x0, sy - y0
    padded = np.pad(img.astype(float), 1)

    def at(yi, xi):
        inside = (yi >= -1) & (yi <= h) & (xi >= -1) & (xi <= w)
        return np.where(inside, padded[np.clip(yi + 1, 0, h + 1), np.clip(xi + 1, 0, w + 1)], 0.0)
    return (at(y0, x0) * (1 - fx) * (1 - fy) + at(y0, x0 + 1) * fx * (1 - fy)
            + at(y0 + 1, x0) * (1 - fx) * fy + at(y0 + 1, x0 + 1) * fx * fy)


@pytest.mark.parametrize("degrees", [15, 45, 75])
def test_rotation_is_the_bilinear_rotation_written_out(degrees):
    rng = np.random.default_rng(degrees)
    images = np.zeros((20, 28, 28), np.uint8)
    for img in images:  # strokes, as digits have: a few thick bars
        for _ in range(3):
            r, c = rng.integers(4, 22, size=2)
            img[r:r + 3, c:c + 8] = 255
    ours = rotate(images, degrees).astype(float)
    written = np.stack([_bilinear_rotation(i, degrees) for i in images])
    mirrored = np.stack([_bilinear_rotation(i, -degrees) for i in images])
    assert np.abs(ours - written).mean() < 0.5  # Pillow's fixed-point arithmetic: off by a grey level here and there
    assert np.abs(ours - mirrored).mean() > 5


def test_the_seed_decides_the_dataset():
    images, labels = _fake_mnist(60000)
    spec = get_spec("colored-mnist")
    a, b, c = build(spec, images, labels, 0), build(spec, images, labels, 0), build(spec, images, labels, 1)
    assert all(array_sha256(a[k]) == array_sha256(b[k]) for k in a)
    assert array_sha256(a["labels"]) != array_sha256(c["labels"])


def test_environments_are_splits_and_bad_names_are_one_line(home, monkeypatch):
    spec = get_spec("colored-mnist")
    assert spec.splits == ("train", "+80%", "+90%", "-90%") and spec.input_shape == (2, 14, 14)
    assert spec.subsets["-90%"] == ("train", 50000, 60000)
    with pytest.raises(UnknownName, match="did you mean"):
        load_dataset("colored-mnist", "-80%", download=False)
    with pytest.raises(MnistlabError, match="generated from mnist"):
        from mnistlab.data import import_files

        import_files("rotated-mnist", home)


def test_another_draw_is_named_by_its_seed_and_bad_draws_are_one_line():
    pinned, third = get_spec("colored-mnist"), get_spec("Colored_MNIST@3")
    assert get_spec("colored-mnist@0") is pinned  # the pinned draw, checked against its recorded sha256
    assert third.name == "colored-mnist@3" and third.derived.seed == 3 and third.derived.sha256 == {}
    assert third.splits == pinned.splits and third.derived.recipe == pinned.derived.recipe
    for bad, words in (("mnist@2", "only a generated dataset has other draws"), ("rotated-mnist@x", "a whole number"),
                       ("rotated-mnist@-1", "a whole number"), ("rotated-mnist@\u00b3", "a whole number")):
        with pytest.raises(InvalidArgument, match=words):
            get_spec(bad)


def test_no_derived_dataset_counts_as_an_ood_set_for_digits():
    from mnistlab.ood.sets import catalog_sets

    cached, missing = catalog_sets("mnist")
    assert not {s.name for s in catalog.DERIVED} & set(cached + missing)


# ------------------------------------------------------------------------------------------ real MNIST

def _binomial_ok(hits: int, n: int, p: float) -> bool:
    """Within the central 99.99% of Binomial(n, p)."""
    lo, hi = binom.ppf(5e-5, n, p), binom.ppf(1 - 5e-5, n, p)
    return lo <= hits <= hi


@pytest.mark.realdata
def test_colored_mnist_on_real_mnist(real_home):
    ds = load_dataset("colored-mnist", data_dir=real_home)
    meta_sha = {k: array_sha256(getattr(ds, k)) for k in ("images", "labels", "environments")}
    assert meta_sha == get_spec("colored-mnist").derived.sha256  # what every machine generates
    mnist = load_dataset("mnist", data_dir=real_home)
    perm = np.random.RandomState(0).permutation(50000)  # the published shuffle, as a permutation of places
    digits = np.concatenate([mnist.labels[:50000][perm][::2], mnist.labels[:50000][perm][1::2], mnist.labels[50000:]])
    sources = np.concatenate([perm[::2], perm[1::2], np.arange(50000, 60000)])
    grey = ds.images.max(axis=1)  # the one channel with ink
    np.testing.assert_array_equal(grey, mnist.images[sources][:, ::2, ::2])
    assert not (ds.images[:, 0].any(axis=(1, 2)) & ds.images[:, 1].any(axis=(1, 2))).any()
    colour = ds.images[:, 1].any(axis=(1, 2)).astype(int)
    for e, flip in enumerate((0.2, 0.1, 0.9)):
        rows = ds.environments == e
        n = int(rows.sum())
        assert _binomial_ok(int((colour[rows] == ds.labels[rows]).sum()), n, 1 - flip)
        assert _binomial_ok(int((ds.labels[rows] == (digits[rows] < 5)).sum()), n, 0.75)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["colored-mnist-domainbed", "rotated-mnist"])
def test_domainbed_datasets_on_real_mnist(real_home, name):
    import torch

    ds = load_dataset(name, data_dir=real_home)
    assert {k: array_sha256(getattr(ds, k)) for k in ("images", "labels", "environments")} == get_spec(name).derived.sha256
    train, test = load_dataset("mnist", data_dir=real_home), load_dataset("mnist", "test", data_dir=real_home)
    all_images = np.concatenate([train.images, test.images])
    all_digits = np.concatenate([train.labels, test.labels])
    parts = len(get_spec(name).environments)
    shuffle = torch.randperm(70000, generator=torch.Generator().manual_seed(0)).numpy()
    sources = np.concatenate([shuffle[i::parts] for i in range(parts)])
    if name == "rotated-mnist":
        np.testing.assert_array_equal(ds.labels, all_digits[sources])
        first = ds.environments == 0
        np.testing.assert_array_equal(ds.images[first], all_images[sources][first])
        return
    np.testing.assert_array_equal(ds.images.max(axis=1), all_images[sources])
    colour = ds.images[:, 1].any(axis=(1, 2)).astype(int)
    for e, flip in enumerate((0.1, 0.2, 0.9)):
        rows = ds.environments == e
        n = int(rows.sum())
        assert _binomial_ok(int((colour[rows] == ds.labels[rows]).sum()), n, 1 - flip)
        assert _binomial_ok(int((ds.labels[rows] == (all_digits[sources][rows] < 5)).sum()), n, 0.75)


@pytest.mark.realdata
def test_torchvision_style_classes_take_an_environment(real_home):
    from mnistlab.datasets import ColoredMNIST, RotatedMNIST

    test_env = ColoredMNIST(real_home, "-90%")
    image, label = test_env[0]
    assert len(test_env) == 10000 and image.shape == (2, 14, 14) and float(image.max()) <= 1.0 and label in (0, 1)
    assert set(test_env.environments.tolist()) == {2} and test_env.environment_names == ["+80%", "+90%", "-90%"]
    assert ColoredMNIST(real_home, domainbed=True)[0][0].shape == (2, 28, 28)
    rotated = RotatedMNIST(real_home, "75")
    assert len(rotated) == 11666 and rotated[0][0].size == (28, 28)
    with pytest.raises(UnknownName, match="did you mean"):
        RotatedMNIST(real_home, "90")
    drawn = ColoredMNIST(real_home, "-90%", draw=3, download=True)  # the dataset colored-mnist@3, generated if new
    assert drawn.targets.tolist() == load_dataset("colored-mnist@3", "-90%", data_dir=real_home).labels.tolist()
    assert drawn.targets.tolist() != test_env.targets.tolist()


@pytest.mark.realdata
def test_another_draw_of_colored_mnist_on_real_mnist(real_home, tmp_path):
    """colored-mnist@3: IRM's construction run with seed 3 on the real MNIST, cached beside the pinned draw, its
    sha256 recorded in the cache and in a run's config."""
    from mnistlab.data.cache import DatasetCache

    mnist = load_dataset("mnist", data_dir=real_home)
    ds = load_dataset("colored-mnist@3", data_dir=real_home)
    theirs_x, theirs_y = _irm_published(mnist.images, mnist.labels, 3)
    np.testing.assert_array_equal(ds.images, theirs_x)
    np.testing.assert_array_equal(ds.labels, theirs_y)
    pinned = load_dataset("colored-mnist", data_dir=real_home)
    assert array_sha256(ds.images) != array_sha256(pinned.images)  # another shuffle and other colours
    meta = DatasetCache(real_home, "colored-mnist@3").meta()
    assert meta["content_sha256"]["images"] == array_sha256(ds.images) and "seed 3" in meta["source"]
    assert len(load_dataset("colored-mnist@3", "-90%", data_dir=real_home)) == 10000
    from mnistlab.training import train  # and a run says which draw it trained on

    run = train("irm-mlp", "colored-mnist@3", out=tmp_path / "draw-run", data_dir=real_home, steps=2,
                batch_size=256, test_environment="-90%", model_args={"hidden": 8}, calibration_split=0)
    assert run.config["dataset"] == "colored-mnist@3"
    assert run.config["dataset_sha256"]["images"] == array_sha256(ds.images)
