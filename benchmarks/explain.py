"""The numbers of BENCHMARKS.md's "Inside the net": the latency of the pad's POST /api/explain against /api/predict,
and the share of saliency that falls on the ink of the digit, against the share of ink pixels.

    python benchmarks/explain.py RUN [RUN...]      # MNIST runs; one PyTorch process, nothing else running
"""

import io
import platform
import statistics
import sys
import time

import numpy as np
import torch
from fastapi.testclient import TestClient
from PIL import Image

import mnistlab
from mnistlab.explain import inside
from mnistlab.run import Run
from mnistlab.serve.app import create_app

IMAGES = 500  # test digits for the ink share
REQUESTS = 30


def _png(digit: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(255 - np.kron(digit, np.ones((10, 10), np.uint8))).save(buf, format="PNG")  # a 280x280 drawing
    return buf.getvalue()


def latency(run: Run, digits: np.ndarray) -> dict:
    client = TestClient(create_app(run))
    out = {}
    for path in ("/api/predict", "/api/explain", "/api/explain?methods=saliency,integrated_gradients,occlusion,grad_cam"):
        client.post(path, files={"file": ("d.png", _png(digits[0]), "image/png")})  # load, warm
        times = []
        for d in digits[1:REQUESTS + 1]:
            t0 = time.perf_counter()
            assert client.post(path, files={"file": ("d.png", _png(d), "image/png")}).status_code == 200
            times.append((time.perf_counter() - t0) * 1000)
        out[path] = (statistics.median(times), sorted(times)[int(0.9 * len(times))])
    return out


def ink_share(run: Run, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    net, shares = run.model, []
    for img, label in zip(x, y):
        a = inside.attributions(net, torch.from_numpy(img.astype(np.float32) / 255)[None, None], int(label), ("saliency",))["saliency"]
        shares.append(float(a[img > 0].sum() / a.sum()))
    return float(np.mean(shares)), float((x > 0).mean())


def main() -> None:
    (_, _), (x, y) = mnistlab.load_data("mnist")
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| run | model | predict ms (median / p90) | explain ms, saliency + Grad-CAM | explain ms, all four | saliency on ink | ink pixels |")
    print("| --- | --- | --- | --- | --- | ---: | ---: |")
    for path in sys.argv[1:]:
        run = Run(path)
        lat = latency(run, x)
        share, ink = ink_share(run, x[:IMAGES], y[:IMAGES])
        cells = [f"{m:.0f} / {p:.0f}" for m, p in lat.values()]
        print(f"| {run.path.name} | {run.config['model']} | {' | '.join(cells)} | {share:.1%} | {ink:.1%} |")


if __name__ == "__main__":
    main()
