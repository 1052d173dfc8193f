"""The JSON API through the framework's test client: good, oversized, not-an-image, empty, wrong field."""

import base64
import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from mnistlab.serve.app import create_app

pytestmark = pytest.mark.realdata


def digit_png(size=280) -> bytes:
    img = Image.new("L", (size, size), 255)
    ImageDraw.Draw(img).line([(size * 0.5, size * 0.15), (size * 0.5, size * 0.85)], fill=0, width=size // 14)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def client(mnist_run, tmp_path):
    return TestClient(create_app(mnist_run, runs_dir=tmp_path, max_upload=200_000))


def test_page_and_models(client, mnist_run):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text and "/api/predict" in page.text
    models = client.get("/api/models").json()
    assert models[0]["id"] == mnist_run.path.name and models[0]["default"] and len(models[0]["classes"]) == 10


def test_upload_and_base64(client):
    up = client.post("/api/predict", files={"file": ("one.png", digit_png(), "image/png")})
    assert up.status_code == 200, up.text
    body = up.json()
    assert body["prediction"] == "1" and len(body["probabilities"]) == 10 and abs(sum(body["probabilities"]) - 1) < 1e-4
    assert body["preprocessed"].startswith("data:image/png;base64,") and body["inverted"] is True
    b64 = "data:image/png;base64," + base64.b64encode(digit_png()).decode()
    js = client.post("/api/predict", json={"image": b64})
    assert js.status_code == 200 and js.json()["probabilities"] == pytest.approx(body["probabilities"], abs=1e-6)


@pytest.mark.parametrize("kwargs, status, words", [
    ({"files": {"file": ("big.png", b"\x89PNG" + b"0" * 300_000, "image/png")}}, 413, "upload over"),
    ({"files": {"file": ("x.png", b"this is not an image", "image/png")}}, 415, "not an image"),
    ({"files": {"file": ("x.png", b"", "image/png")}}, 422, "empty"),
    ({"files": {"picture": ("x.png", digit_png(), "image/png")}}, 422, "field 'file'"),
    ({"json": {"img": "abc"}}, 422, "field 'image'"),
    ({"json": {"image": "!!!not base64!!!"}}, 422, "not valid base64"),
    ({"content": b"{broken", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
    ({"content": b"raw", "headers": {"content-type": "text/plain"}}, 415, "multipart/form-data"),
    ({"json": {"image": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50).decode()}}, 415, "not an image"),
])
@pytest.mark.parametrize("path", ["/api/predict", "/api/explain"])
def test_bad_requests_get_4xx(client, kwargs, status, words, path):
    r = client.post(path, **kwargs)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    assert client.get("/api/models").status_code == 200, "the server is still alive"


@pytest.mark.parametrize("path", ["/api/predict", "/api/explain"])
def test_blank_canvas_and_unknown_model(client, path):
    buf = io.BytesIO()
    Image.new("L", (280, 280), 255).save(buf, format="PNG")
    r = client.post(path, files={"file": ("blank.png", buf.getvalue(), "image/png")})
    assert r.status_code == 422 and "no digit found" in r.json()["detail"]
    r = client.post(f"{path}?model=nope", files={"file": ("one.png", digit_png(), "image/png")})
    assert r.status_code == 404 and "unknown model" in r.json()["detail"]


def test_explain_answers_the_inside_view(client, mnist_run):
    pytest.importorskip("captum")
    predicted = client.post("/api/predict", files={"file": ("one.png", digit_png(), "image/png")}).json()
    r = client.post("/api/explain", files={"file": ("one.png", digit_png(), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["prediction"] == predicted["prediction"] and body["probabilities"] == pytest.approx(predicted["probabilities"], abs=1e-5)
    assert [(x["name"], x["shape"], len(x["values"])) for x in body["layers"]] == [("features.1", [128], 64), ("features.2", [128], 64),
                                                                                ("head", [10], 10)]
    assert body["attributions"]["saliency"].startswith("data:image/png;base64,") and body["attributions"]["grad_cam"] is None  # an mlp
    every = client.post("/api/explain?methods=saliency,integrated_gradients,occlusion", files={"file": ("one.png", digit_png(), "image/png")})
    assert set(every.json()["attributions"]) == {"saliency", "integrated_gradients", "occlusion"}
    bad = client.post("/api/explain?methods=shap", files={"file": ("one.png", digit_png(), "image/png")})
    assert bad.status_code == 422 and "unknown attribution 'shap'" in bad.json()["detail"]


def test_model_picker_sees_other_runs(mnist_run, tmp_path, real_home):
    from mnistlab.training import train

    other = train("logreg", "mnist", out=tmp_path / "20990101-logreg", data_dir=real_home, train_subset=2000)
    client = TestClient(create_app(mnist_run, runs_dir=tmp_path))
    ids = [m["id"] for m in client.get("/api/models").json()]
    assert ids == [mnist_run.path.name, other.path.name]
    r = client.post(f"/api/predict?model={other.path.name}", files={"file": ("one.png", digit_png(), "image/png")})
    assert r.status_code == 200 and r.json()["model"] == other.path.name
