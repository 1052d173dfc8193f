"""End to end in a real browser: Debian's chromium, driven headless by Playwright, draws a digit
on the pad and sees the probabilities appear. It never skips: a browser that cannot start fails."""

import os
import shutil
from pathlib import Path

import pytest

from mnistlab.serve.app import create_app
from tests.serve.conftest import serving

pytestmark = pytest.mark.realdata

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.fixture
def server(mnist_run, tmp_path):
    with serving(create_app(mnist_run, runs_dir=tmp_path)) as url:
        yield url + "/"


def test_draw_a_digit_and_see_probabilities(server, tmp_path):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"chromium not found at {CHROMIUM}: make test installs it (apt-get install chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 560})
            page.goto(server)
            page.wait_for_selector("#model option", state="attached")
            # before anything is drawn, "what the model sees" is an empty 28x28 field, not a broken image
            for empty in ("#seen", "#overlay"):
                assert page.evaluate(f"document.querySelector('{empty}').naturalWidth") == 28
            box = page.locator("#pad").bounding_box()
            x0, y0 = box["x"], box["y"]
            # a "7": the top bar, then the long diagonal
            page.mouse.move(x0 + 70, y0 + 60)
            page.mouse.down()
            for t in range(1, 11):
                page.mouse.move(x0 + 70 + 14 * t, y0 + 60)
            for t in range(1, 16):
                page.mouse.move(x0 + 210 - 6 * t, y0 + 60 + 13 * t)
            page.mouse.up()
            # the page says when the answer to the finished drawing has landed (no request left in flight)
            page.wait_for_function("document.body.dataset.idle === 'yes'", timeout=30000)
            percents = [float(t.rstrip("%")) for t in page.locator("#bars .bar .p").all_inner_texts()]
            assert len(percents) == 10 and abs(sum(percents) - 100) < 1.5 and max(percents) > 20
            answer, best = page.locator("#answer").inner_text(), page.locator("#bars .bar.best").get_attribute("data-class")
            if answer == "?":  # the run's detector found the drawing unlike its digits: said plainly, the bars still shown
                assert f"this does not look like a digit (closest: {best})" == page.locator("#confidence").inner_text()
            else:
                assert answer == best and answer in [str(d) for d in range(10)]  # the longest bar is the answer
            assert page.locator("#seen").get_attribute("src").startswith("data:image/png;base64,")
            assert page.locator("#status").inner_text() == ""
            # the inside view follows once the drawing pauses: each layer of the net, and where it looks
            page.wait_for_function("document.body.dataset.inside === 'yes' && document.querySelectorAll('#layers .layer').length > 0",
                                   timeout=30000)
            layers = page.locator("#layers .layer").evaluate_all("els => els.map(e => e.dataset.layer)")
            assert layers == ["features.1", "features.2", "head"]  # the mlp: Linear, ReLU, its head (Flatten and Dropout not shown)
            assert page.locator("#overlay").get_attribute("src").startswith("data:image/png;base64,")
            assert page.evaluate("document.querySelector('#overlay').src") != page.evaluate("document.querySelector('#seen').src")
            assert "3 layers" in page.locator("#inside-note").inner_text()
            # MNISTLAB_SCREENSHOT=docs/drawing-pad.png refreshes the README's picture
            shot = Path(os.environ.get("MNISTLAB_SCREENSHOT") or tmp_path / "pad.png")
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000
            page.click("#clear")
            assert page.locator("#answer").inner_text() == "?"
        finally:
            browser.close()
