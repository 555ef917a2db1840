"""The plugin prepares the first view of the first run in the background at start (prepare_first_view):
afterwards the tab's first requests read no Parquet file, and their answers are the cold answers."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plugin_testing import make_app, route  # noqa: E402
from synthetic_runs import build_run  # noqa: E402

from lrp_lightning.tb_plugin.data import decode_columns  # noqa: E402

FIRST = "a/version_0"
SECOND = "b/version_0"
LAST_EPOCH = 2


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("first-view")
    build_run(root / FIRST, epochs=LAST_EPOCH + 1, samples=40, classes=3, size=6, methods=2)
    build_run(root / SECOND, epochs=2, samples=20, classes=3, size=6, seed=1)
    return root


def first_view_urls(run: str, epoch: int) -> list[str]:
    return [
        route("first_view"),
        route("run", run=run),
        route("samples", run=run, epoch=epoch),
        route("analysis", run=run, epoch=epoch),
        route("findings", run=run),
    ]


def answer(response) -> object:
    """A response's content, comparable between two plugins (binary columns decoded)."""
    assert response.status_code == 200, response.get_data(as_text=True)
    data = response.data
    if response.headers.get("Content-Encoding") == "gzip":
        data = gzip.decompress(data)
    if response.headers["Content-Type"].startswith("application/json"):
        value = json.loads(data)
        if isinstance(value, dict):
            value.pop("scanned_at", None)  # when the plugin scanned the logdir: differs between two plugins
        return value
    columns, meta = decode_columns(data)
    return {name: values.tolist() for name, values in columns.items()}, meta


def counting_parquet_files(monkeypatch) -> list[int]:
    opened = [0]
    original = pq.ParquetFile

    class Counted(original):
        def __init__(self, *args, **kwargs):
            opened[0] += 1
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(pq, "ParquetFile", Counted)
    return opened


def test_the_prepared_first_view_reads_nothing_and_answers_as_cold(logdir, monkeypatch):
    prepared_client, prepared = make_app(logdir, prepare_first_view=True)
    prepared._preparing.join(60)
    assert not prepared._preparing.is_alive()
    cold_client, _ = make_app(logdir)
    opened = counting_parquet_files(monkeypatch)
    warm = [answer(prepared_client.get(url)) for url in first_view_urls(FIRST, LAST_EPOCH)]
    assert opened[0] == 0  # every answer came from the cache that the start filled
    cold = [answer(cold_client.get(url)) for url in first_view_urls(FIRST, LAST_EPOCH)]
    assert opened[0] > 0
    assert warm == cold
    view, run_info, (samples, _), analysis, findings = warm
    assert view["info"] == run_info and view["analysis"] == analysis and view["findings"] == findings
    assert view["epoch"] == LAST_EPOCH
    assert run_info["run"] == FIRST and [e["epoch"] for e in run_info["epochs"]] == [0, 1, LAST_EPOCH]
    assert len(samples["sample_id"]) == 40 and analysis["epoch"] == LAST_EPOCH and findings["run"] == FIRST
    # Only the first run is prepared: the second's answers are read when asked for.
    before = opened[0]
    assert answer(prepared_client.get(route("run", run=SECOND)))["run"] == SECOND
    assert opened[0] > before


def test_prepare_first_view_takes_the_first_readable_run_and_none_without_runs(logdir, tmp_path):
    _, plugin = make_app(logdir)
    assert plugin.data.prepare_first_view() == FIRST == plugin.data.runs()[0]["run"]
    _, empty = make_app(tmp_path)
    assert empty.data.prepare_first_view() is None


def individual_answers(client, run: str, epoch: int | None) -> dict[str, object]:
    """What the tab asked for one route at a time before /first_view: /runs, /run and /analysis."""
    info = answer(client.get(route("run", run=run)))
    return {
        "runs": answer(client.get(route("runs")))["runs"],
        "run": run,
        "info": info,
        "epoch": epoch,
        "analysis": None if epoch is None else answer(client.get(route("analysis", run=run, epoch=epoch))),
        "findings": answer(client.get(route("findings", run=run))),
    }


@pytest.mark.parametrize(
    ("params", "run", "epoch"),
    [
        ({}, FIRST, LAST_EPOCH),  # no run named: the first readable run, its last epoch
        ({"run": SECOND}, SECOND, 1),
        ({"run": SECOND, "epoch": 0}, SECOND, 0),
        ({"run": FIRST, "epoch": 1}, FIRST, 1),
        ({"run": FIRST, "epoch": 7}, FIRST, LAST_EPOCH),  # an epoch the run lacks: its last, as the tab does
        ({"run": "gone/version_3", "epoch": 0}, FIRST, 0),  # a run not listed: the first run
    ],
)
def test_first_view_answers_what_the_individual_routes_answer(logdir, params, run, epoch):
    client, _ = make_app(logdir)
    response = client.get(route("first_view", **params))
    assert json.loads(response.data)["scanned_at"] == json.loads(client.get(route("runs")).data)["scanned_at"]
    view = answer(response)
    assert view == individual_answers(make_app(logdir)[0], run, epoch)
    assert view["run"] == run and view["epoch"] == epoch and view["analysis"]["epoch"] == epoch


def test_first_view_without_runs_and_with_a_bad_epoch(logdir, tmp_path):
    client, _ = make_app(tmp_path)
    view = answer(client.get(route("first_view")))
    assert view == {"runs": [], "run": None, "info": None, "epoch": None, "analysis": None, "findings": None}
    client, _ = make_app(logdir)
    response = client.get(route("first_view", run=FIRST, epoch="last"))
    assert response.status_code == 400 and "'epoch' must be an integer" in response.get_data(as_text=True)
