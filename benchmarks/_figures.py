"""Long-input figures (issue 7): plotly payload size and draw time in headless Chromium.

The figure is what the app sends for one layer's attention over N tokens: `app.figures.prepare_matrix`
(block-pooled above `MAX_SIZE`) -> `to_plotly` -> JSON. Draw time is `Plotly.newPlot` of that JSON
plus one animation frame, in Debian's Chromium driven by Playwright, plotly.js inlined from the
installed plotly package (nothing from the network); best of two draws.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ._common import Row, judge

PAYLOAD_TARGET_MB = 5.0
DRAW_TARGET_MS = 1000.0
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# Best-of-two `Plotly.newPlot` time (ms) of a figure spec in a page that has a div#fig; shared with the tests.
DRAW_JS = """async (spec) => {
    const div = document.getElementById('fig');
    let best = Infinity;
    for (let i = 0; i < 2; i++) {
        Plotly.purge(div);
        const t0 = performance.now();
        await Plotly.newPlot(div, spec.data, spec.layout);
        await new Promise(r => requestAnimationFrame(() => r()));
        best = Math.min(best, performance.now() - t0);
    }
    if (!div.querySelector('.heatmaplayer image, .hm image')) throw new Error('no heatmap drawn');
    return best;
}"""


def _matrix_json(n: int) -> str:
    """Plotly JSON of one layer's [n, n] attention (random rows summing to 1) with token labels."""
    from app.figures import prepare_matrix, to_plotly

    rng = np.random.default_rng(n)
    a = rng.random((n, n), dtype=np.float32)  # [q, k]
    a /= a.sum(axis=1, keepdims=True)
    prepared = prepare_matrix(a, [f"tok{i % 97}" for i in range(n)], layer=0)
    return to_plotly(prepared).to_json()


def chromium_path() -> str | None:
    found = shutil.which("chromium") or "/usr/bin/chromium"
    return found if Path(found).exists() else None


def figure_rows(sizes: list[int], *, smoke: bool) -> list[Row]:
    payloads = {n: _matrix_json(n) for n in sizes}
    rows = []
    for n, js in payloads.items():
        mb = len(js.encode("utf-8")) / 1e6
        rows.append(Row(f"payload_{n}", f"figure payload, {n}x{n} attention matrix (plotly JSON)", mb, "MB",
                        PAYLOAD_TARGET_MB, judge(mb, PAYLOAD_TARGET_MB, smoke=smoke)))
    draws = _draw_ms(payloads)
    for n in sizes:
        ms, why = draws.get(n, (None, "not drawn"))
        rows.append(Row(f"draw_{n}", f"draw time in Chromium, {n}x{n} attention matrix", ms, "ms", DRAW_TARGET_MS,
                        judge(ms, DRAW_TARGET_MS, smoke=smoke), why))
    return rows


def _draw_ms(payloads: dict[int, str]) -> dict[int, tuple[float | None, str]]:
    """{n: (milliseconds, note)}; (None, reason) for every size when no browser can run."""
    exe = chromium_path()
    if exe is None:
        return {n: (None, "skipped: no Chromium (apt-get install chromium)") for n in payloads}
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {n: (None, "skipped: playwright is not installed (pip install playwright)") for n in payloads}
    from plotly.offline import get_plotlyjs

    out: dict[int, tuple[float | None, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        page_file = Path(tmp) / "plot.html"
        page_file.write_text(f'<html><body><script>{get_plotlyjs()}</script><div id="fig"></div></body></html>',
                             encoding="utf-8")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1200, "height": 1000})
                    for n, js in payloads.items():
                        page.goto(page_file.as_uri())
                        out[n] = (float(page.evaluate(DRAW_JS, json.loads(js))), "best of 2 draws")
                finally:
                    browser.close()
        except PlaywrightError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return {n: out.get(n, (None, f"skipped: Chromium failed: {first}")) for n in payloads}
    return out
