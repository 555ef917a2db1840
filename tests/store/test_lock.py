"""One writer per store: the writer lock between processes, stale locks, and the run id of a store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.dataset as ds
import pytest
from store_testing import RUN_META, new_store, write_ranks

from lrp_lightning.store import (
    RUN_ID_KEY,
    WRITER_LOCK_FILE,
    IncompatibleRunError,
    NotRegularFileError,
    RunStore,
    StoreLockedError,
    WriterLock,
    find_runs,
    lock_holder,
    new_run_id,
)

HOLDER = textwrap.dedent(
    """
    import sys
    from lrp_lightning.store import WriterLock

    lock = WriterLock(sys.argv[1], run_id="run-of-the-holder").acquire()
    print("locked", flush=True)
    sys.stdin.readline()  # hold the lock until the test says so (or kills this process)
    lock.release()
    print("released", flush=True)
    """
)


@pytest.fixture
def holder(tmp_path):
    """A second process that holds the writer lock of ``tmp_path / "run"`` until its stdin gets a line."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "run")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "locked"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def test_a_second_writer_process_gets_a_clear_error_while_the_first_lives(tmp_path, holder):
    store_dir = tmp_path / "run" / "plugins" / "lrp"
    with pytest.raises(StoreLockedError) as info:
        WriterLock(tmp_path / "run").acquire()
    message = str(info.value)
    for fragment in (f"pid {holder.pid}", "run-of-the-holder", str(store_dir), "another dirpath"):
        assert fragment in message
    # the first writer is unaffected: it still holds the lock, and releases it cleanly
    assert lock_holder(tmp_path / "run")["pid"] == holder.pid
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "released"
    assert holder.wait(timeout=30) == 0
    assert not (store_dir / WRITER_LOCK_FILE).exists()  # a finished writer leaves no lock file
    with WriterLock(tmp_path / "run") as lock:  # and the next writer gets the lock
        assert lock.held and lock_holder(tmp_path / "run")["pid"] == os.getpid()


def test_the_stale_lock_of_a_killed_writer_is_taken_over(tmp_path, holder):
    holder.send_signal(signal.SIGKILL)
    assert holder.wait(timeout=30) == -signal.SIGKILL
    lock_file = tmp_path / "run" / "plugins" / "lrp" / WRITER_LOCK_FILE
    assert json.loads(lock_file.read_text())["pid"] == holder.pid  # left behind by the dead process
    lock = WriterLock(tmp_path / "run", run_id="the-new-writer").acquire()
    try:
        assert lock_holder(tmp_path / "run") == {**lock_holder(tmp_path / "run"), "pid": os.getpid()}
        assert lock_holder(tmp_path / "run")["run_id"] == "the-new-writer"
    finally:
        lock.release()
    assert not lock_file.exists()


def test_two_locks_in_one_process_exclude_each_other_and_release_cleans_up(tmp_path):
    first = WriterLock(tmp_path / "a" / "run", run_id="first")
    with first:
        assert (tmp_path / "a" / "run" / "plugins" / "lrp" / WRITER_LOCK_FILE).is_file()
        with pytest.raises(StoreLockedError, match="run id first"):
            WriterLock(tmp_path / "a" / "run" / "plugins" / "lrp").acquire()
        assert first.acquire() is first  # taking a held lock again is a no-op
    assert not first.held
    assert not (tmp_path / "a").exists()  # the directories it made for a store never written are gone
    with WriterLock(tmp_path / "a" / "run"):  # released: another object gets it
        pass


def test_readers_ignore_the_lock_file(tmp_path):
    store = new_store(tmp_path)
    write_ranks(store, 0, 10, [[0, 1, 2]], 10.0)
    with WriterLock(store.run_dir):
        assert find_runs(tmp_path) == [tmp_path / "run"]
        assert RunStore(tmp_path / "run").attributions(0).num_rows == 3
        assert ds.dataset(store.store_dir, format="parquet", exclude_invalid_files=True).count_rows() >= 3
    assert (store.store_dir / "manifest.json").is_file()  # release never removes a written store


# ------------------------------------------------------------------------------------ run id


def test_a_store_belongs_to_the_training_that_created_it(tmp_path):
    mine, other = new_run_id(), new_run_id()
    assert mine != other and len(mine) == 32
    store = RunStore.create(tmp_path / "run", **RUN_META, run_id=mine)
    write_ranks(store, 0, 10, [[0, 1]], 10.0)
    assert store.manifest[RUN_ID_KEY] == mine
    # a resume (same run id) opens it; settings equal but another training: refused, naming the options
    assert RunStore.create(tmp_path / "run", **RUN_META, run_id=mine).epochs()[0].rows == 2
    with pytest.raises(IncompatibleRunError) as info:
        RunStore.create(tmp_path / "run", **RUN_META, run_id=other)
    for fragment in (mine, other, "ckpt_path", "another dirpath", "new logger version", "move"):
        assert fragment in str(info.value)
    assert RunStore(tmp_path / "run").manifest[RUN_ID_KEY] == mine  # nothing changed
    # a writer not tied to a training (no run id) keeps the old rule: equal settings
    assert RunStore.create(tmp_path / "run", **RUN_META).manifest[RUN_ID_KEY] == mine


def test_a_store_without_run_id_is_adopted_only_on_request(tmp_path):
    store = new_store(tmp_path)  # as format 1.0 wrote it: no run id
    write_ranks(store, 0, 10, [[0, 1]], 10.0)
    assert RUN_ID_KEY not in store.manifest
    with pytest.raises(IncompatibleRunError, match="without a run id"):
        RunStore.create(tmp_path / "run", **RUN_META, run_id="abc")
    adopted = RunStore.create(tmp_path / "run", **RUN_META, run_id="abc", adopt_unowned=True)
    assert adopted.manifest[RUN_ID_KEY] == "abc" and [e.rows for e in adopted.epochs()] == [2]
    with pytest.raises(IncompatibleRunError):
        RunStore.create(tmp_path / "run", **RUN_META, run_id="xyz", adopt_unowned=True)  # owned now


def test_a_lock_file_that_is_no_regular_file_is_an_error_not_a_hang(tmp_path):
    assert lock_holder(tmp_path) is None
    (tmp_path / "plugins" / "lrp").mkdir(parents=True)
    os.mkfifo(tmp_path / "plugins" / "lrp" / WRITER_LOCK_FILE)  # never opened: it would block
    assert lock_holder(Path(tmp_path)) is None
    with pytest.raises(NotRegularFileError, match="not a regular file"):
        WriterLock(tmp_path).acquire()
