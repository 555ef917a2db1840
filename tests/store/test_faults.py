"""Fault injection: files of a store replaced or damaged behind lrp-lightning's back (issue 14).

Every fault is planted into a real store; each test asserts a clear error that names the file, that
nothing hangs (reads run under a timeout), and that every other epoch is still readable.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from store_testing import RUN_META, assert_consistent, new_store, write_ranks

from lrp_lightning.store import (
    CorruptFileError,
    RunStore,
    StoreError,
    find_runs,
    make_probe_table,
)

TIMEOUT = 10.0
pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")


def call_with_timeout(function, fifo: Path | None = None, timeout: float = TIMEOUT):
    """Run ``function()`` in a thread; fail (instead of hanging the suite) if it does not return in time.

    A read blocked on opening a named pipe is released by opening the pipe for writing.
    """
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as exc:  # handed to the test thread, which asserts on it
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        if fifo is not None:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # unblocks a reader, so the thread ends
            except OSError:
                pass  # no reader has the pipe open right now
            thread.join(TIMEOUT)
        pytest.fail(f"{function} hung on a named pipe for {timeout} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def replace_with_fifo(path: Path) -> Path:
    path.unlink()
    os.mkfifo(path)
    return path


def store_with_three_epochs(tmp_path: Path) -> RunStore:
    store = new_store(tmp_path)
    store.write_probe(make_probe_table(sample_id=[0, 1, 2, 3], dataset_index=[0, 1, 2, 3], label=[0, 1, 2, 0]))
    write_ranks(store, 0, 10, [[0, 1], [2, 3]], 10.0)
    write_ranks(store, 1, 20, [[0, 1], [2, 3]], 20.0)
    write_ranks(store, 2, 30, [[0, 1, 2, 3]], 30.0)
    for epoch in (0, 1, 2):
        store.write_analysis_table(epoch, "points", pa.table({"sample_id": [0, 1, 2, 3]}), "cfg")
    return store


# ------------------------------------------------------------------------------------------ not a file


def test_a_named_pipe_in_place_of_a_part_is_an_error_not_a_hang(tmp_path):
    store = store_with_three_epochs(tmp_path)
    fifo = replace_with_fifo(store.epoch_dir(1) / "part-00001.parquet")
    reader = RunStore(store.run_dir)
    for read in (lambda: reader.attributions(1), lambda: reader.heatmaps(1, [0]), lambda: list(reader.iter_batches(1))):
        with pytest.raises(CorruptFileError, match=r"part-00001\.parquet is a named pipe.*not a regular file"):
            call_with_timeout(read, fifo)
    with pytest.raises(CorruptFileError, match="named pipe"):
        call_with_timeout(lambda: reader.sample_heatmaps(0), fifo)  # reads every epoch
    assert assert_consistent(reader, skip={1}) == {0: 10, 2: 30}


@pytest.mark.parametrize("name", ["probe.parquet", "analysis table"])
def test_a_named_pipe_in_place_of_the_probe_set_or_an_analysis_table(tmp_path, name):
    store = store_with_three_epochs(tmp_path)
    if name == "probe.parquet":
        fifo = replace_with_fifo(store.probe_path)
        read = store.probe_table
    else:
        fifo = replace_with_fifo(store.analysis_dir(1) / "points.parquet")
        read = lambda: store.read_analysis_table(1, "points")  # noqa: E731
        assert call_with_timeout(lambda: store.analysis_tables(0), fifo) == {"points": "cfg"}
    with pytest.raises(CorruptFileError, match=rf"{fifo.name} is a named pipe"):
        call_with_timeout(read, fifo)
    assert call_with_timeout(lambda: store.read_analysis_table(2, "points"), fifo).num_rows == 4
    assert assert_consistent(store) == {0: 10, 1: 20, 2: 30}


def test_a_named_pipe_in_place_of_the_manifest_or_a_commit_marker(tmp_path):
    store = store_with_three_epochs(tmp_path)
    marker = replace_with_fifo(store.epoch_dir(2) / "_commit.json")
    reader = RunStore(store.run_dir)
    with pytest.raises(StoreError, match="epoch 2"):
        call_with_timeout(lambda: reader.attributions(2), marker)
    assert assert_consistent(reader, skip={2}) == {0: 10, 1: 20}

    manifest = replace_with_fifo(store.store_dir / "manifest.json")
    assert call_with_timeout(lambda: find_runs(tmp_path), manifest) == [store.run_dir]
    with pytest.raises(CorruptFileError, match=r"manifest\.json is a named pipe"):
        call_with_timeout(lambda: RunStore(store.run_dir), manifest)
    with pytest.raises(CorruptFileError, match=r"manifest\.json is a named pipe"):
        call_with_timeout(lambda: store.epochs(), manifest)  # an open store re-reads a replaced manifest
    with pytest.raises(CorruptFileError, match=r"manifest\.json is a named pipe"):  # never written over
        call_with_timeout(lambda: RunStore.create(store.run_dir, **RUN_META), manifest)
    assert manifest.is_fifo()


def test_a_directory_in_place_of_a_file_is_named(tmp_path):
    store = store_with_three_epochs(tmp_path)
    part = store.epoch_dir(0) / "part-00000.parquet"
    part.unlink()
    part.mkdir()
    with pytest.raises(CorruptFileError, match=r"part-00000\.parquet is a directory.*not a regular file"):
        call_with_timeout(lambda: store.attributions(0))
    assert assert_consistent(store, skip={0}) == {1: 20, 2: 30}


def test_lrp_analyze_with_a_named_pipe_in_a_run_finishes_with_an_error(tmp_path, capsys):
    from lrp_lightning import cli

    store = store_with_three_epochs(tmp_path)
    fifo = replace_with_fifo(store.epoch_dir(1) / "part-00000.parquet")
    config = tmp_path / "fast.toml"
    config.write_text('[embeddings]\nmethods = ["pca"]\n')  # no UMAP: its first call compiles for a minute
    arguments = [str(tmp_path), "--force", "--no-scalars", "--quiet", "--config", str(config)]
    code = call_with_timeout(lambda: cli.main(arguments), fifo, timeout=120)
    assert code == 1
    assert "part-00000.parquet is a named pipe" in capsys.readouterr().err


def test_scalars_skip_a_named_pipe_among_the_event_files(tmp_path):
    from lrp_lightning.analysis.scalars import PATTERN, write_scalars

    fifo = tmp_path / PATTERN.replace("*", "1.host.1.1")
    os.mkfifo(fifo)
    written = call_with_timeout(lambda: write_scalars(tmp_path, {3: {"lrp/x": 1.5}}), fifo)
    assert written is not None and written.is_file() and fifo.is_fifo()


def test_plugin_routes_answer_every_request_with_named_pipes_planted(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tb_plugin"))
    from plugin_testing import make_app, route
    from synthetic_runs import CLUSTERING, build_run

    fifos, samples = {}, {}
    for name, plant in {
        "part": lambda s: s.epoch_dir(1) / "part-00000.parquet",
        "probe": lambda s: s.probe_path,
        "points": lambda s: s.analysis_dir(0) / "points.parquet",
        "clusters": lambda s: s.analysis_dir(0) / "clusters.parquet",
        "spectrum": lambda s: s.analysis_dir(0) / "spectrum.parquet",
        "marker": lambda s: s.epoch_dir(0) / "_commit.json",
        "manifest": lambda s: s.store_dir / "manifest.json",
    }.items():
        store = build_run(tmp_path / name, epochs=2, samples=12, analysed=[0])
        samples[name] = int(store.heatmaps(0)[0][0])
        fifos[name] = replace_with_fifo(plant(store))
    client, _ = make_app(tmp_path)
    answers = {}

    def get(key, url):
        response = client.get(url)
        answers[key] = (response.status_code, response.get_data().decode("utf-8", "replace"))

    call_with_timeout(lambda: get(("runs", "runs"), route("runs")))
    for run, sample in samples.items():
        for name, url in {
            "run": route("run", run=run),
            "samples": route("samples", run=run, epoch=0),
            "input": route("input", run=run, sample=sample),
            "heatmap 0": route("heatmap", run=run, epoch=0, sample=sample),
            "heatmap 1": route("heatmap", run=run, epoch=1, sample=sample),
            "timeline": route("timeline", run=run, sample=sample),
            "analysis": route("analysis", run=run, epoch=0),
            "embedding": route("embedding", run=run, epoch=0, category="all", embedding="spectral", x=0, y=1),
            "clusters": route("clusters", run=run, epoch=0, category="all", clustering=CLUSTERING),
            "prototype": route("prototype", run=run, epoch=0, category="all", clustering=CLUSTERING, cluster=0),
            "lineage": route("lineage", run=run, category="all", clustering=CLUSTERING),
        }.items():
            call_with_timeout(lambda key=(run, name), url=url: get(key, url), fifos[run])

    status = {key: code for key, (code, _) in answers.items()}
    assert {key: code for key, code in status.items() if code >= 500} == {}
    assert status["runs", "runs"] == 200
    assert "named pipe" in answers["manifest", "run"][1] and status["manifest", "run"] == 404
    assert status["part", "heatmap 0"] == 200 and status["part", "heatmap 1"] == 404
    assert "part-00000.parquet is a named pipe" in answers["part", "heatmap 1"][1]
    assert status["probe", "heatmap 0"] == 200 and status["probe", "input"] == 404
    assert status["marker", "heatmap 1"] == 200 and status["marker", "heatmap 0"] == 404
    for table in ("points", "clusters", "spectrum"):
        assert status[table, "heatmap 0"] == status[table, "samples"] == 200
        assert status[table, "clusters"] == 404
