"""The drawing pad's server under load: how long a cheap request (GET /api/models) and one more prediction take
while N predictions are in flight, against the same requests on an idle server.

    python benchmarks/serve_load.py RUN [--in-flight 48] [--rounds 5]

It starts `mnistlab serve RUN` on a free port of 127.0.0.1 (with the mnistlab that `python` imports: set PYTHONPATH
to measure another checkout), uploads real MNIST test digits as PNGs, and prints one markdown row per measurement
(medians over the rounds). Bounded: every request has a 60 s timeout and the server is stopped at the end."""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _photos(n: int) -> list[bytes]:
    """Phone photos of real MNIST test digits (benchmarks/photos.py): what the pad's preprocessing works hardest on."""
    import numpy as np

    import mnistlab
    from photos import photo_of  # beside this script

    test = mnistlab.load_dataset("mnist", "test")
    rng = np.random.default_rng(0)
    return [photo_of(test.images[i], rng) for i in range(n)]


def _post(url: str, png: bytes) -> float:
    body = json.dumps({"image": "data:image/png;base64," + __import__("base64").b64encode(png).decode()}).encode()
    req = urllib.request.Request(url + "/api/predict", data=body, headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()
    return (time.perf_counter() - t0) * 1000


def _get(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url + "/api/models", timeout=60) as r:
        r.read()
    return (time.perf_counter() - t0) * 1000


def _under_load(url: str, pngs: list[bytes], in_flight: int) -> tuple[float, float, float]:
    """(GET latency, one prediction's latency, the whole burst's seconds) with `in_flight` predictions running."""
    start = threading.Barrier(in_flight + 1)
    times: list[float] = []

    def one(k: int):
        start.wait()
        times.append(_post(url, pngs[k % len(pngs)]))

    threads = [threading.Thread(target=one, args=(k,)) for k in range(in_flight)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    start.wait()
    time.sleep(0.02)  # the burst is under way
    got: dict[str, float] = {}
    probes = [threading.Thread(target=lambda: got.__setitem__("get", _get(url))),
              threading.Thread(target=lambda: got.__setitem__("predict", _post(url, pngs[0])))]
    for t in probes:  # a cheap request and one more prediction, sent together while the burst is in flight
        t.start()
    for t in threads + probes:
        t.join()
    return got["get"], got["predict"], time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--in-flight", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    pngs = _photos(64)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "mnistlab", "serve", args.run, "--port", str(port), "--runs-dir", "/nonexistent"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        deadline = time.time() + 60
        while True:
            try:
                _get(url)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit(f"the server did not start: {server.stderr.read().decode()[-2000:]}")
                time.sleep(0.2)
        for png in pngs[:8]:  # warm: the first predictions pay for lazy imports
            _post(url, png)
        idle_get = statistics.median(_get(url) for _ in range(20))
        idle_predict = statistics.median(_post(url, pngs[k]) for k in range(20))
        loaded = [_under_load(url, pngs, args.in_flight) for _ in range(args.rounds)]
        get_ms, predict_ms, burst = (statistics.median(x) for x in zip(*loaded))
        print(f"| GET /api/models | {idle_get:.0f} ms | {get_ms:.0f} ms |")
        print(f"| POST /api/predict | {idle_predict:.0f} ms | {predict_ms:.0f} ms |")
        print(f"| {args.in_flight} predictions, all answered | | {burst:.2f} s |")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
