"""The LRP tab in a real TensorBoard (a subprocess on 127.0.0.1) driven by headless Chromium.

Opens the tab, checks that points are drawn, hovers one, box-selects, quick-selects a flagged
cluster, switches epoch and colour map, opens a timeline, uses the keyboard, exports the selection
and reopens the shared URL. Any console error or uncaught exception fails the test.

The screenshots in docs/images/plugin-*.png come from this test (except those of real runs, which
screenshot_real_runs.py draws): run it with ``LRP_UPDATE_SCREENSHOTS=1`` to rewrite them (otherwise
they go to a temporary directory).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from synthetic_runs import CLUSTERING, EXTRA_CLUSTERING, STRAY_FINDING, WATERMARK_FINDING, build_run, revision_record
from tensorboard_server import serve_tensorboard

from lrp_lightning.store import RunStore, decode_relevance, make_attribution_table

CHROMIUM = os.environ.get("LRP_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RUN = "mnist/version_0"
LIVE = "training/version_0"  # sorts after RUN, so the tab opens RUN
VARIANTS = "variants/version_0"  # two clusterings: the classes default to another one than "all samples"
# As Embeddings(scope="flagged") lays out: t-SNE and UMAP for all samples and class 0, PCA only for
# classes 1 and 2; three flagged clusters side by side in "all samples".
SCOPED = "scoped/version_0"
METHODS_RUN = "zmethods/version_0"  # two attribution methods, sorts last
REVISED = "revised/version_0"  # a ClArCCallback revision record of its watermark finding, from epoch 1
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


def _methods_run(run_dir: Path) -> RunStore:
    """Three epochs explained by 'lrp' (relevance top-left) and 'gradient' (bottom-right), no analysis."""
    import numpy as np
    import pyarrow as pa

    from lrp_lightning.store import METHOD_FIELD, make_probe_table

    ids = np.arange(12, dtype=np.int64)
    store = RunStore.create(
        run_dir, heatmap_shape=(8, 8), input_shape=(1, 8, 8), methods=[{"name": "lrp"}, {"name": "gradient"}]
    )
    store.write_probe(make_probe_table(sample_id=ids, dataset_index=ids, label=ids % 2))
    for epoch in range(3):
        tables = []
        for method, corner in (("lrp", (slice(0, 3), slice(0, 3))), ("gradient", (slice(5, 8), slice(5, 8)))):
            maps = np.zeros((12, 8, 8), np.float32)
            maps[(slice(None), *corner)] = 1.0 + epoch
            table = make_attribution_table(
                epoch=epoch,
                global_step=epoch,
                sample_id=ids,
                label=ids % 2,
                prediction=ids % 2,
                target=ids % 2,
                score=np.ones(12),
                probability=np.full(12, 0.5),
                relevance=maps,
            )
            tables.append(table.append_column(METHOD_FIELD, pa.array([method] * 12)))
        store.write_epoch(epoch, epoch, pa.concat_tables(tables))
    return store


@pytest.fixture(scope="module")
def tensorboard(tmp_path_factory: pytest.TempPathFactory):
    """``tensorboard --logdir`` as a user runs it (the plugin found through its entry point)."""
    logdir = tmp_path_factory.mktemp("runs")
    build_run(logdir / RUN, epochs=EPOCHS, samples=SAMPLES, size=16, analysed=[0, 1, 2, 4, 5], metadata=True)
    build_run(logdir / "mnist" / "version_1", epochs=2, samples=24, analysed=[], thumbnails=False, seed=3)
    build_run(logdir / LIVE, epochs=1, samples=12, analysed=[0], seed=4)
    build_run(logdir / VARIANTS, epochs=2, samples=30, seed=5, extra_clustering=True)
    build_run(logdir / SCOPED, epochs=2, samples=30, seed=6, pca_only=[1, 2], flags=3)
    revised = build_run(logdir / REVISED, epochs=4, samples=30, seed=7)
    revised.record_revisions([revision_record(WATERMARK_FINDING.format(first=0), start_epoch=1, epochs=4)])
    _methods_run(logdir / METHODS_RUN)
    with serve_tensorboard(logdir, logdir.parent / "tensorboard.log") as base:
        yield base, logdir


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
    page.on(
        "console",
        lambda message: (
            problems.append(f"console {message.type}: {message.text} {message.location}")
            if message.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda exception: problems.append(f"page error: {exception}"))
    page.goto(url)
    return context, page, problems


def test_the_lrp_tab_in_tensorboard(tensorboard, browser, screenshots):
    base, logdir = tensorboard
    context, page, problems = _open(browser, f"{base}/")
    page.get_by_text("LRP", exact=True).first.click()
    tab = Tab(page).attach()

    # TensorBoard loaded the modules as one bundle, and the tab's start asked /first_view for the run
    # list, the run, its findings and the epoch's analysis: none of those routes was asked on its own.
    asked = tab.js(
        """[...performance.getEntriesByType("resource")].map((e) => new URL(e.name).pathname)
             .filter((path) => path.startsWith("/data/plugin/lrp/")).map((path) => path.slice(17))"""
    )
    assert "bundle.js" in asked and not [path for path in asked if path.endswith(".js") and path != "bundle.js"]
    assert asked.count("first_view") == 1 and {"samples", "embedding"} <= set(asked)
    assert not {"runs", "run", "analysis", "findings"} & set(asked), asked

    # Every registered view (static/views/index.js) is built and placed once, in the registry's order.
    views = tab.js("Object.keys(lrp.views)")
    assert views == ["findings", "embedding", "clusters", "timeline", "methods", "gallery"]
    assert tab.js("[...document.querySelectorAll('#lrp-app [data-view]')].map((e) => e.dataset.view)") == views

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
    tab.images_loaded("#findings .finding-strip img")  # the tab leads with the findings
    page.screenshot(path=str(screenshots / "plugin-tab.png"))

    # Hover: the tooltip shows the nearest sample's input and heatmap. The top-left point, so that the
    # tooltip (below and right of it) leaves the flagged cluster in sight on the screenshot.
    left, top = tab.offset()
    x, y, expected = tab.js(
        """() => { const s = lrp.scatter; let k = 0;
             for (let i = 1; i < s.count; i += 1) if (s.sx[i] + s.sy[i] < s.sx[k] + s.sy[k]) k = i;
             const [x, y] = s.toScreen(k); const r = s.overlay.getBoundingClientRect();
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
    # Each view has drawn into its element by now (a view whose wiring broke would stay empty).
    assert tab.js("Object.entries(lrp.views).filter(([, v]) => !v.element.childElementCount).map(([id]) => id)") == []

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
        EPOCHS - 2,
        "coldnhot",
        "overlay",
        focused,
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


def test_the_findings_panel_opens_a_finding_and_a_shared_link_reopens_it(tensorboard, browser, screenshots):
    base, logdir = tensorboard
    probe = RunStore(logdir / RUN).probe_table().to_pylist()
    marked = sorted(row["sample_id"] for row in probe if row["watermarked"])
    watermark = WATERMARK_FINDING.format(first=0)
    stray = STRAY_FINDING.format(last=EPOCHS - 1)
    # Opened elsewhere: another epoch and category than the finding's.
    context, page, problems = _open(browser, f"{base}/#lrp&p.lrp.run=mnist%2Fversion_0&p.lrp.epoch=2&p.lrp.cat=class_1")
    tab = Tab(page).attach()
    assert tab.js("[lrp.state.epoch, lrp.state.cat]") == [2, "class_1"]

    # The list comes first on the page: the watermark (seen in every analysed epoch), then the stray one.
    assert tab.js("document.querySelector('#lrp-app [data-view]').dataset.view") == "findings"
    tab.frame.wait_for_selector("#findings .finding")
    items = tab.frame.locator("#findings .finding")
    assert [items.nth(i).get_attribute("data-finding") for i in range(items.count())] == [watermark, stray]
    first = items.nth(0)
    assert first.locator(".finding-title").inner_text() == "digit 0: top-left corner"
    facts = first.locator(".finding-facts").inner_text()
    assert f"{len(marked)} samples in epoch {EPOCHS - 1}" in facts and "since epoch 0" in facts
    assert "seen in 0–2, 4–5" in facts  # epoch 3 is not analysed
    # A strip of the members' mean heatmap per epoch seen, and the strength over those epochs.
    assert first.locator(".finding-strip img").count() == 5
    assert first.locator("svg.sparkline circle").count() == 5
    tab.images_loaded("#findings .finding-strip img")

    # A click: the finding's category, its last epoch, exactly its members selected.
    first.locator("button.finding-open").click()
    tab.frame.wait_for_selector(f"#lrp-app[data-epoch='{EPOCHS - 1}']")
    tab.frame.wait_for_selector(f"#gallery-title:text-is('Selection ({len(marked)})')")
    tab.idle()
    assert tab.js("lrp.state.cat") == "class_0" and tab.frame.input_value("#category") == "class_0"
    assert tab.js("[...lrp.selectedIds()].sort((a, b) => a - b)") == marked
    assert f"{len(marked)} selected" in tab.frame.inner_text("#scatter-info")
    shown = tab.js("[...document.querySelectorAll('#gallery .card')].map((c) => Number(c.dataset.sample))")
    assert sorted(shown) == marked
    assert first.get_attribute("class") == "finding open"
    assert "top-left corner" in tab.frame.inner_text(".finding.open .finding-reason")
    tab.images_loaded("#findings .finding-strip img")
    tab.frame.locator(".findings-panel").screenshot(path=str(screenshots / "plugin_findings.png"))
    shared = page.url
    assert "p.lrp.finding=" in shared and "p.lrp.cat=class_0" in shared

    # The other finding: its own category and members.
    items.nth(1).locator("button.finding-open").click()
    tab.frame.wait_for_selector("#gallery-title:text-is('Selection (4)')")
    tab.idle()
    assert tab.js("lrp.state.cat") == "class_1" and tab.js("lrp.state.finding") == stray
    class_1 = sorted(row["sample_id"] for row in probe if row["label"] == 1)[:4]
    assert tab.js("[...lrp.selectedIds()].sort((a, b) => a - b)") == class_1
    # Another selection closes the finding, in the list and in the link.
    tab.js("lrp.clearSelection()")
    tab.frame.wait_for_function("document.querySelectorAll('#findings .finding.open').length === 0")
    assert tab.js("lrp.state.finding") is None and "p.lrp.finding=" not in page.url
    assert problems == []
    context.close()

    # The shared link reopens the watermark's finding.
    context, page, problems = _open(browser, shared)
    tab = Tab(page).attach()
    tab.frame.wait_for_selector(f".finding.open[data-finding='{watermark}']")
    assert tab.js("[lrp.state.finding, lrp.state.epoch, lrp.state.cat]") == [watermark, EPOCHS - 1, "class_0"]
    assert tab.js("[...lrp.selectedIds()].sort((a, b) => a - b)") == marked
    tab.frame.wait_for_selector(f"#gallery-title:text-is('Selection ({len(marked)})')")
    assert problems == []
    context.close()

    # A run without analysis says why it has no findings.
    context, page, problems = _open(browser, f"{base}/data/plugin/lrp/index.html#run=mnist%2Fversion_1")
    page.wait_for_selector("#lrp-app[data-ready=true][data-loading=false]")
    page.wait_for_selector("#findings .finding-empty")
    assert "No analysed epoch yet" in page.inner_text("#findings")
    assert problems == []
    context.close()


# ------------------------------------------------------------------------------------------ friction (issue 19)


def _plugin_page(browser, base: str, hash_: str):
    context, page, problems = _open(browser, f"{base}/data/plugin/lrp/index.html#{hash_}")
    page.wait_for_selector("#lrp-app[data-ready=true][data-loading=false]")
    return context, page, problems


def test_a_category_change_picks_its_own_default_clustering_and_clears_the_selection(tensorboard, browser):
    base, _ = tensorboard
    context, page, problems = _plugin_page(browser, base, "run=variants%2Fversion_0")
    assert page.input_value("#clustering") == CLUSTERING  # "all samples" selects kmeans
    page.click("#legend .chip[data-cluster='0']")
    page.wait_for_selector("#gallery-title:text-matches('Selection')")
    assert "selc=0" in page.url
    page.select_option("#category", "class_1")
    page.wait_for_function("lrp.points && lrp.points.meta.category === 'class_1'")
    page.wait_for_selector("#lrp-app[data-loading=false]")
    # class_1's own default, not the clustering that "all samples" had; no cluster of another category selected.
    assert page.input_value("#clustering") == EXTRA_CLUSTERING
    assert page.evaluate("[lrp.state.clu, lrp.selectedIds().size, lrp.state.selc.size]") == [EXTRA_CLUSTERING, 0, 0]
    page.wait_for_selector("#gallery-title:text-is('Samples (10)')")
    assert "selc=" not in page.url and f"clu={EXTRA_CLUSTERING}" in page.url
    assert problems == []
    context.close()


def test_the_tooltip_hides_when_the_embedding_is_switched(tensorboard, browser):
    base, _ = tensorboard
    context, page, problems = _plugin_page(browser, base, "run=mnist%2Fversion_0&emb=tsne")
    x, y, expected = page.evaluate(
        """() => { const [x, y] = lrp.scatter.toScreen(5); const r = lrp.scatter.overlay.getBoundingClientRect();
             return [r.left + x, r.top + y, Number(lrp.points.columns.sample_id[lrp.scatter.nearest(x, y)])]; }"""
    )
    page.mouse.move(x, y)
    page.wait_for_selector(f"#tooltip:not(.hidden)[data-sample='{expected}']")
    page.select_option("#embedding", "umap")
    page.wait_for_function("lrp.points && lrp.points.meta.embedding === 'umap'")
    page.wait_for_selector("#lrp-app[data-loading=false]")
    assert "hidden" in page.get_attribute("#tooltip", "class").split()
    assert problems == []
    context.close()


def test_a_pasted_share_link_switches_run_and_epoch_without_a_reload(tensorboard, browser):
    base, _ = tensorboard
    # The plugin's own page: only the hash changes.
    context, page, problems = _plugin_page(browser, base, "run=mnist%2Fversion_0")
    page.evaluate("window.lrpLoaded = true")  # gone if the page reloaded
    page.evaluate("location.hash = '#run=variants%2Fversion_0&epoch=0&cat=class_2&view=overlay&size=64&px=0'")
    page.wait_for_function("lrp.state.run === 'variants/version_0'", timeout=10000)
    page.wait_for_selector("#lrp-app[data-epoch='0'][data-loading=false]")
    assert page.evaluate("[window.lrpLoaded, lrp.state.epoch, lrp.state.cat, lrp.points.meta.category]") == [
        True,
        0,
        "class_2",
        "class_2",
    ]
    assert page.input_value("#run") == VARIANTS and page.input_value("#category") == "class_2"
    # The gallery's own keys too: its controls show them, its images follow them.
    assert page.is_checked("#view-overlay") and not page.is_checked("#pixelated")
    assert page.input_value("#image-size") == "64"
    page.wait_for_function("document.querySelector('#gallery img').src.includes('kind=overlay')")
    assert problems == []
    context.close()

    # Inside TensorBoard: a link pasted into the address bar changes the host's hash.
    context, page, problems = _open(browser, f"{base}/#lrp&p.lrp.run=mnist%2Fversion_0")
    tab = Tab(page).attach()
    tab.js("window.lrpLoaded = true")
    page.evaluate("location.hash = '#lrp&p.lrp.run=variants%2Fversion_0&p.lrp.epoch=0'")
    tab.frame.wait_for_function("lrp.state.run === 'variants/version_0'", timeout=10000)
    tab.frame.wait_for_selector("#lrp-app[data-epoch='0'][data-loading=false]")
    assert tab.js("[window.lrpLoaded, lrp.state.epoch]") == [True, 0]
    assert problems == []
    context.close()


def test_the_scatter_says_which_embedding_and_parameters_produced_it(tensorboard, browser):
    base, _ = tensorboard
    context, page, problems = _plugin_page(browser, base, "run=mnist%2Fversion_0&emb=tsne")
    caption = page.inner_text("#scatter-caption")
    assert caption.startswith(f"t-SNE (perplexity 30) of the relevance maps of {SAMPLES} samples (all samples)")
    assert f"epoch {EPOCHS - 1}" in caption and "no unit" in caption
    page.select_option("#embedding", "umap")
    page.wait_for_function("document.querySelector('#scatter-caption').textContent.startsWith('UMAP')")
    assert page.inner_text("#scatter-caption").startswith("UMAP (15 neighbours, minimum distance 0.1) of the relevance")
    page.select_option("#embedding", "spectral")
    page.wait_for_function("document.querySelector('#scatter-caption').textContent.startsWith('Spectral')")
    caption = page.inner_text("#scatter-caption")
    assert caption.startswith("Spectral embedding: eigenvectors 2 and 3 of the Laplacian of the 10-nearest-neighbour")
    page.select_option("#category", "class_1")
    page.wait_for_function("document.querySelector('#scatter-caption').textContent.includes('digit 1')")
    assert f"{SAMPLES // 3} samples (digit 1)" in page.inner_text("#scatter-caption")
    assert problems == []
    context.close()


def test_a_class_without_the_chosen_embedding_shows_its_points_under_pca(tensorboard, browser):
    base, _ = tensorboard
    context, page, problems = _plugin_page(browser, base, "run=scoped%2Fversion_0&emb=tsne")
    options = "[...document.querySelectorAll('#embedding option')].map((o) => o.value)"
    assert page.evaluate(options) == ["tsne", "umap", "pca", "spectral"]
    page.select_option("#category", "class_1")
    page.wait_for_function("lrp.points && lrp.points.meta.category === 'class_1'")
    page.wait_for_selector("#lrp-app[data-loading=false]")
    # t-SNE was not laid out for class 1: PCA stands in, its points drawn, and the caption says why.
    assert page.evaluate("[lrp.state.emb, lrp.points.meta.embedding]") == ["pca", "pca"]
    placed = page.evaluate(
        """() => { const s = lrp.scatter; let n = 0;
             for (let i = 0; i < s.count; i += 1) if (Number.isFinite(s.sx[i]) && Number.isFinite(s.sy[i])) n += 1;
             return n; }"""
    )
    assert placed == 10
    assert page.evaluate(options) == ["pca", "spectral"] and page.input_value("#embedding") == "pca"
    note = page.inner_text("#scatter-caption .caption-note")
    assert note.startswith("t-SNE was not computed for digit 1 in epoch 1") and note.endswith("showing PCA.")
    assert "PCA of the relevance maps of 10 samples (digit 1)" in page.inner_text("#scatter-caption")
    # Back on a category that has it, the chosen t-SNE returns, without the note.
    page.select_option("#category", "class_0")
    page.wait_for_function("lrp.points && lrp.points.meta.category === 'class_0'")
    page.wait_for_selector("#lrp-app[data-loading=false]")
    assert page.evaluate("[lrp.state.emb, lrp.points.meta.embedding]") == ["tsne", "tsne"]
    assert page.locator("#scatter-caption .caption-note").count() == 0
    assert page.inner_text("#scatter-caption").startswith("t-SNE (perplexity 30) of the relevance maps of 10 samples")
    # A choice made on the PCA-only class is kept where it exists.
    page.select_option("#category", "class_2")
    page.wait_for_function("lrp.points && lrp.points.meta.category === 'class_2'")
    page.select_option("#embedding", "spectral")
    page.wait_for_function("lrp.points && lrp.points.meta.embedding === 'spectral'")
    page.select_option("#category", "all")
    page.wait_for_function("lrp.points && lrp.points.meta.category === 'all'")
    page.wait_for_selector("#lrp-app[data-loading=false]")
    assert page.evaluate("lrp.points.meta.embedding") == "spectral" and "emb=spectral" in page.url
    assert problems == []
    context.close()

    # With no embedding named, the tab opens on the first one, t-SNE, as before; it counts as chosen.
    context, page, problems = _plugin_page(browser, base, "run=scoped%2Fversion_0")
    assert page.evaluate("lrp.points.meta.embedding") == "tsne"
    page.select_option("#category", "class_2")
    page.wait_for_function("lrp.points && lrp.points.meta.category === 'class_2'")
    assert page.inner_text("#scatter-caption .caption-note").startswith("t-SNE was not computed for digit 2")
    assert problems == []
    context.close()


def test_flag_labels_in_the_scatter_do_not_overlap(tensorboard, browser, tmp_path):
    base, _ = tensorboard
    context, page, problems = _plugin_page(browser, base, "run=scoped%2Fversion_0&emb=tsne")
    flagged = page.evaluate("lrp.clusters.clusters.filter((c) => c.flagged).length")
    assert flagged == 3
    page.wait_for_function("lrp.scatter.markerBoxes.length === 3")
    boxes = page.evaluate("lrp.scatter.markerBoxes.map((b) => ({...b}))")
    # The clusters lie side by side: labels put right of each ring, as they were, would collide.
    naive = [(b["sx"] + 10, b["sy"] - 8, b["sx"] + 10 + b["right"] - b["left"], b["sy"] + 8) for b in boxes]
    assert any(_intersect(a, b) for i, a in enumerate(naive) for b in naive[i + 1 :])
    laid_out = [(b["left"], b["top"], b["right"], b["bottom"]) for b in boxes]
    assert not any(_intersect(a, b) for i, a in enumerate(laid_out) for b in laid_out[i + 1 :]), boxes
    width, height = page.evaluate("[lrp.scatter.width, lrp.scatter.height]")
    for box in boxes:
        assert 0 <= box["left"] and box["right"] <= width and 0 <= box["top"] and box["bottom"] <= height
        assert abs((box["top"] + box["bottom"]) / 2 - box["sy"]) < 80  # near its cluster
        # The label is drawn where its box says: its red text inside the box.
        red = page.evaluate(
            """(b) => { const s = lrp.scatter, r = s.ratio || 1, c = s.overlay.getContext("2d");
                 const d = c.getImageData(Math.round(b.left * r), Math.round(b.top * r),
                   Math.round((b.right - b.left) * r), Math.round((b.bottom - b.top) * r)).data;
                 let n = 0;
                 for (let i = 0; i < d.length; i += 4) if (d[i] > 120 && d[i + 1] < 90 && d[i + 3] > 200) n += 1;
                 return n; }""",
            box,
        )
        assert red > 20, box
    assert sorted(b["text"].split(": ", 1)[1] for b in boxes) == ["bottom-right corner", "top edge", "top-left corner"]
    page.locator(".scatter-panel").screenshot(path=str(tmp_path / "flags.png"))  # to look at when it fails
    assert problems == []
    context.close()


def _intersect(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_a_revision_marks_the_epoch_axis_and_shows_the_finding_fading(tensorboard, browser, tmp_path):
    base, _ = tensorboard
    context, page, problems = _open(browser, f"{base}/#lrp&p.lrp.run=revised%2Fversion_0")
    tab = Tab(page).attach()
    watermark = WATERMARK_FINDING.format(first=0)
    block = tab.frame.locator(f"#findings .finding[data-finding='{watermark}'] .finding-revision")
    block.wait_for(timeout=90_000)  # TensorBoard reads the runs first: slow on a loaded machine
    assert block.get_attribute("data-method") == "rrclarc" and block.get_attribute("data-start") == "1"
    facts = block.locator(".revision-facts").inner_text()
    assert "revised with RR-ClArC from epoch 1" in facts and "held-out AUC 0.97" in facts
    assert "epoch 3: sensitivity 1%, strength 5%" in facts
    charts = block.locator("svg.chart")
    assert charts.count() == 2
    assert "strength of" in charts.nth(0).get_attribute("aria-label")
    assert charts.nth(1).get_attribute("aria-label") == "artifact sensitivity"
    for i in range(2):  # the mark where the revision started, and one point per measured epoch
        assert charts.nth(i).locator("line.mark").count() == 1
        assert charts.nth(i).locator("circle").count() == 4
    assert "from epoch 1" in charts.nth(0).locator("line.mark title").text_content()
    # The README's picture is of a real run (screenshot_real_runs.py); this one is to look at when it fails.
    tab.frame.locator(".findings-panel").screenshot(path=str(tmp_path / "revision.png"))
    # The sample timeline's epoch axis carries the same mark.
    tab.frame.wait_for_function("lrp.points && lrp.points.columns.sample_id.length > 0")
    sample = tab.js("Number(lrp.points.columns.sample_id[0])")
    tab.js(f"lrp.openSample({sample})")
    tab.frame.wait_for_selector(f"#timeline[data-sample='{sample}'] svg.chart", state="attached")
    assert tab.frame.locator("#timeline svg.chart line.mark").count() == 2
    assert problems == []
    context.close()


def _red_corner(page, selector: str) -> str:
    """Which corner of an <img> heatmap is reddest (bwr: positive relevance is red): 'top-left' or 'bottom-right'."""
    return page.eval_on_selector(
        selector,
        """(img) => { const c = document.createElement('canvas');
             c.width = img.naturalWidth; c.height = img.naturalHeight;
             const g = c.getContext('2d'); g.drawImage(img, 0, 0);
             const red = (x, y) => { const d = g.getImageData(x, y, 1, 1).data; return d[0] - d[2]; };
             return red(1, 1) > red(c.width - 2, c.height - 2) ? 'top-left' : 'bottom-right'; }""",
    )


def test_the_method_picker_and_the_grid_of_epochs_by_methods(tensorboard, browser):
    base, _ = tensorboard
    url = f"{base}/data/plugin/lrp/index.html#run=zmethods%2Fversion_0&sample=3"
    context, page, problems = _open(browser, url)
    page.wait_for_selector("#lrp-app[data-ready=true]")
    page.wait_for_selector("#lrp-app[data-loading=false]")
    # the picker lists the run's methods; the first is shown
    assert page.eval_on_selector_all("#method option", "os => os.map(o => o.value)") == ["lrp", "gradient"]
    assert page.is_visible("#method") and page.input_value("#method") == "lrp"
    # the grid: one row per method, one column per epoch, each image that method's map of sample 3
    page.wait_for_selector("#methods-grid:not(.hidden) img")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#methods-grid img')].every((i) => i.complete && i.naturalWidth > 0)"
    )
    cells = page.eval_on_selector_all(
        "#methods-grid img", "is => is.map(i => [i.dataset.method, Number(i.dataset.epoch)])"
    )
    assert cells == [["lrp", 0], ["lrp", 1], ["lrp", 2], ["gradient", 0], ["gradient", 1], ["gradient", 2]]
    assert _red_corner(page, "#methods-grid img[data-method=lrp][data-epoch='1']") == "top-left"
    assert _red_corner(page, "#methods-grid img[data-method=gradient][data-epoch='1']") == "bottom-right"
    # picking another method shows its maps everywhere and goes into the share link
    page.wait_for_selector("#gallery img")
    page.select_option("#method", "gradient")
    page.wait_for_selector("#lrp-app[data-loading=false]")
    page.wait_for_function("() => location.hash.includes('method=gradient')")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#gallery img')].some((i) => i.src.includes('method=gradient'))"
    )
    first = "#gallery .card img"
    page.wait_for_function(
        f"() => {{ const i = document.querySelector({first!r}); return i && i.complete && i.naturalWidth > 0; }}"
    )
    assert _red_corner(page, first) == "bottom-right"
    # a reload of the share link opens the same method
    page.reload()
    page.wait_for_selector("#lrp-app[data-ready=true]")
    page.wait_for_selector("#lrp-app[data-loading=false]")
    assert page.input_value("#method") == "gradient"
    assert problems == []
    context.close()


def test_an_exported_selection_or_finding_imports_as_the_selection(tensorboard, browser, tmp_path):
    base, _ = tensorboard
    context, page, problems = _open(browser, f"{base}/data/plugin/lrp/index.html#run=zmethods%2Fversion_0")
    page.wait_for_selector("#lrp-app[data-ready=true]")
    page.wait_for_selector("#lrp-app[data-loading=false]")
    selected = "() => [...lrp.selectedIds()].sort((a, b) => a - b)"
    # a CSV exported by this tab, selection 2, 5, 7: exported, cleared, imported again
    page.evaluate("lrp.setSelection(new Set([2, 5, 7]), new Set())")
    with page.expect_download() as download:
        page.click("#export-csv")
    exported = Path(download.value.path())
    page.evaluate("lrp.clearSelection()")
    assert page.evaluate(selected) == []
    page.set_input_files("#import-selection", str(exported))
    page.wait_for_function("() => lrp.selectedIds().size === 3")
    assert page.evaluate(selected) == [2, 5, 7]
    # a JSON export of a finding's members, one of them not in this run
    finding = tmp_path / "finding.json"
    finding.write_text(json.dumps({"findings": [{"finding_id": "class_0/x@0", "member_ids": [1, 3, 999]}]}))
    page.set_input_files("#import-selection", str(finding))
    page.wait_for_function("() => lrp.selectedIds().size === 2")
    assert page.evaluate(selected) == [1, 3]
    assert "Imported 2 sample ids from finding.json (1 not in this run)" in page.inner_text("#lrp-app")
    # a file that is neither says why
    bad = tmp_path / "notes.csv"
    bad.write_text("name,value\na,1\n")
    page.set_input_files("#import-selection", str(bad))
    page.wait_for_function("() => document.body.innerText.includes('Import failed: notes.csv has no sample_id column')")
    assert page.evaluate(selected) == [1, 3]  # unchanged
    assert problems == []
    context.close()
