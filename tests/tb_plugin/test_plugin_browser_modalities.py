"""Signal, tabular and token runs in the LRP tab of a real TensorBoard, driven by headless Chromium.

Each run opens in the gallery as compact drawings (a coloured line, bars, highlighted tokens), and a
sample's timeline shows it in detail, with the hovered value in a readout, and over the epochs. The
values shown are checked against the run's stored relevance. Any console error fails the test.

The screenshots ``docs/images/plugin-signal.png``, ``plugin-tabular.png``, ``plugin-tokens.png`` and
``plugin-token-prototypes.png`` come from this test: run it with ``LRP_UPDATE_SCREENSHOTS=1`` to rewrite them.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import test_plugin_browser as image_tests
from PIL import Image
from synthetic_sequences import (
    CLASS_FEATURES,
    FEATURES,
    LENGTH,
    SPURIOUS,
    VOCABULARY,
    WINDOWS,
    build_signal_run,
    build_tabular_run,
    build_token_run,
    token_sentences,
)
from tensorboard_server import serve_tensorboard
from test_plugin_browser import Tab, _open

from lrp_lightning.analysis import Embeddings, SpRAy, analyze_run
from lrp_lightning.store import META_TOKEN_VOCABULARY, RunStore

pytestmark = image_tests.pytestmark  # browser tests; skipped without Playwright or Chromium
browser = image_tests.browser  # the fixtures of the image tests: one Chromium per module,
screenshots = image_tests.screenshots  # the screenshots' folder (docs/images with LRP_UPDATE_SCREENSHOTS=1)

SIGNAL = "ecg/version_0"
TABULAR = "churn/version_0"
TOKENS = "reviews/version_0"
LONG = "holter/version_0"  # a signal of LONG_STEPS time steps: drawn from its peaks
LONG_STEPS = 4000
EPOCHS = 3


@pytest.fixture(scope="module")
def tensorboard(tmp_path_factory: pytest.TempPathFactory):
    logdir = tmp_path_factory.mktemp("modalities")
    signal = build_signal_run(logdir / SIGNAL, epochs=EPOCHS, samples=16)
    # The last epoch analysed (PCA only: seconds), so that the embedding's tooltip can be checked.
    analyze_run(signal, SpRAy(embeddings=Embeddings(methods=("pca",))), epochs=[EPOCHS - 1], log_scalars=False)
    tabular = build_tabular_run(logdir / TABULAR, epochs=EPOCHS, samples=16)
    tokens = build_token_run(logdir / TOKENS, epochs=EPOCHS, samples=16)
    for store in (tabular, tokens):  # two analysed epochs: cluster prototypes over epochs
        analyze_run(store, SpRAy(embeddings=Embeddings(methods=("pca",))), epochs=[1, 2], log_scalars=False)
    build_signal_run(logdir / LONG, epochs=2, samples=4, length=LONG_STEPS)
    with serve_tensorboard(logdir, logdir.parent / "tensorboard-modalities.log") as base:
        yield base, logdir


def _open_run(browser, base: str, run: str, sample: int | None = None):
    hash_part = f"#lrp&p.lrp.run={run}" + (f"&p.lrp.sample={sample}" if sample is not None else "")
    context, page, problems = _open(browser, f"{base}/{hash_part}")
    tab = Tab(page).attach()
    assert tab.js("lrp.state.run") == run and tab.js("lrp.info.modality") in ("signal", "tabular", "tokens")
    _gallery_ready(tab)
    return context, page, problems, tab


def _gallery_ready(tab: Tab) -> None:
    """Every card of the gallery's page is drawn (each fetches its values)."""
    tab.frame.wait_for_function(
        "() => { const cards = [...document.querySelectorAll('#gallery .sequence-card')];"
        " return cards.length > 0 && cards.every((c) => c.dataset.ready === 'true'); }",
        timeout=20000,
    )


def _detail(tab: Tab) -> None:
    tab.frame.wait_for_selector("#timeline .sequence-detail[data-ready=true]", timeout=20000)


def _screenshot(tab: Tab, path) -> None:
    """The README's picture of a modality: the open sample's timeline above the gallery's first rows."""
    parts = []
    for selector in ("#timeline", ".gallery-panel"):
        parts.append(Image.open(io.BytesIO(tab.frame.locator(selector).screenshot())).convert("RGB"))
    gallery = parts[1].crop((0, 0, parts[1].width, min(parts[1].height, 330)))
    picture = Image.new("RGB", (max(parts[0].width, gallery.width), parts[0].height + 8 + gallery.height), "#f5f5f5")
    picture.paste(parts[0], (0, 0))
    picture.paste(gallery, (0, parts[0].height + 8))
    picture.save(path, optimize=True)


def _stored(logdir, run: str, epoch: int, sample: int) -> np.ndarray:
    ids, maps = RunStore(logdir / run).heatmaps(epoch, [sample])
    return maps[0].reshape(-1)


def test_a_signal_run_shows_lines_coloured_by_relevance(tensorboard, browser, screenshots):
    base, logdir = tensorboard
    sample = 8  # class 1: its bump, and its relevance, is in WINDOWS[1]
    context, page, problems, tab = _open_run(browser, base, SIGNAL)
    assert tab.js("lrp.state.epoch") == EPOCHS - 1
    # The gallery: one line per sample, over one coloured band of LENGTH time steps.
    cards = tab.frame.locator("#gallery .sequence-card")
    assert cards.count() == 16
    first = tab.frame.locator("#gallery .sequence-card").first
    assert first.locator(".signal-band rect").count() == LENGTH
    assert first.locator(".signal-line").count() == 1
    assert tab.frame.locator("#gallery img").count() == 0  # no picture of a one-pixel-high strip
    assert not tab.frame.locator("#pixelated").is_visible()  # drawings have no pixels to sample
    # The embedding's tooltip draws the hovered sample's signal as the gallery does.
    left, top = tab.offset()
    x, y, hovered = tab.js(
        """() => { const s = lrp.scatter; const [x, y] = s.toScreen(0); const r = s.overlay.getBoundingClientRect();
             return [r.left + x, r.top + y, Number(lrp.points.columns.sample_id[s.nearest(x, y)])]; }"""
    )
    page.mouse.move(left + x, top + y)
    tab.frame.wait_for_selector(f"#tooltip:not(.hidden) .sequence-card[data-sample='{hovered}'][data-ready=true]")
    assert tab.frame.locator("#tooltip .signal-band rect").count() == LENGTH
    assert tab.frame.locator("#tooltip img").count() == 0
    page.mouse.move(5, 5)
    tab.frame.locator(f"#gallery .card[data-sample='{sample}']").click()
    _detail(tab)
    detail = tab.frame.locator("#timeline .sequence-focus")
    # The time steps of the bump are drawn in the colour map's red end (bwr: positive relevance), the others near white.
    fills = detail.locator(".signal-band rect").evaluate_all("(rects) => rects.map((r) => r.getAttribute('fill'))")
    assert len(fills) == LENGTH
    start, stop = WINDOWS[1]
    reds = [i for i, fill in enumerate(fills) if fill.startswith("#ff") and int(fill[3:5], 16) < 0x80]
    assert reds and set(reds) <= set(range(start, stop))
    points = detail.locator(".signal-line").get_attribute("points").split()
    assert len(points) == LENGTH  # the thumbnail keeps every point of a signal of 96 steps
    # Hover the middle of the bump: the readout names the time step and its stored value.
    box = detail.locator("svg.signal").bounding_box()
    step = (start + stop) // 2
    page.mouse.move(box["x"] + (step + 0.5) / LENGTH * box["width"], box["y"] + box["height"] / 2)
    readout = detail.locator(".relevance-readout").inner_text()
    value = float(_stored(logdir, SIGNAL, EPOCHS - 1, sample)[step])
    assert readout == f"time step {step}: relevance {value:+.3f}"
    # Over the epochs: one row per epoch, the current one marked; a click goes to that epoch.
    rows = tab.frame.locator("#timeline .epoch-row")
    assert rows.count() == EPOCHS
    assert tab.frame.locator("#timeline .epoch-row.current").get_attribute("data-epoch") == str(EPOCHS - 1)
    _screenshot(tab, screenshots / "plugin-signal.png")
    # The keyboard reads the time steps too.
    detail.locator(".relevance-stage").focus()
    page.keyboard.press("End")
    last = float(_stored(logdir, SIGNAL, EPOCHS - 1, sample)[LENGTH - 1])
    assert detail.locator(".relevance-readout").inner_text() == f"time step {LENGTH - 1}: relevance {last:+.3f}"
    rows.first.click()
    tab.frame.wait_for_function("() => lrp.state.epoch === 0")
    _detail(tab)
    assert tab.frame.locator("#timeline .epoch-row.current").get_attribute("data-epoch") == "0"
    # "Input" shows the line alone.
    tab.frame.locator("label.segment:has(#view-input)").click()
    tab.frame.wait_for_function("() => lrp.state.view === 'input'")
    _gallery_ready(tab)
    assert tab.frame.locator("#gallery .signal-band").count() == 0
    assert tab.frame.locator("#gallery .signal-line").count() == 16
    context.close()
    assert not problems, problems


def test_a_tabular_run_shows_bars_per_named_feature(tensorboard, browser, screenshots):
    base, logdir = tensorboard
    sample = 3  # class 0: its relevance sits on CLASS_FEATURES[0]
    context, page, problems, tab = _open_run(browser, base, TABULAR, sample=sample)
    assert tab.js("lrp.info.feature_names") == list(FEATURES)
    assert tab.frame.locator("#view-input").is_disabled()  # bars only: a feature vector has no picture
    first = tab.frame.locator("#gallery .sequence-card").first
    assert first.locator("rect.bar").count() == len(FEATURES)
    _detail(tab)
    detail = tab.frame.locator("#timeline .sequence-focus")
    names = detail.locator(".feature-name").all_inner_texts()
    assert names == list(FEATURES)
    assert detail.locator(".feature-bar").count() == len(FEATURES)
    stored = _stored(logdir, TABULAR, EPOCHS - 1, sample)
    values = [float(v) for v in detail.locator(".feature-value").all_inner_texts()]
    assert values == pytest.approx(stored.tolist(), abs=6e-4)
    # The class's feature has the longest bar, to the right (for the class); noise points left.
    widths = tab.js(
        "[...document.querySelectorAll('#timeline .sequence-focus .feature-bar')].map((b) => b.offsetWidth)"
    )
    assert int(np.argmax(widths)) == FEATURES.index(CLASS_FEATURES[0])
    noise = detail.locator(".feature-row[data-feature='noise'] .feature-bar")
    assert "negative" in noise.get_attribute("class")
    detail.locator(f".feature-row[data-feature='{CLASS_FEATURES[0]}'] .feature-name").hover()
    index = FEATURES.index(CLASS_FEATURES[0])
    assert detail.locator(".relevance-readout").inner_text() == (
        f"feature {CLASS_FEATURES[0]}: relevance {float(stored[index]):+.3f}"
    )
    assert tab.frame.locator("#timeline .epoch-row rect.bar").count() == EPOCHS * len(FEATURES)
    _screenshot(tab, screenshots / "plugin-tabular.png")
    context.close()
    assert not problems, problems


def test_a_token_run_shows_the_text_highlighted_by_relevance(tensorboard, browser, screenshots):
    base, logdir = tensorboard
    ids, _, sentences = token_sentences(16)
    sample, words = int(ids[4]), sentences[4]  # class 0 with the spurious token
    assert SPURIOUS in words
    context, page, problems, tab = _open_run(browser, base, TOKENS)
    # The gallery: each card holds its sample's text, every token highlighted.
    card = tab.frame.locator(f"#gallery .sequence-card[data-sample='{sample}']")
    assert card.locator(".token").all_inner_texts() == words
    assert card.locator(".token.highlighted").count() == len(words)
    tab.frame.locator(f"#gallery .card[data-sample='{sample}']").click()
    _detail(tab)
    detail = tab.frame.locator("#timeline .sequence-focus")
    assert detail.locator(".token.highlighted").count() == len(words)
    position = words.index(SPURIOUS)
    spurious = detail.locator(f".token[data-index='{position}']")
    assert spurious.inner_text() == SPURIOUS
    # The token with the most relevance has the colour map's end colour (bwr: red), as in the heatmaps.
    assert spurious.evaluate("(t) => getComputedStyle(t).backgroundColor") == "rgb(255, 0, 0)"
    spurious.hover()
    value = float(RunStore(logdir / TOKENS).token_relevance(EPOCHS - 1, [sample])[sample][position])
    assert detail.locator(".relevance-readout").inner_text() == (
        f'token "{SPURIOUS}" (position {position}): relevance {value:+.3f}'
    )
    assert tab.frame.locator("#timeline .epoch-row").count() == EPOCHS
    assert tab.frame.locator("#timeline .epoch-row .token.highlighted").count() == EPOCHS * len(words)
    _screenshot(tab, screenshots / "plugin-tokens.png")
    # The keyboard reads the tokens one by one.
    detail.locator(".relevance-stage").focus()
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")
    assert detail.locator(".token.keyed").get_attribute("data-index") == "1"
    second = float(RunStore(logdir / TOKENS).token_relevance(EPOCHS - 1, [sample])[sample][1])
    assert (
        detail.locator(".relevance-readout").inner_text() == f'token "{words[1]}" (position 1): relevance {second:+.3f}'
    )
    # "Input" shows the text without colours.
    tab.frame.locator("label.segment:has(#view-input)").click()
    tab.frame.wait_for_function("() => lrp.state.view === 'input'")
    _gallery_ready(tab)
    assert tab.frame.locator("#gallery .token.highlighted").count() == 0
    assert tab.frame.locator(f"#gallery .sequence-card[data-sample='{sample}'] .token").count() == len(words)
    context.close()
    assert not problems, problems


def test_a_long_signal_is_drawn_from_its_peaks(tensorboard, browser):
    base, logdir = tensorboard
    context, page, problems, tab = _open_run(browser, base, LONG, sample=8)
    size = tab.js("lrp.state.size")
    card = tab.frame.locator("#gallery .sequence-card").first
    assert card.locator(".signal-band rect").count() == 2 * size  # one per pixel, not one per step
    assert len(card.locator(".signal-line").get_attribute("points").split()) == 128  # the thumbnail's width
    _detail(tab)
    detail = tab.frame.locator("#timeline .sequence-focus")
    assert detail.locator(".signal-band rect").count() == 720
    detail.locator(".relevance-stage").focus()
    page.keyboard.press("Home")
    # 1440 values of 4000 steps, each the largest of its steps: the first covers steps 0-1 (4000 / 1440 = 2.8).
    ids, maps = RunStore(logdir / LONG).heatmaps(1, [8])
    first = maps[0, 0, : (4000 // 1440)]
    peak = float(first[np.argmax(np.abs(first))])
    assert detail.locator(".relevance-readout").inner_text() == f"time steps 0–1 (largest value): relevance {peak:+.3f}"
    context.close()
    assert not problems, problems


def _prototypes(tab: Tab, logdir, run: str) -> tuple[list[dict], dict]:
    """The tab's cluster prototypes (current category and clustering, last epoch) and the stored clusters table."""
    tab.frame.wait_for_function(
        "() => { const cells = [...document.querySelectorAll('#prototypes .prototype-values')];"
        " return cells.length > 0 && cells.every((c) => c.dataset.ready === 'true'); }",
        timeout=20000,
    )
    state = tab.js("({cat: lrp.state.cat, clu: lrp.state.clu, epoch: lrp.state.epoch})")
    table = RunStore(logdir / run).read_analysis_table(state["epoch"], "clusters")
    rows = [r for r in table.to_pylist() if r["category"] == state["cat"] and r["clustering"] == state["clu"]]
    assert rows and tab.frame.locator("#prototypes img").count() == 0  # values, not pictures of one row
    return rows, table.schema.metadata


def test_cluster_prototypes_read_as_tokens_bars_and_lines(tensorboard, browser, screenshots):
    base, logdir = tensorboard
    # Text: each cluster's most relevant tokens with their share of the members' relevance, largest first.
    context, page, problems, tab = _open_run(browser, base, TOKENS)
    rows, metadata = _prototypes(tab, logdir, TOKENS)
    vocabulary = [VOCABULARY[t - 100] for t in json.loads(metadata[META_TOKEN_VOCABULARY])] + ["other tokens"]
    epoch = tab.js("lrp.state.epoch")
    spurious = 0
    for row in rows:
        cell = tab.frame.locator(
            f"#prototypes .prototype-values[data-cluster='{row['cluster']}'][data-epoch='{epoch}']"
        )
        shares = np.asarray(row["prototype"], np.float32)
        order = [i for i in np.argsort(-np.abs(shares), kind="stable") if shares[i] != 0][:5]
        assert cell.locator("li").evaluate_all("(items) => items.map((i) => i.dataset.token)") == [
            vocabulary[i] for i in order
        ]
        top = float(shares[order[0]])
        assert cell.locator("li .share").first.inner_text() == f"{'−' if top < 0 else ''}{abs(top) * 100:.0f}%"
        spurious += SPURIOUS in [vocabulary[i] for i in order]
    assert spurious >= 1  # the clusters of the class with the spurious token list it with its share
    tab.frame.locator("#prototypes").screenshot(path=str(screenshots / "plugin-token-prototypes.png"))
    context.close()
    # A table: one bar per named feature; a signal: the relevance over the analysis grid's time bins.
    context, page, more, tab = _open_run(browser, base, TABULAR)
    rows, _ = _prototypes(tab, logdir, TABULAR)
    cell = tab.frame.locator(f"#prototypes .prototype-values[data-cluster='{rows[0]['cluster']}']").last
    assert cell.locator("rect.bar").evaluate_all("(bars) => bars.map((b) => b.dataset.feature)") == list(FEATURES)
    context.close()
    problems += more
    context, page, more, tab = _open_run(browser, base, SIGNAL)
    rows, _ = _prototypes(tab, logdir, SIGNAL)
    cell = tab.frame.locator(f"#prototypes .prototype-values[data-cluster='{rows[0]['cluster']}']").last
    assert cell.locator(".signal-band rect").count() == len(rows[0]["prototype"])
    assert cell.locator("polyline.relevance-line").count() == 1
    context.close()
    assert not problems + more, problems + more
