"""End-to-end: the real dashboard (`streamlit run` with attnscope's launch flags, on a free
localhost port) driven by Playwright in Debian's Chromium.

Tiny random models saved to temp folders are opened with the page URL's ?model=... parameter.
Screenshots go to test-artifacts/; with ATTNSCOPE_DOCS_SCREENSHOTS=1 the views of the built-in
demo models are also copied to docs/screenshots/ for the README.
"""
from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from PIL import Image

from app import launch, pipeline
from tests.test_app_dashboard import gpt2_folder, vit_folder  # noqa: F401 - shared fixtures

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
DOCS_SHOTS = REPO / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
WAIT_MS = 120_000  # first capture on a busy 2-core machine

TRACE_TYPES_JS = "() => [...document.querySelectorAll('.js-plotly-plot')].map(g => (g.data || []).map(t => t.type))"
IMAGE_SOURCE_JS = """() => [...document.querySelectorAll('.js-plotly-plot')]
    .map(g => (g.data || []).filter(t => t.type === 'image').map(t => t.source || '').join('')).join('')"""
TICKS_JS = """() => [...document.querySelectorAll('.js-plotly-plot')]
    .map(g => ((g.layout || {}).xaxis || {}).ticktext || []).flat().join(' ')"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The dashboard on http://127.0.0.1:<free port>, stopped after the module's tests."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's Chromium is missing: scripts/test.sh installs it (apt-get install chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    port = _free_port()
    log = open(ARTIFACTS / "streamlit-server.log", "w")
    proc = subprocess.Popen(launch.streamlit_command(port=port), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"streamlit did not start; see {ARTIFACTS / 'streamlit-server.log'}")
        time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _open(browser, url: str, model: str, height: int = 1000):
    page = browser.new_context(viewport={"width": 1400, "height": height}, accept_downloads=True).new_page()
    page.goto(f"{url}/?model={quote(model)}")
    page.wait_for_selector(".js-plotly-plot", state="visible", timeout=WAIT_MS)
    _settle(page)
    return page


def _traces(page) -> list[list[str]]:
    return page.evaluate(TRACE_TYPES_JS)


def _view(page, name: str) -> None:
    page.locator('[data-testid="stRadio"] label').filter(has_text=name).first.click()


def _wait_for(page, predicate, what: str, timeout_s: float = 90) -> None:
    deadline = time.time() + timeout_s
    while not predicate():
        if time.time() > deadline:
            page.screenshot(path=str(ARTIFACTS / f"timeout-{what}.png"), full_page=True)
            pytest.fail(f"timed out waiting for {what}")
        page.wait_for_timeout(300)


RUNNING = '[data-testid="stStatusWidgetRunningIcon"], [data-testid="stStatusWidgetRunningManIcon"]'


def _settle(page, timeout_s: float = 90) -> None:
    """Wait until the script run has finished (no running indicator twice in a row), so stale
    elements of the previous run are gone."""
    quiet = 0
    deadline = time.time() + timeout_s
    while quiet < 2:
        quiet = quiet + 1 if page.locator(RUNNING).count() == 0 else 0
        if time.time() > deadline:
            pytest.fail("the page kept running")
        page.wait_for_timeout(400)


def _no_error(page) -> None:
    errors = page.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, errors.all_inner_texts()
    assert page.locator('[data-testid="stException"]').count() == 0


def test_page_loads_with_a_visible_heatmap(server, browser, gpt2_folder):
    page = _open(browser, server, gpt2_folder)
    assert any("heatmap" in t for t in _traces(page))
    _no_error(page)
    assert page.get_by_text("Attention is not importance", exact=False).first.is_visible()
    page.screenshot(path=str(ARTIFACTS / "browser-matrix.png"), full_page=True)
    page.context.close()


def test_uploaded_image_gets_its_overlay(server, browser, vit_folder, tmp_path):
    page = _open(browser, server, vit_folder)
    img = Image.new("RGB", (64, 64), (235, 235, 235))
    img.paste((20, 20, 200), (10, 30, 40, 60))
    path = tmp_path / "blue-square.png"
    img.save(path)
    _view(page, "Image view")  # image models open on it; the sample image's overlay is shown
    _wait_for(page, lambda: page.evaluate(IMAGE_SOURCE_JS), "sample overlay")
    before = page.evaluate(IMAGE_SOURCE_JS)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(str(path))
    page.get_by_text("blue-square.png").first.wait_for(timeout=WAIT_MS)
    _wait_for(page, lambda: page.evaluate(IMAGE_SOURCE_JS) not in ("", before), "uploaded image's overlay")
    _settle(page)
    assert any("image" in t and "heatmap" in t for t in _traces(page))
    assert page.get_by_text("Sample image", exact=True).count() == 0  # the upload replaced the samples
    _no_error(page)
    page.screenshot(path=str(ARTIFACTS / "browser-image-upload.png"), full_page=True)
    page.context.close()


def test_export_downloads_a_valid_png(server, browser, gpt2_folder, tmp_path):
    page = _open(browser, server, gpt2_folder)
    page.locator('[data-testid="stExpander"] summary').filter(has_text="Export").click()
    button = page.locator('[data-testid="stDownloadButton"] button').filter(has_text="PNG").first
    button.wait_for(timeout=WAIT_MS)
    with page.expect_download(timeout=WAIT_MS) as info:
        button.click()
    target = tmp_path / info.value.suggested_filename
    info.value.save_as(target)
    data = target.read_bytes()
    assert target.suffix == ".png" and data.startswith(b"\x89PNG\r\n\x1a\n")
    assert Image.open(io.BytesIO(data)).size[0] >= 1000  # rendered at 2x
    page.context.close()


def test_four_simultaneous_sessions_each_see_their_own_input(server, browser, gpt2_folder):
    texts = {"cat": "the cat sat on the mat", "dog": "a dog ran under the tree",
             "bird": "the bird flew over the pond", "fish": "a fish swam and the fish ate"}
    pages = {word: _open(browser, server, gpt2_folder) for word in texts}
    for word, page in pages.items():  # type into all four before any has finished capturing
        box = page.locator("textarea").first
        box.fill(texts[word])
        box.press("Control+Enter")
    for word, page in pages.items():
        others = [w for w in texts if w != word]
        _wait_for(page, lambda p=page, w=word: w in p.evaluate(TICKS_JS), f"session-{word}")
        _settle(page)
        ticks = page.evaluate(TICKS_JS)
        assert not any(o in ticks.split() for o in others), (word, ticks)
        _no_error(page)
    pages["fish"].screenshot(path=str(ARTIFACTS / "browser-session-fish.png"), full_page=True)
    for page in pages.values():
        page.context.close()


def _builtin_ready(name: str) -> bool:
    from hooks import registry

    m = registry.resolve(name)
    return m is not None and m.available


SCREENSHOTS = [  # (built-in model, [(view, screenshot name)])
    (pipeline.default_model(), [("Matrix", "matrix"), ("Model view", "model-view"),
                                ("Token view", "token-view"), ("Analysis", "analysis")]),
    ("shapes-vit", [("Image view", "image-view")]),
    ("shapes-captioner", [("Image view", "captioner")]),
]


@pytest.mark.parametrize("model, views", SCREENSHOTS, ids=[m for m, _ in SCREENSHOTS])
def test_screenshots_of_the_main_views_on_the_builtin_demos(server, browser, model, views):
    if not _builtin_ready(model):
        pytest.skip(f"built-in {model} has no weights in this checkout (python -m demos.build {model})")
    page = _open(browser, server, model, height=1700)  # tall enough to show the figure
    shots = []
    for view, name in views:
        _view(page, view)
        _settle(page)
        page.wait_for_selector(".js-plotly-plot", state="visible", timeout=WAIT_MS)
        _no_error(page)
        assert _traces(page), view
        shots.append(ARTIFACTS / f"app-{name}.png")
        page.screenshot(path=str(shots[-1]), full_page=True)
    page.context.close()
    if os.environ.get("ATTNSCOPE_DOCS_SCREENSHOTS") == "1":
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shutil.copy(shot, DOCS_SHOTS / shot.name)
    assert all(s.stat().st_size > 10_000 for s in shots)
