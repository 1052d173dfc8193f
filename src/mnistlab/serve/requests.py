"""The pad's requests: reading an upload (multipart or JSON base64) within a size limit, the one-line refusals, and
bringing a picture into MNIST's form (once per picture, in worker processes where the server has them). Used by the
server (app.py) and its inside view (inside.py) alike."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import io
import threading
from collections import OrderedDict

from fastapi import Request

from mnistlab.preprocess import ImageError, NoDigitFound, to_mnist

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
DRAIN_BYTES = 64 * 1024 * 1024  # an oversized upload is read and dropped up to this, so its client can read the 413


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


def _png_data_url(img) -> str:
    """A PNG data URL of an image (a PIL image, or an array as Image.fromarray takes it)."""
    from PIL import Image

    buf = io.BytesIO()
    image = img if isinstance(img, Image.Image) else Image.fromarray(img)
    image.save(buf, format="PNG", compress_level=1)  # 40% less time than 6 for 8% more bytes
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


class Preprocessings:
    """Pictures brought into MNIST's form, in `processes` worker processes (0: in the calling thread), the last `size`
    of them kept by their bytes' sha256. Preprocessing is most of a request's work, and many small NumPy steps: in
    threads they hold Python's one lock, so one process uses one core however many requests wait (measured in
    BENCHMARKS.md); and the pad asks /api/explain of the drawing it has just had predicted. A lock guards the table."""

    def __init__(self, processes: int = 0, size: int = 256):
        self.size, self._done, self._lock = size, OrderedDict(), threading.Lock()
        self._pool = None
        if processes:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: a fork of a server with threads running can inherit a lock that one of them held
            self._pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))

    def __call__(self, data: bytes):
        key = hashlib.sha256(data).digest()
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                return self._done[key]
        pre = self._pool.submit(to_mnist, data).result() if self._pool else to_mnist(data)
        pre.image.setflags(write=False)  # shared between requests from now on
        with self._lock:
            self._done[key] = pre
            while len(self._done) > self.size:
                self._done.popitem(last=False)
        return pre

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        """The server's lifespan: its worker processes end with it."""
        yield
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


def preprocess_upload(data: bytes, preprocess=to_mnist):
    """An uploaded picture in MNIST's form (by `preprocess`: to_mnist, or the server's Preprocessings), or the
    BadRequest that says why not."""
    try:
        return preprocess(data)
    except NoDigitFound as exc:
        raise BadRequest(422, str(exc)) from None
    except ImageError as exc:
        raise BadRequest(415, str(exc)) from None
