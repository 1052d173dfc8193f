"""Your-own-handwriting benchmark: (1) accuracy of a trained MNIST model on MNIST test digits re-drawn
in every family of `benchmarks/photos.py` (phone photos, thin and thick pens, blurry and blocky scans,
coloured ink, lined paper, shadows, full-frame, small in a large photo, rotated, heavy JPEG) and brought
back by `to_mnist`; (2) latency of one prediction through the web API (HTTP on 127.0.0.1).

Run: .venv/bin/python benchmarks/handwriting.py RUN [--per-family 300] [--families a,b] [--requests 200]
     [--stored 10000 --save-right FILE.npy [--against OTHER.npy]]: MNIST's own test digits through `to_mnist` too
     (what a change to the preprocessing costs on the digits it was made for), McNemar against another such file.
"""

from __future__ import annotations

import argparse
import io
import socket
import statistics
import threading
import time
import zlib

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--per-family", type=int, default=300)
    ap.add_argument("--families", default="all", help="comma-separated family names, or all")
    ap.add_argument("--requests", type=int, default=200, help="0 skips the API timing")
    ap.add_argument("--save-failures", default=None, help="folder for the pictures the model got wrong")
    ap.add_argument("--stored", type=int, default=0, help="also this many MNIST test digits, as stored, through to_mnist")
    ap.add_argument("--save-right", default=None, help="with --stored: save which of them were read right (.npy)")
    ap.add_argument("--against", default=None, help="with --stored: McNemar against an earlier --save-right file")
    args = ap.parse_args()
    import mnistlab
    from mnistlab.preprocess import NoDigitFound, to_mnist
    from photos import FAMILIES, render  # beside this script

    run = mnistlab.load_run(args.run)
    test = mnistlab.load_dataset("mnist", "test")
    names = list(FAMILIES) if args.families == "all" else args.families.split(",")
    print(f"| family ({args.per_family} MNIST test digits each, seed 2026) | accuracy | same digits as stored | ms per picture |")
    print("| --- | ---: | ---: | ---: |")
    accs = []
    for name in names:
        rng = np.random.default_rng([2026, zlib.crc32(name.encode())])  # a family's pictures do not depend on the others
        idx = rng.choice(len(test), args.per_family, replace=False)
        pictures = [render(test.images[i], name, rng) for i in idx]
        t0 = time.perf_counter()
        back = []
        for p in pictures:
            try:
                back.append(to_mnist(p).image)
            except NoDigitFound:
                back.append(np.zeros((28, 28), np.uint8))  # counted as wrong
        pre_ms = (time.perf_counter() - t0) / len(pictures) * 1000
        pred = run.predict(np.stack(back))
        right = pred == test.labels[idx]
        acc = float(right.mean())
        accs.append(acc)
        direct = float((run.predict(test.images[idx]) == test.labels[idx]).mean())
        print(f"| {name} | {acc:.2%} | {direct:.2%} | {pre_ms:.1f} |", flush=True)
        if args.save_failures:
            from pathlib import Path

            folder = Path(args.save_failures) / name
            folder.mkdir(parents=True, exist_ok=True)
            for j in np.flatnonzero(~right)[:20]:
                (folder / f"{idx[j]}-true{test.labels[idx[j]]}-pred{pred[j]}.jpg").write_bytes(pictures[j])
    print(f"| mean over {len(names)} families | {sum(accs) / len(accs):.2%} | | |")
    if args.stored:
        stored_through(run, test, args.stored, args.save_right, args.against)
    if args.requests == 0:
        return

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


def stored_through(run, test, n: int, save: str | None, against: str | None) -> None:
    """MNIST's first `n` test digits, as stored, through `to_mnist` and the run: accuracy, and McNemar against
    the same measurement of another preprocessing (its --save-right file)."""
    from mnistlab.evaluate.stats import mcnemar
    from mnistlab.preprocess import to_mnist

    back = np.stack([to_mnist(test.images[i]).image for i in range(n)])
    right = run.predict(back) == test.labels[:n]
    print(f"| MNIST test digits through to_mnist ({n}) | {right.mean():.2%} | "
          f"{(run.predict(test.images[:n]) == test.labels[:n]).mean():.2%} | |")
    if save:
        np.save(save, right)
    if against:
        test_ = mcnemar(np.load(against), right)
        print(f"McNemar against {against}: {test_}")


if __name__ == "__main__":
    main()
