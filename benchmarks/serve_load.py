"""The drawing pad's server under load, two ways:

    python benchmarks/serve_load.py RUN [--in-flight 48] [--rounds 5]      a burst
    python benchmarks/serve_load.py RUN --classroom 10,30,60 [--seconds 60]  a class drawing at once

The burst: how long a cheap request (GET /api/models) and one more prediction take while N predictions are in
flight, against the same requests on an idle server. The classroom: N students, each drawing a real MNIST test digit
as the pad sends it (a 280x280 PNG, an 18 px round pen), asking /api/predict, waiting 250 ms as the page does, asking
/api/explain, thinking 1-2 s, and drawing again; p50/p90/p99 per endpoint and the errors, one row per class size.

It starts `mnistlab serve RUN` on a free port of 127.0.0.1 (with the mnistlab that `python` imports: set PYTHONPATH
to measure another checkout) and prints markdown rows. Bounded: every request has a 60 s timeout, a class draws for
`--seconds`, and the server is stopped at the end."""

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
import urllib.error
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


def _drawings(n: int, bases: int = 200) -> list[bytes]:
    """`n` different drawings of real MNIST test digits as the pad sends them: black on a white 280x280 canvas, an
    18 px round pen, PNG; each of `bases` digits drawn at several places, so no two requests send the same bytes."""
    import io

    import numpy as np
    from PIL import Image

    import mnistlab
    from photos import pen  # beside this script

    test = mnistlab.load_dataset("mnist", "test")
    rng = np.random.default_rng(0)
    inks = [pen(test.images[i], 200, 18) for i in range(bases)]
    out = []
    for k in range(n):
        canvas = np.zeros((280, 280))
        y, x = rng.integers(0, 81, 2)
        canvas[y:y + 200, x:x + 200] = inks[k % bases]
        buf = io.BytesIO()
        Image.fromarray(np.round(255 * (1 - canvas)).astype(np.uint8)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def _post(url: str, png: bytes, path: str = "/api/predict") -> float:
    body = json.dumps({"image": "data:image/png;base64," + __import__("base64").b64encode(png).decode()}).encode()
    req = urllib.request.Request(url + path, data=body, headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()
    return (time.perf_counter() - t0) * 1000


def _student(url: str, drawings, seed: int, until: float, times: dict, errors: dict) -> None:
    """One student until `until`: draw, predict, 250 ms, explain, think 1-2 s; latencies and errors per endpoint."""
    import random

    rng = random.Random(seed)
    time.sleep(rng.uniform(0, 2))  # a class does not start on one beat
    while time.time() < until:
        png = next(drawings)  # a new drawing each time, as a student's is (the server may keep what it has seen)
        for path, pause in (("/api/predict", 0.25), ("/api/explain?methods=saliency", rng.uniform(1, 2))):
            try:
                times[path].append(_post(url, png, path))
            except (OSError, urllib.error.HTTPError) as exc:
                errors[path].append(f"{type(exc).__name__}: {exc}")
            time.sleep(pause)


def _pace(pngs: list[bytes]) -> float:
    """Milliseconds to_mnist takes per drawing here and now: the CPU's speed moves during a session, so rows measured
    at other times are compared through it."""
    try:
        from mnistlab.preprocess import to_mnist
    except ImportError:  # a checkout from before it moved out of serve/
        from mnistlab.serve.preprocess import to_mnist

    t0 = time.perf_counter()
    for png in pngs:
        to_mnist(png)
    return (time.perf_counter() - t0) / len(pngs) * 1000


class _Locked:
    """An iterator many threads may take from."""

    def __init__(self, it):
        self.it, self.lock = it, threading.Lock()

    def __next__(self):
        with self.lock:
            return next(self.it)


def _classroom(url: str, pngs: list[bytes], students: int, seconds: float) -> list[str]:
    """Rows of the classroom table for one class size; `pngs` must outnumber the drawings the class makes."""
    drawings = _Locked(iter(pngs))
    times = {"/api/predict": [], "/api/explain?methods=saliency": []}
    errors = {path: [] for path in times}
    until = time.time() + seconds
    threads = [threading.Thread(target=_student, args=(url, drawings, k, until, times, errors)) for k in range(students)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = []
    for path in times:
        q = statistics.quantiles(times[path], n=100, method="inclusive") if len(times[path]) > 1 else [float("nan")] * 99
        rows.append(f"| {students} | {path} | {len(times[path]) + len(errors[path])} | {q[49]:.0f} | {q[89]:.0f} | "
                    f"{q[98]:.0f} | {len(errors[path])} |")
        for e in sorted(set(errors[path]))[:3]:
            print(f"    {path}: {e}", file=sys.stderr)
    return rows


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
    ap.add_argument("--classroom", default=None, help="class sizes, comma-separated (10,30,60): the classroom instead of the burst")
    ap.add_argument("--seconds", type=float, default=60, help="how long each class draws")
    args = ap.parse_args()
    sizes = [int(n) for n in args.classroom.split(",")] if args.classroom else []
    pngs = _drawings(64 + int(sum(sizes) * args.seconds)) if sizes else _photos(64)  # a drawing per student-second
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
            _post(url, png, "/api/explain")
        if sizes:
            print(f"machine's pace now: to_mnist {_pace(pngs[:50]):.1f} ms a drawing, in this process (compare runs by it)")
            print("| students | endpoint | requests | p50 ms | p90 ms | p99 ms | errors |")
            print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
            first = 64
            for n in sizes:  # each class its own drawings
                print("\n".join(_classroom(url, pngs[first:first + int(n * args.seconds)], n, args.seconds)), flush=True)
                first += int(n * args.seconds)
            return
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
