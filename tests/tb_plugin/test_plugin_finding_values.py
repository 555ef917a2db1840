"""The findings panel of signal, tabular and token runs: each finding drawn from values, in the data's words.

A token run's finding lists its most relevant tokens with their share of the members' relevance (the
planted shortcut token ``[X]`` first, at 50%), a tabular run's draws one bar per named feature, a signal's
a relevance line over the time steps: never a one-row picture strip. ``/finding_values`` serves them;
its values are checked against the stored relevance here, and in the browser against what is drawn.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import test_plugin_browser as image_tests
from plugin_testing import make_app, route
from synthetic_findings import (
    FEATURES,
    SHORTCUT_FEATURE,
    SHORTCUT_STEPS,
    SHORTCUT_TOKEN,
    build_signal_findings_run,
    build_tabular_findings_run,
    build_token_findings_run,
)
from tensorboard_server import serve_tensorboard
from test_plugin_browser import Tab, _open

from lrp_lightning.store import RunStore

TOKENS = "reviews/version_0"
TABULAR = "churn/version_0"
SIGNAL = "ecg/version_0"
EPOCHS = 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """Three runs of 200 samples whose analysis (both epochs) finds the planted shortcut; -> (logdir, planted)."""
    logdir = tmp_path_factory.mktemp("finding-values")
    planted = {}
    for run, build in ((TOKENS, build_token_findings_run), (TABULAR, build_tabular_findings_run),
                       (SIGNAL, build_signal_findings_run)):  # fmt: skip
        _, planted[run] = build(logdir / run, epochs=EPOCHS)
    return logdir, planted


def _shortcut_finding(client, run: str, planted: np.ndarray) -> dict:
    findings = client.get(route("findings", run=run)).json["findings"]
    (finding,) = [f for f in findings if sorted(f["member_ids"]) == planted.tolist()]
    return finding


def _mean_share(logdir, run: str, epoch: int, members: list[int]) -> np.ndarray:
    """The members' mean L1-normalised relevance, from the store (what the route must serve)."""
    _, maps = RunStore(logdir / run).heatmaps(epoch, members)
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    return (flat / np.abs(flat).sum(axis=1, keepdims=True)).mean(axis=0)


@pytest.mark.slow  # analyses three runs (about 8 s)
def test_finding_values_are_the_members_mean_share_in_the_datas_terms(runs):
    logdir, planted = runs
    client, _ = make_app(logdir)
    # Text: per token, the members' mean share of their relevance; [X] carries half of each member's.
    finding = _shortcut_finding(client, TOKENS, planted[TOKENS])
    data = client.get(route("finding_values", run=TOKENS, finding=finding["finding_id"], epoch=1, cmap="bwr")).json
    assert data["modality"] == "tokens" and data["labels"][0] == SHORTCUT_TOKEN and data["labels"][-1] == "other tokens"
    assert data["relevance"][0] == pytest.approx(0.5, abs=1e-4)
    store = RunStore(logdir / TOKENS)
    per_token, texts = store.token_relevance(1), store.tokens()
    expected: dict[str, float] = {}
    for member in finding["member_ids"]:
        relevance = np.asarray(per_token[member], np.float64)
        for text, value in zip(texts[member], relevance / np.abs(relevance).sum()):
            expected[text] = expected.get(text, 0.0) + value / len(finding["member_ids"])
    order = sorted(expected, key=lambda t: -abs(expected[t]))
    assert data["labels"] == [*order[:20], "other tokens"]
    rest = sum(expected[t] for t in order[20:])
    np.testing.assert_allclose(data["relevance"], [*(expected[t] for t in order[:20]), rest], atol=1e-5)
    assert len(data["colors"]) == len(data["relevance"]) == data["length"] == 21  # 20 tokens and the rest
    # A table: per named feature; a signal: per time step.
    for run, expected_labels in ((TABULAR, list(FEATURES)), (SIGNAL, None)):
        finding = _shortcut_finding(client, run, planted[run])
        data = client.get(route("finding_values", run=run, finding=finding["finding_id"], epoch=1)).json
        assert data["labels"] == expected_labels
        np.testing.assert_allclose(data["relevance"], _mean_share(logdir, run, 1, finding["member_ids"]), atol=1e-5)
    assert SHORTCUT_FEATURE in _shortcut_finding(client, TABULAR, planted[TABULAR])["region"]
    assert _shortcut_finding(client, SIGNAL, planted[SIGNAL])["region"] == f"time steps 0–{SHORTCUT_STEPS - 1}"
    # Errors name the problem.
    response = client.get(route("finding_values", run=TOKENS, finding="class_1/none@0", epoch=1))
    assert response.status_code == 404 and "no finding 'class_1/none@0'" in response.get_data(as_text=True)
    response = client.get(route("finding_values", run=TOKENS, epoch=1))
    assert response.status_code == 400 and "finding" in response.get_data(as_text=True)


@pytest.fixture(scope="module")
def tensorboard(runs):
    logdir, planted = runs
    with serve_tensorboard(logdir, logdir.parent / "tensorboard-finding-values.log") as base:
        yield base, logdir, planted


def _findings_drawn(browser, base: str, run: str):
    context, page, problems = _open(browser, f"{base}/#lrp&p.lrp.run={run}")
    tab = Tab(page).attach()
    tab.frame.wait_for_function(
        "() => { const cells = [...document.querySelectorAll('#findings .prototype-values')];"
        " return cells.length > 0 && cells.every((c) => c.dataset.ready === 'true'); }",
        timeout=20000,
    )
    assert tab.frame.locator("#findings img").count() == 0  # values, not pictures of one row
    return context, problems, tab


@pytest.mark.slow
@pytest.mark.parametrize("run", [TOKENS, TABULAR, SIGNAL])
def test_the_findings_panel_draws_a_finding_in_the_datas_terms(tensorboard, browser, screenshots, run):
    base, logdir, planted = tensorboard
    context, problems, tab = _findings_drawn(browser, base, run)
    client, _ = make_app(logdir)
    finding = _shortcut_finding(client, run, planted[run])
    cells = tab.frame.locator(f"#findings .prototype-values[data-finding='{finding['finding_id']}']")
    assert cells.evaluate_all("(cells) => cells.map((c) => c.dataset.epoch)") == ["0", "1"]
    last = cells.last
    values = client.get(route("finding_values", run=run, finding=finding["finding_id"], epoch=1)).json["relevance"]
    if run == TOKENS:
        # Its most relevant tokens, largest share first: the shortcut token at half of the relevance.
        items = last.locator("li")
        assert items.count() == 5
        assert items.first.evaluate("(i) => i.dataset.token") == SHORTCUT_TOKEN
        assert items.first.locator(".share").inner_text() == "50%"
        assert items.first.locator(".token").inner_text() == SHORTCUT_TOKEN
        shares = items.evaluate_all("(items) => items.map((i) => Number(i.dataset.share))")
        assert shares == sorted(shares, key=abs, reverse=True) and shares[0] == pytest.approx(0.5, abs=1e-4)
    elif run == TABULAR:
        # One bar per feature, named; the leaked feature's the largest.
        bars = last.locator("rect.bar")
        assert bars.evaluate_all("(bars) => bars.map((b) => b.dataset.feature)") == list(FEATURES)
        heights = bars.evaluate_all("(bars) => bars.map((b) => Number(b.getAttribute('height')))")
        assert FEATURES[int(np.argmax(heights))] == SHORTCUT_FEATURE == FEATURES[int(np.argmax(np.abs(values)))]
        assert f"{SHORTCUT_FEATURE}: relevance +{values[FEATURES.index(SHORTCUT_FEATURE)]:.3f}" in last.inner_html()
    else:
        # A relevance line over the time steps, high over the first steps (the artefact at the start).
        assert last.locator("polyline.relevance-line").count() == 1
        points = last.locator("polyline").get_attribute("points").split()
        ys = [float(p.split(",")[1]) for p in points]
        assert len(ys) == len(values) and int(np.argmin(ys)) == int(np.argmax(values)) < SHORTCUT_STEPS
    text = tab.frame.locator("#findings").inner_text()
    assert "corner" not in text and "pixel" not in text
    if run == TOKENS:  # the README's picture (LRP_UPDATE_SCREENSHOTS=1 writes docs/images)
        tab.frame.locator("#findings").screenshot(path=str(screenshots / "plugin-token-findings.png"))
    elif os.environ.get("LRP_FINDING_SHOTS"):  # a look at the others, where the variable says
        tab.frame.locator("#findings").screenshot(
            path=str(Path(os.environ["LRP_FINDING_SHOTS"]) / f"{run.split('/')[0]}.png")
        )
    context.close()
    assert not problems, problems


for _mark in image_tests.pytestmark:  # browser; skipped without Playwright or Chromium (the route test is not)
    test_the_findings_panel_draws_a_finding_in_the_datas_terms = _mark(
        test_the_findings_panel_draws_a_finding_in_the_datas_terms
    )
browser = image_tests.browser  # one Chromium per module
screenshots = image_tests.screenshots  # the screenshots' folder (docs/images with LRP_UPDATE_SCREENSHOTS=1)
