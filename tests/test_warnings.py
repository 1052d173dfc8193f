"""A user sees mnistlab's words, never a library's warning: every command on a real run, in a fresh process with
Python's own warning filters (what a user's shell gets), and nothing on stderr in the form of a warning unless it
was raised in mnistlab's own code. mnistlab's own notes (its logger) still come through."""

import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.serve.test_classroom import _pngs

pytestmark = pytest.mark.realdata
pytest.importorskip("captum")

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mnistlab"
WARNING = re.compile(r"^(?P<file>.+?):\d+: (?P<kind>\w*Warning): (?P<message>.*)$")

COMMANDS = """
import sys
from mnistlab.cli import invoke
home, work = sys.argv[1], sys.argv[2]
d = ["--data-dir", home]
steps = [
    ["train", "--model", "cnn", "--dataset", "mnist", "--epochs", "1", "--train-subset", "2000", "--out", f"{work}/r", *d],
    ["evaluate", f"{work}/r", *d],
    ["report", f"{work}/r", *d],
    ["predict", f"{work}/r", f"{work}/digit.png"],
    ["explain", f"{work}/r", f"{work}/digit.png"],
    ["robustness", f"{work}/r", "--attack-images", "20", "--corruption-images", "50", "--steps", "2", *d],
    ["export", f"{work}/r", "--format", "onnx", "--out", f"{work}/r.onnx", *d],
    ["export", f"{work}/r", "--format", "pt2", "--out", f"{work}/r.pt2", *d],
    ["export", f"{work}/r", "--format", "torchscript", "--out", f"{work}/r.pt", *d],
    ["compare", f"{work}/r", f"{work}/r", *d],
    ["bench", "--suite", "quick", "--model", "logreg", "--out", f"{work}/bench", "-q", *d],
]
for argv in steps:
    print("$ mnistlab", " ".join(argv[:3]), file=sys.stderr, flush=True)
    code = invoke(argv)
    if code:
        sys.exit(f"mnistlab {argv[0]} exited {code}")
"""


def _library_warnings(stderr: str) -> list[str]:
    found = []
    for line in stderr.splitlines():
        m = WARNING.match(line)
        if m and not Path(m["file"]).resolve().is_relative_to(PACKAGE):
            found.append(line)
    return found


def _clean_env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}


def test_no_command_prints_a_library_warning(real_home, tmp_path):
    (tmp_path / "digit.png").write_bytes(_pngs(real_home, 1)[0])
    done = subprocess.run([sys.executable, "-c", COMMANDS, str(real_home), str(tmp_path)], capture_output=True, text=True,
                          timeout=900, env=_clean_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("$ mnistlab") == 11  # every command ran
    assert "PGD's 2 steps of 0.01 reach 0.02, less than eps" in done.stderr  # mnistlab's own warning stays
    assert not _library_warnings(done.stderr)


def test_the_pad_s_start_prints_no_library_warning(real_home, mnist_run, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "mnistlab", "serve", str(mnist_run.path), "--port", str(port),
                               "--runs-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_clean_env())
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/models", timeout=5) as r:
                    assert r.status == 200
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None, "the server did not start"
                time.sleep(0.2)
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert not _library_warnings(stderr)


def test_the_check_sees_a_library_s_warning_and_lets_mnistlab_s_own_through():
    lines = ("/x/site-packages/torch/export/pt2_archive/_package.py:415: UserWarning: No complete tensor found\n"
             f"{PACKAGE / 'run.py'}:10: UserWarning: our own\n  the source line\nplain text: Warning: not one")
    assert _library_warnings(lines) == [lines.splitlines()[0]]
