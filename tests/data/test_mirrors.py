"""The mirror path, against a local HTTP server on 127.0.0.1 serving good, corrupted and HTML responses."""

import dataclasses
import gzip

import numpy as np
import pytest

from mnistlab.data import catalog, fetch, load_dataset
from mnistlab.data.sources import MirrorSource, download
from mnistlab.errors import DatasetNotFound, SourceError
from tests.conftest import Mirror, make_tiny


@pytest.fixture
def tiny(tmp_path):
    return make_tiny(tmp_path / "files", catalog.MNIST)


def test_good_mirror(tiny, mirror):
    mirror.serve(tiny)
    spec = dataclasses.replace(tiny.spec, mirrors=(mirror.url,))
    meta = fetch(spec, sources=[MirrorSource(None)])
    assert meta["source"] == "mirrors" and set(meta["origins"].values()) == {mirror.url + f.name for f in spec.files}
    np.testing.assert_array_equal(load_dataset(spec, "test").labels, tiny.arrays[("test", "labels")])


def test_corrupt_and_html_mirrors_fall_through_to_a_good_one(tiny, mirror):
    bad, html = Mirror(), Mirror()
    try:
        for name, data in tiny.blobs.items():
            bad.routes["/" + name] = (200, "application/octet-stream", data[:-1] + bytes([data[-1] ^ 1]))
            html.routes["/" + name] = (200, "text/html; charset=utf-8", b"<html>captive portal</html>")
        mirror.serve(tiny)
        spec = dataclasses.replace(tiny.spec, mirrors=(bad.url, html.url, mirror.url))
        meta = fetch(spec)
        assert all(o.startswith(mirror.url) for o in meta["origins"].values())
        assert sum(bad.hits.values()) == 4 and sum(html.hits.values()) == 4
    finally:
        bad.close()
        html.close()


def test_every_mirror_bad_lists_each_reason(tiny, mirror):
    for name in tiny.blobs:
        mirror.routes["/" + name] = (200, "application/octet-stream", b"<!DOCTYPE html><p>moved</p>")
    spec = dataclasses.replace(tiny.spec, mirrors=(mirror.url, "http://127.0.0.1:9/"))
    with pytest.raises(DatasetNotFound) as info:
        fetch(spec)
    msg = str(info.value)
    assert "HTML page" in msg and "127.0.0.1:9" in msg and "mnistlab data import" in msg


def test_unreachable_host_is_not_retried_for_every_file(tiny, mirror):
    mirror.serve(tiny)
    spec = dataclasses.replace(tiny.spec, mirrors=("http://127.0.0.1:9/", mirror.url))
    meta = fetch(spec)
    assert meta["source"] == "mirrors"


def test_transient_errors_are_retried(tiny, mirror, monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    mirror.serve(tiny)
    mirror.fail_first["/train-images-idx3-ubyte.gz"] = 2
    spec = dataclasses.replace(tiny.spec, mirrors=(mirror.url,))
    fetch(spec)
    assert mirror.hits["/train-images-idx3-ubyte.gz"] == 3


def test_404_moves_on_without_retry(tmp_path, mirror):
    with pytest.raises(SourceError, match="HTTP 404"):
        download(mirror.url + "missing.gz", tmp_path / "missing.gz")
    assert mirror.hits["/missing.gz"] == 1 and not list(tmp_path.iterdir())


def test_download_with_md5_refuses_a_wrong_file(tmp_path, mirror):
    mirror.routes["/a.zip"] = (200, "application/zip", b"not the archive")
    with pytest.raises(SourceError, match="does not match the published"):
        download(mirror.url + "a.zip", tmp_path / "a.zip", md5="0" * 32)
    assert not list(tmp_path.iterdir()), "neither the file nor its .part is left"


def test_short_read_is_retried_then_reported(tmp_path, mirror, monkeypatch):
    monkeypatch.setattr("time.sleep", lambda s: None)
    body = gzip.compress(b"x" * 1000)

    # A server that promises more bytes than it sends
    import http.server

    class Liar(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + 50))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Liar)
    import threading

    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with pytest.raises(SourceError, match="after 2 tries|IncompleteRead"):
            download(f"http://127.0.0.1:{srv.server_address[1]}/f.gz", tmp_path / "f.gz", retries=2, timeout=5)
    finally:
        srv.shutdown()
        srv.server_close()
    assert not list(tmp_path.iterdir())
