"""Fault injection: files of a store replaced or damaged behind lrp-lightning's back (issue 14).

Every fault is planted into a real store; each test asserts a clear error that names the file, that
nothing hangs (reads run under a timeout), and that every other epoch is still readable.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from store_testing import RUN_META, assert_consistent, new_store, write_ranks

from lrp_lightning.store import (
    CorruptFileError,
    RunStore,
    StoreError,
    find_runs,
    make_attribution_table,
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
        store.write_analysis_table(epoch, "notes", pa.table({"sample_id": [0, 1, 2, 3]}), "cfg")
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
        fifo = replace_with_fifo(store.analysis_path(1, "notes"))
        read = lambda: store.read_analysis_table(1, "notes")  # noqa: E731
        assert call_with_timeout(lambda: store.analysis_tables(0), fifo) == {"notes": "cfg"}
    with pytest.raises(CorruptFileError, match=rf"{fifo.name} is a named pipe"):
        call_with_timeout(read, fifo)
    assert call_with_timeout(lambda: store.read_analysis_table(2, "notes"), fifo).num_rows == 4
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
        "points": lambda s: s.analysis_path(0, "points"),
        "clusters": lambda s: s.analysis_path(0, "clusters"),
        "spectrum": lambda s: s.analysis_path(0, "spectrum"),
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


# ------------------------------------------------------------------------------------------ silent corruption


def flip_bit(path: Path, position: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 1 << bit
    path.write_bytes(bytes(data))


def noise_rows(epoch: int) -> pa.Table:
    """64 samples with 16x16 maps of noise (so a part is mostly map bytes), at global step 10 * epoch."""
    ids = np.arange(64)
    maps = np.random.default_rng(epoch).normal(size=(64, 16, 16)).astype(np.float32)
    return make_attribution_table(
        epoch=epoch, global_step=10 * epoch, sample_id=ids, label=ids % 3, prediction=ids % 3,
        target=ids % 3, score=np.ones(64), probability=np.full(64, 0.5), relevance=maps,
    )  # fmt: skip


def big_store(tmp_path: Path) -> RunStore:
    store = RunStore.create(tmp_path / "run", heatmap_shape=(16, 16))
    for epoch in range(3):
        store.write_epoch(epoch, 10 * epoch, noise_rows(epoch))
    return store


def test_a_flipped_bit_in_a_map_is_an_error_on_every_read(tmp_path):
    store = big_store(tmp_path)
    part = store.epoch_dir(1) / "part-00000.parquet"
    flip_bit(part, part.stat().st_size // 2)  # the middle of the file: relevance pages
    reader = RunStore(store.run_dir)
    for read in (
        lambda: reader.attributions(1),
        lambda: reader.heatmaps(1),
        lambda: reader.heatmaps(1, list(range(64))),
        lambda: list(reader.iter_heatmaps(1)),
        lambda: reader.verify(1),
    ):
        with pytest.raises(CorruptFileError, match=r"part-00000\.parquet"):
            read()
    for epoch in (0, 2):
        assert reader.verify(epoch).epoch == epoch
        assert reader.heatmaps(epoch)[1].shape == (64, 16, 16)


def test_random_bit_flips_in_a_part_are_never_read_back_silently(tmp_path):
    store = big_store(tmp_path)
    part = store.epoch_dir(2) / "part-00000.parquet"
    original = part.read_bytes()
    expected = store.attributions(2)
    rng = np.random.default_rng(1)
    silent = []
    for _ in range(40):
        position, bit = int(rng.integers(len(original))), int(rng.integers(8))
        part.write_bytes(original)
        flip_bit(part, position, bit)
        reader = RunStore(store.run_dir)
        try:
            reader.verify(2)
            table = reader.attributions(2)
        except (CorruptFileError, StoreError):
            continue
        if not table.equals(expected):
            silent.append((position, bit))
    assert silent == []


def test_a_part_of_another_epoch_copied_over_is_refused(tmp_path):
    store = big_store(tmp_path)
    source, target = store.epoch_dir(1) / "part-00000.parquet", store.epoch_dir(2) / "part-00000.parquet"
    target.write_bytes(source.read_bytes())
    with pytest.raises(CorruptFileError, match="part-00000.parquet"):
        store.heatmaps(2, [3])

    # a store of format 1.0 records no sizes or digests: the rows themselves must say the epoch
    old = strip_to_format_1_0(store)
    with pytest.raises(CorruptFileError, match=r"rows of epoch \[1\], but the manifest lists it as epoch 2"):
        old.heatmaps(2, [3])
    assert old.heatmaps(1, [3])[1].shape == (1, 16, 16)


def strip_to_format_1_0(store: RunStore) -> RunStore:
    """Rewrite a store as lrp-lightning wrote format 1.0: no part sizes or digests, no page checksums."""
    import pyarrow.parquet as pq

    manifest_path = store.store_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = "1.0"
    for entry in manifest["epochs"]:
        for key in ("sizes", "blake2b"):
            entry.pop(key)
        marker = store.epoch_dir(entry["epoch"]) / "_commit.json"
        marker.write_text(json.dumps({k: v for k, v in json.loads(marker.read_text()).items() if k in entry}))
        for name in entry["files"]:
            path = store.store_dir / name
            pq.write_table(pq.read_table(path), path, compression="zstd", write_page_checksum=False)
    manifest_path.write_text(json.dumps(manifest))
    return RunStore(store.run_dir)


def test_stores_of_format_1_0_stay_readable_and_writable(tmp_path):
    store = big_store(tmp_path)
    before = {epoch: store.heatmaps(epoch) for epoch in range(3)}
    old = strip_to_format_1_0(store)
    assert old.format_version == "1.0" and all(e.sizes is None and e.hashes is None for e in old.epochs())
    for epoch in range(3):
        assert old.verify(epoch).hashes is None
        np.testing.assert_array_equal(old.heatmaps(epoch)[1], before[epoch][1])
        assert sum(len(ids) for ids, _ in old.iter_heatmaps(epoch)) == 64
    resumed = RunStore.create(store.run_dir, heatmap_shape=(16, 16))  # a newer lrp-lightning resumes it
    new = resumed.write_epoch(3, 30, noise_rows(3))
    assert new.sizes is not None and resumed.verify(3).hashes == new.hashes
    assert [e.hashes is None for e in resumed.epochs()] == [True, True, True, False]


def test_manifest_records_each_parts_size_and_digest(tmp_path):
    store = new_store(tmp_path)
    info = write_ranks(store, 0, 10, [[0, 1], [2, 3, 4]], 10.0)
    entry = json.loads((store.store_dir / "manifest.json").read_text())["epochs"][0]
    paths = [store.store_dir / name for name in info.files]
    assert entry["sizes"] == [p.stat().st_size for p in paths] == list(info.sizes)
    assert entry["blake2b"] == [hashlib.blake2b(p.read_bytes(), digest_size=32).hexdigest() for p in paths]
    assert store.epochs()[0] == info


# ------------------------------------------------------------------------------------------ derived data


class Killed(BaseException):
    """Stands in for SIGKILL of lrp-analyze: nothing after it runs, no handler catches it."""


def test_scalars_of_the_epochs_analysed_before_a_kill_are_written(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
    from spray_helpers import fast_spray, make_run
    from test_scalars import lrp_files, read_points

    from lrp_lightning.analysis import analyze_run

    store = make_run(tmp_path / "run", epochs=(0, 1, 2))
    analysed = []

    def kill_after_two(outcome, error):
        analysed.append(outcome.global_step)
        if len(analysed) == 2:
            raise Killed

    with pytest.raises(Killed):
        analyze_run(store, fast_spray(), on_epoch=kill_after_two)
    steps = {step for tag, step, _, _ in read_points(lrp_files(store.run_dir)) if tag.startswith("lrp/")}
    assert steps == set(analysed) == {100, 200}

    rerun = analyze_run(store, fast_spray())  # epochs 0 and 1 are up to date; 2 is analysed and logged
    assert [e.computed for e in rerun.epochs] == [False, False, True]
    points = read_points(lrp_files(store.run_dir))
    assert {step for _, step, _, _ in points} == {100, 200, 300}
    assert len(points) == len({(tag, step) for tag, step, _, _ in points})  # one value per tag and step
