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
import threading
import time
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import Request

from mnistlab.errors import MnistlabError
from mnistlab.serve.preprocess import ImageError, NoDigitFound, to_mnist
from mnistlab.run import Run

MAX_UPLOAD_BYTES = 5 * 1024 * 1024


class TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: refuse request bodies over `limit` bytes, declared or streamed."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _send_json(send, 413, {"detail": f"upload over {self.limit // (1024 * 1024)} MiB; send a smaller picture"})
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise TooLarge()
            return message

        try:
            return await self.app(scope, limited, send)
        except TooLarge:
            return await _send_json(send, 413, {"detail": f"upload over {self.limit // (1024 * 1024)} MiB; send a smaller picture"})


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


def create_app(default: Run, runs_dir: str | Path | None = None, max_upload: int = MAX_UPLOAD_BYTES):
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, JSONResponse

    store = ModelStore(default, Path(runs_dir) if runs_dir else None)
    store.get(None)
    app = FastAPI(title="mnistlab drawing pad", docs_url="/api/docs", openapi_url="/api/openapi.json")
    page = resources.files("mnistlab.serve").joinpath("static/index.html").read_text()

    def fail(status: int, detail: str):
        return JSONResponse({"detail": detail}, status_code=status)

    @app.get("/", response_class=HTMLResponse)
    def index():
        return page

    @app.get("/api/models")
    def models():
        out = []
        for rid, run in store.runs().items():
            try:
                acc = run.metrics.get("test_accuracy")
            except MnistlabError:
                acc = None
            out.append({"id": rid, "model": run.config["model"], "dataset": run.config["dataset"],
                        "classes": run.classes, "test_accuracy": acc, "default": rid == default.path.name})
        return out

    @app.post("/api/predict")
    async def predict(request: Request, model: str | None = None):
        t0 = time.perf_counter()
        ctype = request.headers.get("content-type", "")
        try:
            if ctype.startswith("multipart/form-data"):
                form = await request.form(max_files=1, max_fields=4)
                upload = form.get("file")
                if upload is None or isinstance(upload, str):
                    return fail(422, "multipart upload needs a file in the field 'file'")
                data = await upload.read()
                model = model or (form.get("model") if isinstance(form.get("model"), str) else None)
            elif ctype.startswith("application/json"):
                try:
                    body = await request.json()
                except ValueError:
                    return fail(400, "the body is not valid JSON")
                if not isinstance(body, dict) or "image" not in body:
                    return fail(422, "JSON body needs a field 'image' with a base64 PNG (or data URL)")
                try:
                    data = _decode_base64(body["image"])
                except ValueError as exc:
                    return fail(422, str(exc))
                model = model or body.get("model")
            else:
                return fail(415, "send multipart/form-data with a field 'file', or JSON {\"image\": \"<base64>\"}")
        except TooLarge:
            return fail(413, f"upload over {max_upload // (1024 * 1024)} MiB; send a smaller picture")
        except Exception as exc:  # a malformed multipart body and the like: the client's fault, say so
            return fail(400, f"could not read the request body ({type(exc).__name__})")
        if not data:
            return fail(422, "the image is empty (0 bytes)")
        try:
            run = store.get(model)
        except KeyError:
            return fail(404, f"unknown model {model!r}; GET /api/models lists them")
        try:
            pre = to_mnist(data)
        except NoDigitFound as exc:
            return fail(422, str(exc))
        except ImageError as exc:
            return fail(415, str(exc))
        probs = run.predict_proba(pre.image[None])[0]
        best = int(np.argmax(probs))
        return {"model": run.path.name, "classes": run.classes, "probabilities": [float(p) for p in probs],
                "prediction": run.classes[best], "probability": float(probs[best]), "inverted": pre.inverted,
                "preprocessed": _png_data_url(pre.image), "milliseconds": (time.perf_counter() - t0) * 1000}

    return BodyLimit(app, max_upload)


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
