"""The pad's server as a real server on 127.0.0.1 (uvicorn in a thread): a prediction being computed never holds
up another request, and an oversized upload is answered with a 413 that a client sending its whole body first
(Python's urllib) can read."""

import json
import threading
import urllib.error
import urllib.request

import pytest

from mnistlab.serve import app as app_mod
from tests.serve.conftest import serving
from tests.serve.test_api import digit_png

pytestmark = pytest.mark.realdata


@pytest.fixture
def server(mnist_run, tmp_path):
    with serving(app_mod.create_app(mnist_run, runs_dir=tmp_path, max_upload=200_000, workers=1)) as url:
        yield url


def _predict(url: str, body: bytes, ctype: str = "application/json"):
    req = urllib.request.Request(url + "/api/predict", data=body, headers={"Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def _image_json() -> bytes:
    import base64

    return json.dumps({"image": base64.b64encode(digit_png()).decode()}).encode()


def test_a_prediction_in_progress_holds_up_no_other_request(server, monkeypatch):
    """The prediction is held inside its CPU work until the model list has been answered: were that work on the
    event loop, the list would wait for it, and the prediction for the list, so neither would ever come."""
    inside, release = threading.Event(), threading.Event()
    real = app_mod.predict_upload

    def held(run, data, *rest):
        inside.set()
        assert release.wait(60), "the model list was never answered while a prediction was being computed"
        return real(run, data, *rest)

    monkeypatch.setattr(app_mod, "predict_upload", held)
    answer = {}
    worker = threading.Thread(target=lambda: answer.update(_predict(server, _image_json())))
    worker.start()
    assert inside.wait(60)
    with urllib.request.urlopen(server + "/api/models", timeout=60) as r:
        models = json.loads(r.read())
    release.set()
    worker.join(60)
    assert models[0]["default"] and answer["prediction"] == "1"


@pytest.mark.parametrize("size", [250_000, 5_000_000])
@pytest.mark.parametrize("how", ["declared", "chunked"])
def test_an_upload_over_the_limit_is_a_413_that_urllib_reads(server, size, how):
    boundary = "mnistlabboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + b"\0" * size + f"\r\n--{boundary}--\r\n".encode()
    data = body if how == "declared" else iter([body[i:i + 65536] for i in range(0, len(body), 65536)])
    req = urllib.request.Request(server + "/api/predict", data=data,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                                          **({} if how == "declared" else {"Transfer-Encoding": "chunked"})})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(req, timeout=60)
    assert caught.value.code == 413
    assert json.loads(caught.value.read())["detail"] == "upload over 195 KiB; send a smaller picture"
    assert _predict(server, _image_json())["prediction"] == "1"  # and the server goes on serving
