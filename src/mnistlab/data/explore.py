"""Looking at a dataset: summary statistics, a picture of samples per class, export to PNG or CSV."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from mnistlab.data.cache import DatasetCache, atomic_write, atomic_write_bytes, data_home, ensure_dir
from mnistlab.data.catalog import get_spec
from mnistlab.data.dataset import load_dataset
from mnistlab.errors import InvalidArgument


def dataset_info(name: str, *, data_dir=None) -> dict:
    """Sizes, class balance, pixel mean/std (of x/255), provenance and checksum status of a dataset."""
    spec = get_spec(name)
    cache = DatasetCache(data_home(data_dir), spec.name)
    info = {"name": spec.name, "title": spec.title, "classes": list(spec.classes), "licence": spec.licence,
            "citation": spec.citation, "homepage": spec.homepage, "cache": str(cache.dir), "splits": {}}
    for split in (*spec.sizes, *spec.environments):
        ds = load_dataset(spec, split, data_dir=data_dir)
        x = ds.images.reshape(len(ds), -1)
        # float64 sums over uint8 rows: exact enough and no (N, 784) float copy
        mean = float(x.sum(dtype=np.float64) / x.size / 255)
        sq = float(np.einsum("ij,ij->", x, x, dtype=np.float64) / x.size / 255**2)
        info["splits"][split] = {"n": len(ds), "class_counts": ds.class_counts().tolist(),
                                 "mean": mean, "std": float(np.sqrt(max(sq - mean**2, 0.0)))}
    meta = cache.meta() or {}
    info["source"] = meta.get("source")
    info["verified_by"] = meta.get("verified_by")
    info["content_sha256"] = meta.get("content_sha256")
    info["stored_at"] = meta.get("stored_at")
    if spec.derived is not None:
        info["environments"] = list(spec.environments)
        info["derived"] = {"base": spec.derived.base, "reference": spec.derived.reference, "seed": spec.derived.seed,
                           "base_content_sha256": meta.get("base_content_sha256")}
    return info


def shown(image: np.ndarray) -> np.ndarray:
    """An image as matplotlib shows it: (H, W) grey as it is; two colour channels (Colored MNIST) as red and
    green ink on black, (H, W, 3) uint8."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image
    if image.shape[0] == 1:
        return image[0]
    rgb = np.zeros((*image.shape[1:], 3), np.uint8)
    rgb[..., :min(3, image.shape[0])] = np.moveaxis(image[:3], 0, -1)
    return rgb


def _figure(rows: list[tuple[str, list[np.ndarray]]], title: str, cols: int, vmax: float = 255):
    """A grid of images, one labelled row each, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), cols, figsize=(cols * 0.62 + 1.4, len(rows) * 0.62 + 0.6), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for col in range(cols):
            ax = axes[r, col]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if col < len(images):
                ax.imshow(shown(images[col]), cmap="gray_r", vmin=0, vmax=vmax, interpolation="nearest")
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _shown_classes(n: int) -> list[int]:
    # keep it readable for EMNIST byclass: at most 26 rows, an even spread
    return list(range(n)) if n <= 26 else sorted(set(np.linspace(0, n - 1, 26).round().astype(int)))


def sample_grid(name: str, out: str | Path, *, per_class: int = 10, split: str = "train", seed: int = 0,
                data_dir=None, transform=None) -> Path:
    """Write a PNG grid: one row per class (at most 26 rows), `per_class` random samples each, class names on the left.

    With `transform` ((uint8 images (N, 28, 28), row number) -> uint8 images), each row is one sample
    and `per_class - 1` transformed copies of it: a picture of what augmentation does.
    """
    if per_class < 1:
        raise InvalidArgument(f"per_class must be at least 1, got {per_class}")
    ds = load_dataset(name, split, data_dir=data_dir)
    rng = np.random.default_rng(seed)
    if ds.environments is not None and transform is None:
        return _environment_grid(ds, out, per_class, rng)
    rows = []
    for c in _shown_classes(len(ds.classes)):
        idx = np.flatnonzero(ds.labels == c)
        if transform is None:
            pick = rng.choice(idx, size=min(per_class, idx.size), replace=False) if idx.size else []
            rows.append((ds.classes[c], [ds.images[i] for i in pick]))
        elif idx.size:
            first = np.asarray(ds.images[rng.choice(idx)])
            rows.append((ds.classes[c], [first, *transform(np.repeat(first[None], per_class - 1, axis=0), c)]))
    what = "samples per class" if transform is None else "one sample per class (left), then augmented copies"
    return atomic_write_bytes(Path(out), _figure(rows, f"{ds.spec.title}, {split} set: {what}", per_class))


def _environment_grid(ds, out: str | Path, per_row: int, rng) -> Path:
    """One row of random images per environment and class, the class and environment on the left."""
    rows = []
    for e, env in enumerate(ds.environment_names):
        for c in _shown_classes(len(ds.classes)):
            idx = np.flatnonzero((ds.environments == e) & (ds.labels == c))
            pick = rng.choice(idx, size=min(per_row, idx.size), replace=False) if idx.size else []
            rows.append((f"{env}: {ds.classes[c]}", [ds.images[i] for i in pick]))
    return atomic_write_bytes(Path(out), _figure(rows, f"{ds.spec.title}: samples per environment and class", per_row))


def mean_images(name: str, out: str | Path, *, split: str = "train", data_dir=None) -> Path:
    """Write a PNG of the mean image of each class (float64 sums over the uint8 images)."""
    ds = load_dataset(name, split, data_dir=data_dir)
    classes = _shown_classes(len(ds.classes))
    means = [ds.images[ds.labels == c].mean(axis=0, dtype=np.float64) if (ds.labels == c).any()
             else np.zeros(ds.images.shape[1:]) for c in classes]
    cols = min(len(classes), 13)
    rows = [(" ", means[i:i + cols]) for i in range(0, len(means), cols)]
    png = _figure(rows, f"{ds.spec.title}: mean {split} image of each class ({', '.join(ds.classes[c] for c in classes[:cols])}"
                  + (", ...)" if len(classes) > cols else ")"), cols)
    return atomic_write_bytes(Path(out), png)


def export(name: str, fmt: str, out: str | Path, *, data_dir=None, limit: int | None = None) -> list[Path]:
    """Write a dataset as files for other tools.

    png: `out/{split}/{class index}_{class name}/{index}.png` (the ImageFolder layout);
    csv: `out/{name}_{split}.csv` with a header `label,pixel0..pixel783`, one image a row;
    parquet: `out/{name}/{split}-00000-of-00001.parquet`, the layout of the Hugging Face hub's MNIST: a column
    `image` (struct of PNG `bytes` and `path`) and a column `label` (int64), the class names in the schema's
    `huggingface` metadata, so `datasets.load_dataset("parquet", ...)` sees an Image and a ClassLabel.
    """
    spec = get_spec(name)
    if fmt not in ("png", "csv", "parquet"):
        raise InvalidArgument(f"unknown export format {fmt!r}; use png, csv or parquet")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InvalidArgument("--format parquet needs the pyarrow package: pip install 'mnistlab[parquet]'") from None
    if limit is not None and limit < 1:
        raise InvalidArgument(f"limit must be at least 1, got {limit}")
    if spec.channels != 1:
        raise InvalidArgument(f"{spec.name} has {spec.channels} colour channels; export writes grey images: load it with "
                              "mnistlab.load_dataset instead")
    out = ensure_dir(Path(out))
    written = []
    for split in spec.sizes:
        ds = load_dataset(spec, split, data_dir=data_dir)
        n = len(ds) if limit is None else min(limit, len(ds))
        if fmt == "csv":
            path = out / f"{spec.name}_{split}.csv"
            written.append(atomic_write(path, lambda fh, ds=ds, n=n: _write_csv(fh, ds, n)))
        elif fmt == "parquet":
            path = ensure_dir(out / spec.name) / f"{split}-00000-of-00001.parquet"
            written.append(atomic_write(path, lambda fh, ds=ds, n=n: _write_parquet(fh, ds, n)))
        else:
            written.extend(_write_pngs(out / split, ds, n))
    return written


def _write_csv(fh, ds, n: int, chunk: int = 5000) -> None:
    pixels = ds.images.shape[1] * ds.images.shape[2]
    fh.write(("label," + ",".join(f"pixel{i}" for i in range(pixels)) + "\n").encode())
    # Render via a lookup table of "0".."255": far faster than np.savetxt on 47 million numbers.
    table = np.array([str(i) for i in range(256)], dtype=object)
    for start in range(0, n, chunk):
        rows = np.concatenate([ds.labels[start:start + chunk, None].astype(np.uint8),
                               ds.images[start:start + chunk].reshape(-1, pixels)], axis=1)
        text = table[rows]
        fh.write(("\n".join(",".join(r) for r in text) + "\n").encode())


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image)).save(buf, format="PNG")
    return buf.getvalue()


def _write_pngs(root: Path, ds, n: int) -> list[Path]:
    folders = {c: ensure_dir(root / f"{c}_{_safe(name)}") for c, name in enumerate(ds.classes)}
    return [atomic_write_bytes(folders[int(ds.labels[i])] / f"{i:06d}.png", _png(ds.images[i])) for i in range(n)]


def _write_parquet(fh, ds, n: int) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    features = {"image": {"_type": "Image"}, "label": {"names": list(ds.classes), "_type": "ClassLabel"}}
    schema = pa.schema([("image", image_type), ("label", pa.int64())],
                       metadata={"huggingface": json.dumps({"info": {"features": features}})})
    table = pa.table({"image": pa.array([{"bytes": _png(ds.images[i]), "path": None} for i in range(n)], type=image_type),
                      "label": pa.array(np.asarray(ds.labels[:n], dtype=np.int64))}, schema=schema)
    pq.write_table(table, fh)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)
