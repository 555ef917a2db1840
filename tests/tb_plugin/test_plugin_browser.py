"""The LRP tab in a real TensorBoard (a subprocess on 127.0.0.1) driven by headless Chromium.

Opens the tab, checks that points are drawn, hovers one, box-selects, quick-selects a flagged
cluster, switches epoch and colour map, opens a timeline, uses the keyboard, exports the selection
and reopens the shared URL. Any console error or uncaught exception fails the test.

The screenshots in docs/images/plugin-*.png come from this test: run it with
``LRP_UPDATE_SCREENSHOTS=1`` to rewrite them (otherwise they go to a temporary directory).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from synthetic_runs import build_run

from lrp_lightning.store import RunStore, decode_relevance, make_attribution_table

CHROMIUM = os.environ.get("LRP_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
RUN = "mnist/version_0"
LIVE = "training/version_0"  # sorts after RUN, so the tab opens RUN
EPOCHS = 6
SAMPLES = 120
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install -e '.[test]')"),
    pytest.mark.skipif(
        not shutil.which(CHROMIUM), reason=f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def tensorboard(tmp_path_factory: pytest.TempPathFactory):
    """``tensorboard --logdir`` as a user runs it (the plugin found through its entry point)."""
    logdir = tmp_path_factory.mktemp("runs")
    build_run(logdir / RUN, epochs=EPOCHS, samples=SAMPLES, size=16, analysed=[0, 1, 2, 4, 5], metadata=True)
    build_run(logdir / "mnist" / "version_1", epochs=2, samples=24, analysed=[], thumbnails=False, seed=3)
    build_run(logdir / LIVE, epochs=1, samples=12, analysed=[0], seed=4)
    port = _free_port()
    log = (logdir.parent / "tensorboard.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{base}/data/plugins_listing", timeout=2) as response:
                if json.loads(response.read()).get("lrp", {}).get("enabled"):
                    break
        except (OSError, ValueError):
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log.close()
            pytest.fail("TensorBoard did not start: " + (logdir.parent / "tensorboard.log").read_text()[-2000:])
        time.sleep(0.25)
    yield base, logdir
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    if os.environ.get("LRP_UPDATE_SCREENSHOTS"):
        IMAGES.mkdir(parents=True, exist_ok=True)
        return IMAGES
    return tmp_path


class Tab:
    """The LRP tab of one page: the plugin's iframe and helpers to wait for it."""

    def __init__(self, page) -> None:
        self.page = page
        self.frame = None

    def attach(self) -> Tab:
        # Through the element, not page.frames: Playwright may not list an iframe that TensorBoard
        # created while the page was still loading.
        element = self.page.wait_for_selector("iframe[src*='plugin_entry.html?name=lrp']", timeout=30000)
        self.frame = element.content_frame()
        self.frame.wait_for_selector("#lrp-app[data-ready=true]", timeout=30000)
        self.idle()
        return self

    def idle(self) -> None:
        self.frame.wait_for_selector("#lrp-app[data-loading=false]", timeout=30000)

    def js(self, expression: str, argument=None):
        return self.frame.evaluate(expression, argument)

    def offset(self) -> tuple[float, float]:
        box = self.page.locator("iframe").bounding_box()
        return box["x"], box["y"]

    def images_loaded(self, selector: str) -> None:
        self.frame.wait_for_function(
            """(selector) => { const images = [...document.querySelectorAll(selector)];
                 return images.length > 0 && images.every((i) => i.complete && i.naturalWidth > 0); }""",
            arg=selector,
            timeout=20000,
        )


def _open(browser, url: str):
    context = browser.new_context(viewport={"width": 1360, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
            if message.type == "error" else None)
    page.on("pageerror", lambda exception: problems.append(f"page error: {exception}"))
    page.goto(url)
    return context, page, problems


def test_the_lrp_tab_in_tensorboard(tensorboard, browser, screenshots):
    base, logdir = tensorboard
    context, page, problems = _open(browser, f"{base}/")
    page.get_by_text("LRP", exact=True).first.click()
    tab = Tab(page).attach()

    # Opens at the latest epoch with its embedding drawn on the canvas.
    assert tab.js("lrp.state.epoch") == EPOCHS - 1 and tab.js("lrp.state.run") == RUN
    assert tab.frame.get_attribute(".scatter", "data-points") == str(SAMPLES)
    coloured = tab.js(
        """() => { const c = document.querySelector('.scatter-points');
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] < 700) n += 1;
             return n; }"""
    )
    assert coloured > SAMPLES * 4
    assert tab.frame.locator(".chip.flagged").count() == 1
    tab.images_loaded("#gallery img")
    tab.images_loaded("#prototypes img")
    page.screenshot(path=str(screenshots / "plugin-tab.png"))

    # Hover: the tooltip shows the nearest sample's input and heatmap.
    left, top = tab.offset()
    x, y, expected = tab.js(
        """() => { const [x, y] = lrp.scatter.toScreen(5); const r = lrp.scatter.overlay.getBoundingClientRect();
             const i = lrp.scatter.nearest(x, y);
             return [r.left + x, r.top + y, Number(lrp.points.columns.sample_id[i])]; }"""
    )
    page.mouse.move(left + x, top + y)
    tab.frame.wait_for_selector(f"#tooltip:not(.hidden)[data-sample='{expected}']")
    tab.images_loaded("#tooltip img")
    assert tab.frame.locator("#tooltip img").count() == 2
    tab.frame.locator(".main").screenshot(path=str(screenshots / "plugin-embedding.png"))

    # Box selection around the members of cluster 0.
    rect = tab.js(
        """() => { const p = lrp.points, s = lrp.scatter; let l = 1e9, t = 1e9, r = -1e9, b = -1e9;
             for (let i = 0; i < p.count; i += 1) if (p.columns.cluster[i] === 0) {
               l = Math.min(l, s.sx[i]); r = Math.max(r, s.sx[i]); t = Math.min(t, s.sy[i]); b = Math.max(b, s.sy[i]); }
             const o = s.overlay.getBoundingClientRect();
             return [o.left + l - 3, o.top + t - 3, o.left + r + 3, o.top + b + 3,
                     s.inside(l - 3, t - 3, r + 3, b + 3).length]; }"""
    )
    page.mouse.move(left + rect[0], top + rect[1])
    page.mouse.down()
    page.mouse.move(left + rect[2], top + rect[3], steps=6)
    page.mouse.up()
    inside = rect[4]
    assert inside >= 30
    tab.frame.wait_for_selector(f"#gallery-title:text-is('Selection ({inside})')")
    assert f"{inside} selected" in tab.frame.inner_text("#scatter-info")

    # Cluster quick-select: the flagged cluster and its reason.
    chip = tab.frame.locator(".chip.flagged")
    assert "top-left corner" in chip.inner_text()
    chip.click()
    size = tab.js("lrp.clusters.clusters.find((c) => c.flagged).size")
    tab.frame.wait_for_selector(f"#gallery-title:text-is('Selection ({size})')")
    assert chip.get_attribute("aria-pressed") == "true"

    # Export the selection as CSV.
    with page.expect_download() as download:
        tab.frame.click("#export-csv")
    lines = Path(download.value.path()).read_text().splitlines()
    # The run's probe metadata columns follow, in the details view's order (values as text, empty for null).
    assert lines[0] == "sample_id,label,prediction,cluster,epoch,run,watermarked,source,batch,brightness"
    assert len(lines) == size + 1
    flagged = tab.js("lrp.clusters.clusters.find((c) => c.flagged).cluster")
    assert {line.split(",")[3] for line in lines[1:]} == {str(flagged)}
    probe = {row["sample_id"]: row for row in RunStore(logdir / RUN).probe_table().to_pylist()}
    for line in lines[1:]:
        cells = line.split(",")
        known = probe[int(cells[0])]
        assert cells[6:9] == [str(known["watermarked"]).lower(), known["source"], str(known["batch"])]
        brightness = known["brightness"]
        assert cells[9] == "" if brightness != brightness else float(cells[9]) == brightness  # NaN: empty cell

    # Switch epoch with the keyboard on the slider; the gallery follows.
    tab.frame.focus("#epoch")
    page.keyboard.press("ArrowLeft")
    tab.frame.wait_for_selector(f"#lrp-app[data-epoch='{EPOCHS - 2}']")
    tab.idle()
    assert f"epoch={EPOCHS - 2}" in tab.frame.get_attribute("#gallery img", "src")
    tab.images_loaded("#gallery img")
    switch_ms = int(tab.js("document.querySelector('#lrp-app').dataset.epochSwitchMs"))
    assert switch_ms < 3000
    page.keyboard.press("ArrowLeft")  # epoch 3 has no analysis: heatmaps still, and a clear message
    tab.frame.wait_for_selector(f"#lrp-app[data-epoch='{EPOCHS - 3}']")
    tab.idle()
    assert "has no analysis yet" in tab.frame.inner_text(".scatter-panel")
    tab.images_loaded("#gallery img")
    page.keyboard.press("ArrowRight")
    tab.frame.wait_for_selector(f"#lrp-app[data-epoch='{EPOCHS - 2}']")
    tab.idle()

    # Colour map: server-side colouring, new images.
    tab.frame.select_option("#cmap", "coldnhot")
    tab.frame.wait_for_function("document.querySelector('#gallery img').src.includes('cmap=coldnhot')")
    tab.images_loaded("#gallery img")
    tab.images_loaded("#prototypes img")

    # Gallery as overlays, then the timeline of one sample.
    tab.frame.click("label.segment:has(#view-overlay)")
    tab.frame.wait_for_function("document.querySelector('#gallery img').src.includes('kind=overlay')")
    tab.images_loaded("#gallery img")
    tab.frame.locator(".gallery-panel").screenshot(path=str(screenshots / "plugin-gallery.png"))
    card = tab.frame.locator("#gallery .card").first
    sample = card.get_attribute("data-sample")
    card.click()
    tab.frame.wait_for_selector(f"#timeline:not(.hidden)[data-sample='{sample}']")
    assert tab.frame.locator("#timeline .frame").count() == EPOCHS
    assert tab.frame.locator("#timeline svg.chart").count() == 2
    assert tab.frame.locator("#timeline circle.dot").count() == 2 * EPOCHS
    tab.images_loaded("#timeline img")
    tab.frame.locator("#timeline").screenshot(path=str(screenshots / "plugin-timeline.png"))

    # Keyboard on the scatter: move between points, toggle one, open its timeline.
    tab.frame.focus(".scatter-overlay")
    page.keyboard.press("Escape")
    page.keyboard.press("ArrowRight")
    focused = tab.js("Number(lrp.points.columns.sample_id[lrp.scatter.focus])")
    tab.frame.wait_for_selector(f"#tooltip:not(.hidden)[data-sample='{focused}']")
    page.keyboard.press(" ")
    tab.frame.wait_for_selector("#gallery-title:text-is('Selection (1)')")
    page.keyboard.press("Enter")
    tab.frame.wait_for_selector(f"#timeline[data-sample='{focused}']")

    # The view lives in the URL: TensorBoard's address carries it, and reopening it restores it.
    shared = page.url
    assert "#lrp&" in shared and f"p.lrp.epoch={EPOCHS - 2}" in shared and "p.lrp.cmap=coldnhot" in shared
    assert problems == []
    context.close()

    context, page, problems = _open(browser, shared)
    tab = Tab(page).attach()
    assert tab.js("[lrp.state.epoch, lrp.state.cmap, lrp.state.view, lrp.state.sample]") == [
        EPOCHS - 2, "coldnhot", "overlay", focused,
    ]
    assert tab.js("[...lrp.selectedIds()]") == [focused]
    tab.frame.wait_for_selector(f"#timeline:not(.hidden)[data-sample='{focused}']")
    assert tab.frame.input_value("#cmap") == "coldnhot"
    assert problems == []
    context.close()


def test_a_run_without_analysis_or_thumbnails_outside_tensorboards_frame(tensorboard, browser):
    base, _ = tensorboard
    context, page, problems = _open(browser, f"{base}/data/plugin/lrp/index.html#run=mnist%2Fversion_1")
    page.wait_for_selector("#lrp-app[data-ready=true]")
    page.wait_for_selector("#lrp-app[data-loading=false]")
    assert "has no analysis yet" in page.inner_text(".scatter-panel")
    assert page.locator("#gallery .card").count() == 24
    assert page.is_disabled("#view-input") and page.is_disabled("#view-overlay")
    assert [o for o in page.eval_on_selector_all("#color-by option", "os => os.map(o => o.value)") if ":" in o] == []
    page.locator("#gallery .card").first.click()
    page.wait_for_selector("#timeline:not(.hidden) .frame")
    assert page.locator("#timeline .sample-metadata").count() == 0  # no metadata: no empty section
    with page.expect_download() as download:  # no metadata: the export's columns as they always were
        page.click("#export-csv")
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0] == "sample_id,label,prediction,cluster,epoch,run" and len(lines) == 24 + 1
    with page.expect_download() as download:
        page.click("#export-json")
    exported = json.loads(Path(download.value.path()).read_text())["samples"]
    assert len(exported) == 24 and all(list(row) == ["sample_id", "label", "prediction", "cluster"] for row in exported)
    page.select_option("#category", "class_1")
    page.wait_for_selector("#gallery-title:text-is('Samples (8)')")
    assert re.search(r"#run=mnist%2Fversion_1&epoch=1&cat=class_1", page.url)
    assert problems == []
    context.close()


def test_probe_metadata_shows_in_the_sample_details_and_colours_the_scatter(tensorboard, browser):
    base, logdir = tensorboard
    probe = {row["sample_id"]: row for row in RunStore(logdir / RUN).probe_table().to_pylist()}
    marked = min(i for i, row in probe.items() if row["watermarked"])
    context, page, problems = _open(browser, f"{base}/data/plugin/lrp/index.html#run=mnist%2Fversion_0&sel={marked}")
    page.wait_for_selector("#lrp-app[data-ready=true][data-loading=false]")

    # The sample's details list its metadata, one `name: value` row per column.
    page.click(f"#gallery .card[data-sample='{marked}']")
    page.wait_for_selector(f"#timeline:not(.hidden)[data-sample='{marked}'] .sample-metadata")
    rows = page.eval_on_selector_all("#timeline .metadata-row", "rows => rows.map((r) => r.textContent)")
    source, batch = probe[marked]["source"], probe[marked]["batch"]
    assert rows[:3] == ["watermarked: true", f"source: {source}", f"batch: {batch}"]
    assert rows[3].startswith("brightness: ") and len(rows) == 4
    brightness = rows[3].removeprefix("brightness: ")  # a measured number: 4 significant digits
    assert brightness == "–" or float(brightness) == float(f"{float(brightness):.4g}")

    # Colour by a metadata column: its categories in the legend, a colour per category on the canvas.
    options = page.eval_on_selector_all("#color-by option", "os => os.map((o) => o.value)")
    assert [o for o in options if o.startswith("meta:")] == ["meta:watermarked", "meta:source", "meta:batch"]
    draws = int(page.get_attribute(".scatter", "data-draws"))
    page.select_option("#color-by", "meta:watermarked")
    page.wait_for_function(f"Number(document.querySelector('.scatter').dataset.draws) > {draws}")
    chips = page.eval_on_selector_all("#legend .chip", "cs => cs.map((c) => [c.dataset.value, c.textContent])")
    watermarked = sum(row["watermarked"] for row in probe.values())
    assert chips == [["false", f"false{SAMPLES - watermarked}"], ["true", f"true{watermarked}"]]
    assert "color=meta%3Awatermarked" in page.url
    page.click("#legend .chip[data-value='true']")
    page.wait_for_selector(f"#gallery-title:text-is('Selection ({watermarked})')")
    # The JSON export carries the metadata as JSON values, null kept, in the details view's order.
    with page.expect_download() as download:
        page.click("#export-json")
    exported = json.loads(Path(download.value.path()).read_text())["samples"]
    assert len(exported) == watermarked
    for row in exported:
        known = probe[row["sample_id"]]
        assert list(row)[4:] == ["watermarked", "source", "batch", "brightness"]
        assert [row["watermarked"], row["source"], row["batch"]] == [True, known["source"], known["batch"]]
        brightness = known["brightness"]
        assert row["brightness"] is None if brightness != brightness else row["brightness"] == brightness
    page.select_option("#color-by", "meta:batch")
    page.wait_for_selector("#legend .chip[data-value='2']")
    assert page.eval_on_selector_all("#legend .chip", "cs => cs.map((c) => c.dataset.value)") == ["0", "1", "2"]
    assert problems == []
    context.close()


def test_a_new_epoch_of_a_running_training_appears_without_reloading(tensorboard, browser):
    base, logdir = tensorboard
    context, page, problems = _open(browser, f"{base}/#lrp&p.lrp.run=training%2Fversion_0")
    tab = Tab(page).attach()
    assert tab.js("[lrp.state.run, lrp.state.epoch]") == [LIVE, 0]
    assert tab.frame.get_attribute("#epoch", "max") == "0"
    store = RunStore(logdir / LIVE)
    table = store.attributions(0)
    rows = {name: table.column(name).to_numpy() for name in ("sample_id", "label", "prediction", "target", "score")}
    maps = decode_relevance(table.column("relevance"), store.heatmap_shape)
    store.write_epoch(1, 20, make_attribution_table(epoch=1, global_step=20, probability=0.5, relevance=maps, **rows))
    page.locator("button.reload-button").click()  # TensorBoard tells the tab (the tab also checks every 15 s)
    tab.frame.wait_for_selector("#lrp-app[data-epoch='1'][data-loading=false]")
    assert tab.frame.get_attribute("#epoch", "max") == "1"
    assert "has no analysis yet" in tab.frame.inner_text(".scatter-panel")  # epoch 1 is not analysed
    assert tab.frame.locator("#gallery .card").count() == 12
    assert problems == []
    context.close()
