"""Tests of the commit protocol (lrp_lightning.store.epochs): DDP parts, replacement, crash safety.

The crash tests follow the protocol in the module docstring of ``lrp_lightning.store.epochs`` point by
point: a crash before each ``os.replace`` of a commit, in-process and as a hard kill of a child process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from store_testing import (
    RUN_META,
    assert_consistent,
    hidden_entries,
    maps_for,
    new_store,
    table_for,
    write_ranks,
)

from lrp_lightning import store as S
from lrp_lightning.store import SAMPLE_ID, EpochNotFoundError, RunStore, StoreError, fileio

# ------------------------------------------------------------------------------------------ ranks


def test_two_ranks_concatenated_and_duplicates_removed(tmp_path):
    store = new_store(tmp_path)
    store.write_part(0, 10, table_for(0, 10, [0, 1, 2, 3, 4], 10.0, margin=np.arange(5.0)), rank=0)
    # the distributed sampler pads rank 1 with samples 0 and 1 again; their rows must not appear twice
    store.write_part(0, 10, table_for(0, 10, [5, 6, 7, 0, 1], 99.0), rank=1)
    info = store.commit_epoch(0, 10, world_size=2)
    assert info.rows == 8
    assert info.files == (
        "attributions/epoch_000000/part-00000.parquet",
        "attributions/epoch_000000/part-00001.parquet",
    )
    table = store.attributions(0)
    assert table.column(SAMPLE_ID).to_pylist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert table.column("score").to_pylist() == [10.0] * 5 + [99.0] * 3  # duplicates: rank 0's rows kept
    assert table.column("margin").to_pylist() == [0.0, 1.0, 2.0, 3.0, 4.0, None, None, None]
    ids, maps = store.heatmaps(0)
    np.testing.assert_array_equal(maps[:5], maps_for([0, 1, 2, 3, 4], 10.0))
    np.testing.assert_array_equal(maps[5:], maps_for([5, 6, 7], 99.0))
    assert store.attributions(0, ["score"]).column_names == ["score"]


def test_rerun_of_an_epoch_replaces_its_rows(tmp_path):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1, 2]], 10.0)
    first = write_ranks(store, 1, 20, [[0, 1], [2, 3]], 20.0)
    # resumed from a checkpoint: epoch 1 runs again, at another step and with fewer ranks
    second = write_ranks(store, 1, 25, [[3, 2, 1, 0]], 25.0)
    assert [e.epoch for e in store.epochs()] == [0, 1]
    assert second.commit != first.commit and second.rows == first.rows == 4
    table = store.attributions(1)
    assert table.column(SAMPLE_ID).to_pylist() == [3, 2, 1, 0]
    assert set(table.column("score").to_pylist()) == {25.0}
    assert assert_consistent(store) == {0: 10, 1: 25}
    assert sorted(p.name for p in store.epoch_dir(1).iterdir()) == ["_commit.json", "part-00000.parquet"]
    assert hidden_entries(store) == []
    # the same step again (a resume from the same checkpoint) replaces as well
    write_ranks(store, 1, 25, [[0, 1, 2, 3]], 25.0)
    assert store.attributions(1).column(SAMPLE_ID).to_pylist() == [0, 1, 2, 3]


def test_commit_needs_every_ranks_part(tmp_path):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1]], 10.0)
    store.write_part(0, 30, table_for(0, 30, [0], 30.0), rank=0)
    with pytest.raises(StoreError, match=r"no part from rank\(s\) \[1\].*write_part"):
        store.commit_epoch(0, 30, world_size=2)
    assert assert_consistent(store) == {0: 10}


def test_stale_parts_of_more_ranks_are_not_committed(tmp_path):
    store = new_store(tmp_path)
    # a crashed attempt with three ranks left parts in the staging directory of step 40
    for rank, ids in enumerate([[0], [1], [2]]):
        store.write_part(0, 40, table_for(0, 40, ids, 1.0), rank=rank)
    write_ranks(store, 0, 40, [[5, 6], [7]], 40.0)  # the resumed run has two ranks
    assert store.attributions(0).column(SAMPLE_ID).to_pylist() == [5, 6, 7]
    assert assert_consistent(store) == {0: 40}


def test_empty_part_of_a_rank_without_samples(tmp_path):
    store = new_store(tmp_path)
    info = write_ranks(store, 0, 5, [[0, 1, 2], []], 5.0)
    assert info.rows == 3
    assert store.attributions(0).column(SAMPLE_ID).to_pylist() == [0, 1, 2]


# ------------------------------------------------------------------------------------------ crash safety


class SimulatedCrash(BaseException):
    pass


def crash_at(monkeypatch, call: int) -> None:
    """Make the ``call``-th os.replace (1-based) crash; call ``n + 1`` crashes the cleanup instead."""
    real_replace = os.replace
    calls = {"n": 0}

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == call:
            raise SimulatedCrash(f"crash before os.replace #{call}: {src} -> {dst}")
        real_replace(src, dst)

    def remove_tree(path):
        calls["n"] += 1
        if calls["n"] >= call:
            raise SimulatedCrash(f"crash while deleting {path}")
        shutil.rmtree(path)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(fileio, "remove_tree", remove_tree)


# os.replace calls of a commit: marker, [old epoch aside], staging into place, manifest; then cleanup
REPLACING_STEPS = ["marker", "move old aside", "move staging in", "manifest", "cleanup"]
FIRST_STEPS = ["marker", "move staging in", "manifest", "cleanup"]


@pytest.mark.parametrize(
    ("replacing", "step"),
    [(True, s) for s in REPLACING_STEPS] + [(False, s) for s in FIRST_STEPS],
)
def test_simulated_crash_at_each_commit_step(tmp_path, monkeypatch, replacing, step):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1, 2]], 10.0)
    if replacing:
        old = write_ranks(store, 1, 20, [[0, 1], [2, 3]], 20.0)
    store.write_part(1, 25, table_for(1, 25, [9], 25.0))  # an attempt that crashed before its commit
    for rank, ids in enumerate([[3, 2], [1, 0, 2]]):
        store.write_part(1, 30, table_for(1, 30, ids, 30.0), rank=rank)

    steps = REPLACING_STEPS if replacing else FIRST_STEPS
    with monkeypatch.context() as patch:
        crash_at(patch, steps.index(step) + 1)
        with pytest.raises(SimulatedCrash):
            store.commit_epoch(1, 30, world_size=2)

    previous = {1: 20} if replacing else {}
    committed = step == "cleanup"
    assert assert_consistent(RunStore(tmp_path / "run")) == {0: 10, **({1: 30} if committed else previous)}

    # the resumed run (rank 0) opens the store for writing: a commit that got as far as moving the new
    # version into place is rolled forward; moved-aside versions are kept only while the manifest needs them
    resumed = RunStore.create(tmp_path / "run", **RUN_META)
    rolled_forward = step in ("manifest", "cleanup")
    assert assert_consistent(resumed) == {0: 10, **({1: 30} if rolled_forward else previous)}
    asides = [n for n in hidden_entries(resumed) if n.startswith(".replaced-")]
    assert asides == ([f".replaced-epoch_000001-{old.commit}"] if replacing and step == "move staging in" else [])

    write_ranks(resumed, 1, 40, [[0, 1, 2, 3]], 40.0)
    assert assert_consistent(RunStore(tmp_path / "run")) == {0: 10, 1: 40}
    assert hidden_entries(resumed) == []  # stale staging (steps 25, 30) and moved-aside versions are gone


CHILD = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from store_testing import RUN_META, table_for
    from lrp_lightning.store import RunStore

    store = RunStore.create({run!r}, **RUN_META)
    crash_at = int(sys.argv[1])
    real_replace, calls = os.replace, [0]

    def replace(src, dst):
        calls[0] += 1
        if calls[0] == crash_at:
            os._exit(17)  # a hard crash: no cleanup, no exception handlers
        real_replace(src, dst)

    os.replace = replace
    for rank, ids in enumerate([[3, 2], [1, 0, 2]]):
        store.write_part(1, 30, table_for(1, 30, ids, 30.0), rank=rank)
    store.commit_epoch(1, 30, world_size=2)
    """
)

# os.replace calls of the whole epoch write: part 0, part 1, marker, move old aside, move staging in, manifest
CHILD_STEPS = ["part 0", "part 1", "marker", "move old aside", "move staging in", "manifest"]


@pytest.mark.parametrize("step", CHILD_STEPS)
def test_process_killed_while_writing_an_epoch(tmp_path, step):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1, 2]], 10.0)
    write_ranks(store, 1, 20, [[0, 1], [2, 3]], 20.0)
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(tests=str(Path(__file__).parent), run=str(tmp_path / "run")))
    result = subprocess.run(
        [sys.executable, str(script), str(CHILD_STEPS.index(step) + 1)], capture_output=True, text=True
    )
    assert result.returncode == 17, result.stderr

    assert assert_consistent(RunStore(tmp_path / "run")) == {0: 10, 1: 20}
    resumed = RunStore.create(tmp_path / "run", **RUN_META)
    assert assert_consistent(resumed) == {0: 10, 1: 30 if step == "manifest" else 20}
    write_ranks(resumed, 1, 40, [[0, 1, 2, 3]], 40.0)
    assert assert_consistent(resumed) == {0: 10, 1: 40}
    assert hidden_entries(resumed) == []


LOOPING_CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from store_testing import RUN_META, write_ranks
    from lrp_lightning.store import RunStore

    store = RunStore.create({run!r}, **RUN_META)
    step = 100
    while True:
        step += 1
        write_ranks(store, 1, step, [[0, 1, 2], [3, 4, 0]], float(step))
        print(step, flush=True)
    """
)


def test_sigkill_during_repeated_commits_with_concurrent_readers(tmp_path):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1, 2]], 10.0)
    script = tmp_path / "loop.py"
    script.write_text(LOOPING_CHILD.format(tests=str(Path(__file__).parent), run=str(tmp_path / "run")))
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        first = child.stdout.readline()
        assert first.strip() == "101"
        reader = RunStore(tmp_path / "run")
        versions = set()
        deadline = time.monotonic() + 3.0
        while len(versions) < 5 and time.monotonic() < deadline:
            table = reader.attributions(1)  # a commit may be replacing the epoch right now
            steps = set(table.column("global_step").to_pylist())
            assert len(steps) == 1, f"a read mixed versions {steps}"
            assert set(table.column("score").to_pylist()) == {float(*steps)}
            assert table.column(SAMPLE_ID).to_pylist() == [0, 1, 2, 3, 4]
            versions |= steps
        assert len(versions) >= 2, "the reader never saw the writer's progress"
        time.sleep(0.013)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    seen = assert_consistent(RunStore(tmp_path / "run"))
    assert seen[0] == 10 and seen[1] > 100
    resumed = RunStore.create(tmp_path / "run", **RUN_META)
    assert assert_consistent(resumed)[1] >= seen[1]  # at most rolled forward to the newer version
    write_ranks(resumed, 1, 5000, [[0, 1, 2, 3, 4]], 5000.0)
    assert assert_consistent(resumed) == {0: 10, 1: 5000}
    assert hidden_entries(resumed) == []


def test_readers_ignore_leftovers_of_crashed_writers(tmp_path):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1]], 10.0)
    root = store.store_dir / S.ATTRIBUTIONS_DIR
    (root / ".staging-epoch_000001-step_20").mkdir()
    (root / ".staging-epoch_000001-step_20" / "part-00000.parquet").write_bytes(b"half a file")
    (root / "epoch_000002").mkdir()  # renamed into place, but without marker: never committed
    (store.store_dir / ".manifest.json.tmp-1-abc").write_text("{")
    assert [e.epoch for e in store.epochs()] == [0]
    assert assert_consistent(store) == {0: 10}
    with pytest.raises(EpochNotFoundError):
        store.attributions(1)
    resumed = RunStore.create(tmp_path / "run", **RUN_META)
    assert not list(resumed.store_dir.glob(".manifest.json.tmp-*"))
    write_ranks(resumed, 1, 20, [[0, 1]], 20.0)
    assert assert_consistent(resumed) == {0: 10, 1: 20}
    assert hidden_entries(resumed) == []
