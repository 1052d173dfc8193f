"""The drawing pad's web server: a page to draw or upload a digit, and a JSON API.

    GET  /               the page (plain HTML + JS, no build step)
    GET  /api/models     the runs it can use, default first
    POST /api/predict    an image upload (multipart field "file") or JSON {"image": "<base64 PNG or data URL>"};
                         ?model=ID picks a run. Returns the class probabilities and the 28x28 image the model saw.

Binds 127.0.0.1 unless told otherwise. Bodies over the size limit get 413, bad images 4xx with a
clear message; no input crashes the server.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import threading
import time
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import Request

from mnistlab.errors import MnistlabError
from mnistlab.run import Run
from mnistlab.serve.preprocess import ImageError, NoDigitFound, to_mnist

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
DRAIN_BYTES = 64 * 1024 * 1024  # an oversized upload is read and dropped up to this, so its client can read the 413
WORKERS = max(1, os.cpu_count() or 1)  # predictions computed at once; the rest wait their turn off the event loop


class TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: refuse request bodies over `limit` bytes, declared or streamed, with a 413 that every client
    can read. A client such as Python's urllib sends its whole body before it reads an answer: a server that answers
    and closes first resets the connection under it, so the rest of the body (up to DRAIN_BYTES) is read and
    dropped before the 413 goes out."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _drain(receive)
            return await _send_json(send, 413, self._detail())
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                if message.get("more_body"):
                    await _drain(receive)
                raise TooLarge()
            return message

        try:
            return await self.app(scope, limited, send)
        except TooLarge:
            return await _send_json(send, 413, self._detail())

    def _detail(self) -> dict:
        return {"detail": too_large(self.limit)}


def too_large(limit: int) -> str:
    size = f"{limit / 2**20:.3g} MiB" if limit >= 2**20 else f"{limit / 1024:.3g} KiB"
    return f"upload over {size}; send a smaller picture"


async def _drain(receive) -> None:
    """Read the rest of a request body and drop it, up to DRAIN_BYTES (past that the connection is closed)."""
    seen = 0
    while seen <= DRAIN_BYTES:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return
        seen += len(message.get("body", b""))


async def _send_json(send, status: int, obj) -> None:
    import json

    body = json.dumps(obj).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class ModelStore:
    """The runs the server can use: the one it was started with, and every finished run in `runs_dir`."""

    def __init__(self, default: Run, runs_dir: Path | None = None):
        self.default = default
        self.runs_dir = runs_dir
        self._loaded: dict[str, Run] = {}
        self._lock = threading.Lock()

    def runs(self) -> dict[str, Run]:
        found = {self.default.path.name: self.default}
        if self.runs_dir and self.runs_dir.is_dir():
            for p in sorted(self.runs_dir.iterdir(), reverse=True):
                if p.name not in found and (p / "metrics.json").exists() and (p / "config.json").exists():
                    try:
                        run = Run(p)
                        if run.family in ("neural", "classical"):
                            found[p.name] = run
                    except MnistlabError:
                        continue
        return found

    def get(self, model_id: str | None) -> Run:
        model_id = model_id or self.default.path.name
        with self._lock:
            if model_id not in self._loaded:
                runs = self.runs()
                if model_id not in runs:
                    raise KeyError(model_id)
                run = runs[model_id]
                run.predictor  # load once, here, not on the first request's clock
                self._loaded[model_id] = run
            return self._loaded[model_id]


def _png_data_url(img: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _decode_base64(text: str) -> bytes:
    if not isinstance(text, str) or not text:
        raise ValueError("field 'image' must be a non-empty base64 string")
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("field 'image' is not valid base64") from None


class BadRequest(Exception):
    """A request the server refuses: its status and a one-line reason."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


async def read_upload(request: Request, model: str | None) -> tuple[bytes, str | None]:
    """The image bytes and the model a request names: a multipart upload (field "file") or JSON {"image": base64}."""
    ctype = request.headers.get("content-type", "")
    try:
        if ctype.startswith("multipart/form-data"):
            form = await request.form(max_files=1, max_fields=4)
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise BadRequest(422, "multipart upload needs a file in the field 'file'")
            data = await upload.read()
            return data, model or (form.get("model") if isinstance(form.get("model"), str) else None)
        if ctype.startswith("application/json"):
            try:
                body = await request.json()
            except ValueError:
                raise BadRequest(400, "the body is not valid JSON") from None
            if not isinstance(body, dict) or "image" not in body:
                raise BadRequest(422, "JSON body needs a field 'image' with a base64 PNG (or data URL)")
            try:
                return _decode_base64(body["image"]), model or body.get("model")
            except ValueError as exc:
                raise BadRequest(422, str(exc)) from None
    except (BadRequest, TooLarge):
        raise
    except Exception as exc:  # a malformed multipart body and the like: the client's fault, say so
        raise BadRequest(400, f"could not read the request body ({type(exc).__name__})") from None
    raise BadRequest(415, "send multipart/form-data with a field 'file', or JSON {\"image\": \"<base64>\"}")


def preprocess_upload(data: bytes):
    """An uploaded picture in MNIST's form, or the BadRequest that says why not."""
    try:
        return to_mnist(data)
    except NoDigitFound as exc:
        raise BadRequest(422, str(exc)) from None
    except ImageError as exc:
        raise BadRequest(415, str(exc)) from None


def predict_upload(run: Run, data: bytes) -> dict:
    """The CPU work of one prediction (preprocessing, the net, the picture of what it saw): run off the event loop."""
    t0 = time.perf_counter()
    pre = preprocess_upload(data)
    probs = run.predict_proba(pre.image[None])[0]
    best = int(np.argmax(probs))
    return {"model": run.path.name, "classes": run.classes, "probabilities": [float(p) for p in probs],
            "prediction": run.classes[best], "probability": float(probs[best]), "inverted": pre.inverted,
            "preprocessed": _png_data_url(pre.image), "milliseconds": (time.perf_counter() - t0) * 1000}


def create_app(default: Run, runs_dir: str | Path | None = None, max_upload: int = MAX_UPLOAD_BYTES, workers: int = WORKERS):
    """The app: reading a body is awaited on the event loop; the CPU work of a prediction runs in a pool of `workers`
    threads, so a request for the page or the model list is answered while predictions are being computed."""
    import anyio
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, JSONResponse

    from mnistlab.serve.inside import PAD_METHODS, explain_upload  # it reads this module's request helpers

    store = ModelStore(default, Path(runs_dir) if runs_dir else None)
    store.get(None)
    app = FastAPI(title="mnistlab drawing pad", docs_url="/api/docs", openapi_url="/api/openapi.json")
    page = resources.files("mnistlab.serve").joinpath("static/index.html").read_text()
    pool = anyio.CapacityLimiter(workers)

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
        return await answer(request, model, predict_upload)

    @app.post("/api/explain")
    async def explain(request: Request, model: str | None = None, methods: str = ",".join(PAD_METHODS)):
        """The prediction and the inside view: layers as pictures or bars, attribution overlays (`methods`: some of
        saliency, integrated_gradients, occlusion, grad_cam)."""
        chosen = tuple(m for m in methods.split(",") if m)
        return await answer(request, model, lambda run, data: explain_upload(run, data, chosen))

    return BodyLimit(app, max_upload)


def _describe(rid: str, run: Run, default: Run) -> dict:
    try:
        acc = run.metrics.get("test_accuracy")
    except MnistlabError:
        acc = None
    return {"id": rid, "model": run.config["model"], "dataset": run.config["dataset"], "classes": run.classes,
            "test_accuracy": acc, "default": rid == default.path.name}


def latest_run(runs_dir: Path) -> Run | None:
    """The most recent finished run in `runs_dir` (by folder name, which starts with the date)."""
    if not runs_dir.is_dir():
        return None
    for p in sorted(runs_dir.iterdir(), reverse=True):
        if (p / "metrics.json").exists():
            try:
                run = Run(p)
                if run.family in ("neural", "classical"):
                    return run
            except MnistlabError:
                continue
    return None
