"""The drawing pad's web server: a page to draw or upload a digit, and a JSON API.

    GET  /               the page (plain HTML + JS, no build step)
    GET  /api/models     the runs it can use, default first
    POST /api/predict    an image upload (multipart field "file") or JSON {"image": "<base64 PNG or data URL>"};
                         ?model=ID picks a run. Returns the class probabilities and the 28x28 image the model saw.
    POST /api/explain    the same upload: the prediction, each layer and the attributions asked for (inside.py)

Binds 127.0.0.1 unless told otherwise. Bodies over the size limit get 413, bad images 4xx with a
clear message; no input crashes the server.
"""

from __future__ import annotations

import os
import threading
import time
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import Request

from mnistlab.errors import MnistlabError
from mnistlab.models.reference import shown_name
from mnistlab.ood import judged, kept_detector
from mnistlab.preprocess import to_mnist
from mnistlab.run import Run
from mnistlab.serve.inside import PAD_METHODS, explain_upload
from mnistlab.serve.requests import (
    MAX_UPLOAD_BYTES,
    BadRequest,
    BodyLimit,
    Preprocessings,
    TooLarge,
    _png_data_url,
    preprocess_upload,
    read_upload,
    too_large,
)

WORKERS = max(1, os.cpu_count() or 1)  # predictions computed at once; the rest wait their turn off the event loop


class ModelStore:
    """The runs the server can use: the one it was started with, and every finished run in `runs_dir`. Each run is
    loaded once, under a lock of its own: a user picking a model that is not loaded yet holds up only the requests
    for that model, while everyone else's are answered."""

    def __init__(self, default: Run, runs_dir: Path | None = None):
        self.default = default
        self.runs_dir = runs_dir
        self._loaded: dict[str, Run] = {}
        self._loading: dict[str, threading.Lock] = {}  # model id -> the lock its one load happens under
        self._lock = threading.Lock()  # guards the two tables above, held only to read or change them

    def runs(self) -> dict[str, Run]:
        found = {self.default.path.name: self.default}
        if self.runs_dir and self.runs_dir.is_dir():
            for p in sorted(self.runs_dir.iterdir(), reverse=True):
                if p.name not in found and (p / "metrics.json").exists() and (p / "config.json").exists():
                    try:
                        run = Run(p)
                        if run.kind in ("neural", "classical"):
                            found[p.name] = run
                    except MnistlabError:
                        continue
        return found

    def get(self, model_id: str | None) -> Run:
        model_id = model_id or self.default.path.name
        with self._lock:
            if model_id in self._loaded:
                return self._loaded[model_id]
            loading = self._loading.setdefault(model_id, threading.Lock())
        with loading:
            with self._lock:
                if model_id in self._loaded:  # loaded by the request this one waited for
                    return self._loaded[model_id]
            runs = self.runs()
            if model_id not in runs:
                raise KeyError(model_id)
            run = runs[model_id]
            run.predictor  # load once, here, not on the first request's clock
            with self._lock:
                self._loaded[model_id] = run
            return run


def predict_upload(run: Run, data: bytes, preprocess=to_mnist) -> dict:
    """The CPU work of one prediction (preprocessing, the net, the picture of what it saw): run off the event loop."""
    t0 = time.perf_counter()
    pre = preprocess_upload(data, preprocess)
    probs = run.predict_proba(pre.image[None])[0]
    best = int(np.argmax(probs))
    return {"model": run.path.name, "classes": run.classes, "probabilities": [float(p) for p in probs],
            "prediction": run.classes[best], "probability": float(probs[best]), **judged(run, pre.image[None])[0],
            "inverted": pre.inverted,
            "preprocessed": _png_data_url(pre.image), "milliseconds": (time.perf_counter() - t0) * 1000}


def create_app(default: Run, runs_dir: str | Path | None = None, max_upload: int = MAX_UPLOAD_BYTES, workers: int = WORKERS,
               processes: int = 0):
    """The app: reading a body is awaited on the event loop; the CPU work of a prediction runs in a pool of `workers`
    threads, so a request for the page or the model list is answered while predictions are being computed, and the
    preprocessing in `processes` worker processes (0: in those threads; `mnistlab serve` takes one per core)."""
    import anyio
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, JSONResponse

    store = ModelStore(default, Path(runs_dir) if runs_dir else None)
    store.get(None)
    # the served run's OOD detector is chosen (once, then kept in its folder) while the server starts answering
    threading.Thread(target=_warm_detector, args=(default,), daemon=True).start()
    preprocess = Preprocessings(processes)
    app = FastAPI(title="mnistlab drawing pad", docs_url="/api/docs", openapi_url="/api/openapi.json",
                  lifespan=preprocess.lifespan)
    page = resources.files("mnistlab.serve").joinpath("static/index.html").read_text()
    pool = anyio.CapacityLimiter(workers + processes)  # a thread waiting on a worker process leaves `workers` computing

    @app.exception_handler(BadRequest)
    async def refused(request: Request, exc: BadRequest):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.get("/", response_class=HTMLResponse)
    def index():
        return page

    @app.get("/api/models")
    def models():  # a plain def: FastAPI runs it in its thread pool
        return [_describe(rid, run, default) for rid, run in store.runs().items()]

    async def answer(request: Request, model: str | None, work):
        """An upload read on the event loop, then `work(run, data)` in the pool of workers."""
        try:
            data, model = await read_upload(request, model)
        except TooLarge:
            raise BadRequest(413, too_large(max_upload)) from None
        if not data:
            raise BadRequest(422, "the image is empty (0 bytes)")
        try:
            run = await anyio.to_thread.run_sync(store.get, model, limiter=pool)  # the first use of a run loads it
        except KeyError:
            raise BadRequest(404, f"unknown model {model!r}; GET /api/models lists them") from None
        except MnistlabError as exc:  # a run this server cannot rebuild (its model's code moved, changed, uninstalled)
            raise BadRequest(409, str(exc)) from None
        return await anyio.to_thread.run_sync(work, run, data, limiter=pool)

    @app.post("/api/predict")
    async def predict(request: Request, model: str | None = None):
        return await answer(request, model, lambda run, data: predict_upload(run, data, preprocess))

    @app.post("/api/explain")
    async def explain(request: Request, model: str | None = None, methods: str = ",".join(PAD_METHODS)):
        """The prediction and the inside view: layers as pictures or bars, attribution overlays (`methods`: some of
        saliency, integrated_gradients, occlusion, grad_cam)."""
        chosen = tuple(m for m in methods.split(",") if m)
        return await answer(request, model, lambda run, data: explain_upload(run, data, chosen, preprocess))

    return BodyLimit(app, max_upload)


def _warm_detector(run: Run) -> None:
    try:
        kept_detector(run)
    except Exception:  # noqa: BLE001 (a thread of its own: the first answer says why, once, through ood.judged)
        pass


def _describe(rid: str, run: Run, default: Run) -> dict:
    try:
        acc = run.metrics.get("test_accuracy")
    except MnistlabError:
        acc = None
    return {"id": rid, "model": shown_name(run.config["model"]), "dataset": run.config["dataset"], "classes": run.classes,
            "test_accuracy": acc, "default": rid == default.path.name}


def latest_run(runs_dir: Path) -> Run | None:
    """The most recent finished run in `runs_dir` (by folder name, which starts with the date)."""
    if not runs_dir.is_dir():
        return None
    for p in sorted(runs_dir.iterdir(), reverse=True):
        if (p / "metrics.json").exists():
            try:
                run = Run(p)
                if run.kind in ("neural", "classical"):
                    return run
            except MnistlabError:
                continue
    return None
