"""Your-own-handwriting benchmark: (1) accuracy of a trained MNIST model on MNIST test digits re-drawn
as phone photos (dark ink on uneven light paper, enlarged to 150-300 px, off-centre, noisy, JPEG) and
brought back by `to_mnist`; (2) latency of one prediction through the web API (HTTP on 127.0.0.1).

Run: .venv/bin/python benchmarks/handwriting.py RUN [--photos 500] [--requests 200]
"""

from __future__ import annotations

import argparse
import io
import socket
import statistics
import threading
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--photos", type=int, default=500)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    import mnistlab
    from mnistlab.serve.photos import photo_of
    from mnistlab.serve.preprocess import to_mnist

    run = mnistlab.load_run(args.run)
    test = mnistlab.load_dataset("mnist", "test")
    rng = np.random.default_rng(2026)
    idx = rng.choice(len(test), args.photos, replace=False)
    photos = [photo_of(test.images[i], rng) for i in idx]
    t0 = time.perf_counter()
    back = np.stack([to_mnist(p).image for p in photos])
    pre_ms = (time.perf_counter() - t0) / len(photos) * 1000
    photo_acc = float((run.predict(back) == test.labels[idx]).mean())
    direct_acc = float((run.predict(test.images[idx]) == test.labels[idx]).mean())
    print(f"| photos of MNIST test digits ({args.photos}, seed 2026) | {photo_acc:.2%} | same digits as stored: {direct_acc:.2%} |")
    print(f"| preprocessing time per photo | {pre_ms:.1f} ms | |")

    import httpx
    import uvicorn

    from mnistlab.serve.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(run), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    from PIL import Image, ImageDraw

    img = Image.new("L", (280, 280), 255)  # what the drawing pad sends: a 280x280 canvas
    ImageDraw.Draw(img).line([(140, 40), (140, 240)], fill=0, width=18)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    payload = buf.getvalue()
    times = []
    with httpx.Client() as client:
        for k in range(args.requests + 10):
            t0 = time.perf_counter()
            r = client.post(f"http://127.0.0.1:{port}/api/predict", files={"file": ("d.png", payload, "image/png")})
            if k >= 10:  # warm-up excluded
                times.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
    server.should_exit = True
    times.sort()
    print(f"| one prediction through POST /api/predict (280x280 PNG), median of {args.requests} | "
          f"{statistics.median(times):.1f} ms | p95 {times[int(0.95 * len(times))]:.1f} ms |")


if __name__ == "__main__":
    main()
