"""TensorBoard scalars of lrp-analyze: one value per (tag, step) however often epochs are re-analysed."""

from __future__ import annotations

import math
import warnings
from collections import Counter

import pytest
from spray_helpers import make_run

from lrp_lightning.analysis.scalars import write_scalars
from lrp_lightning.cli import main

FAST_TOML = """
[clusterings]
k_range = [2, 3]
[embeddings]
methods = ["pca"]
"""


def read_points(paths) -> list[tuple[str, int, float, float]]:
    """``(tag, step, value, wall_time)`` of every scalar point in the event files, in file order."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    points = []
    for path in paths:
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                number = value.simple_value if value.HasField("simple_value") else value.tensor.float_val[0]
                points.append((value.tag, event.step, number, event.wall_time))
    return points


def lrp_files(directory):
    return sorted(directory.glob("events.out.tfevents.*.lrp-analyze"))


def foreign_file(directory, tag="train/loss", steps=(0, 1, 2)):
    """An event file of another writer (like Lightning's logger): no .lrp-analyze suffix."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(directory))
    for step in steps:
        value = summary_pb2.Summary.Value(tag=tag, simple_value=float(step))
        writer.add_event(event_pb2.Event(wall_time=1.0, step=step, summary=summary_pb2.Summary(value=[value])))
    writer.close()
    return directory / writer._file_name.rsplit("/", 1)[-1]


def test_rewritten_steps_keep_only_the_newest_value(tmp_path):
    first = write_scalars(tmp_path, {0: {"a": 1.0, "b": 10.0}, 1: {"a": 2.0}})
    second = write_scalars(tmp_path, {1: {"a": 5.0}, 2: {"a": 6.0}})
    assert second is not None and second != first and not first.exists()
    assert lrp_files(tmp_path) == [second]
    points = read_points(lrp_files(tmp_path))
    assert sorted((tag, step, value) for tag, step, value, _ in points) == [
        ("a", 0, 1.0),
        ("a", 1, 5.0),
        ("a", 2, 6.0),
        ("b", 0, 10.0),
    ]
    # any number of rewrites: still one value per (tag, step), one file
    for value in (7.0, 8.0, math.inf):
        write_scalars(tmp_path, {1: {"a": value}})
    points = read_points(lrp_files(tmp_path))
    assert len(lrp_files(tmp_path)) == 1
    assert sorted((tag, step, value) for tag, step, value, _ in points) == [
        ("a", 0, 1.0),
        ("a", 1, math.inf),
        ("a", 2, 6.0),
        ("b", 0, 10.0),
    ]
    # kept points keep their wall time; the rewritten one is newer
    times = {(tag, step): wall_time for tag, step, _, wall_time in points}
    assert times[("a", 0)] == times[("b", 0)] < times[("a", 1)]


def test_nothing_to_write_changes_nothing(tmp_path):
    written = write_scalars(tmp_path, {0: {"a": 1.0}})
    before = written.read_bytes()
    assert write_scalars(tmp_path, {}) is None and write_scalars(tmp_path, {3: {}}) is None
    assert lrp_files(tmp_path) == [written] and written.read_bytes() == before


def test_foreign_event_files_are_untouched(tmp_path):
    foreign = foreign_file(tmp_path, tag="a")  # same tag and steps as ours
    before = foreign.read_bytes()
    write_scalars(tmp_path, {0: {"a": 1.0}, 1: {"a": 2.0}})
    write_scalars(tmp_path, {1: {"a": 5.0}, 2: {"a": 6.0}})
    assert foreign.exists() and foreign.read_bytes() == before
    assert len(lrp_files(tmp_path)) == 1
    assert sorted((t, s, v) for t, s, v, _ in read_points(lrp_files(tmp_path))) == [
        ("a", 0, 1.0),
        ("a", 1, 5.0),
        ("a", 2, 6.0),
    ]


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_unreadable_earlier_file_is_kept_and_new_points_written(tmp_path, damage):
    old = write_scalars(tmp_path, {0: {"a": 1.0}, 1: {"a": 2.0}})
    data = bytearray(old.read_bytes())
    if damage == "truncated":
        data = data[:-3]
    else:
        data[-6] ^= 0xFF  # inside the last record's payload: its checksum no longer matches
    old.write_bytes(bytes(data))
    new = write_scalars(tmp_path, {1: {"a": 5.0}, 2: {"a": 6.0}})
    assert old.exists() and old.read_bytes() == bytes(data)
    assert set(lrp_files(tmp_path)) == {old, new}
    assert sorted((t, s, v) for t, s, v, _ in read_points([new])) == [("a", 1, 5.0), ("a", 2, 6.0)]


def test_failed_write_keeps_earlier_files(tmp_path, monkeypatch):
    from tensorboard.summary.writer import event_file_writer

    old = write_scalars(tmp_path, {0: {"a": 1.0}})
    before = old.read_bytes()

    def broken(self, event):
        raise OSError("disk full")

    monkeypatch.setattr(event_file_writer.EventFileWriter, "add_event", broken)
    with pytest.raises(OSError, match="disk full"):
        write_scalars(tmp_path, {1: {"a": 2.0}})
    assert lrp_files(tmp_path) == [old] and old.read_bytes() == before


def test_superseded_file_that_cannot_be_removed_warns(tmp_path, monkeypatch):
    from pathlib import Path

    old = write_scalars(tmp_path, {0: {"a": 1.0}})
    unlink = Path.unlink

    def refuse(self, *args, **kwargs):
        if self == old:
            raise PermissionError("read-only")
        return unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", refuse)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        new = write_scalars(tmp_path, {0: {"a": 2.0}})
    assert any("could not remove" in str(w.message) for w in caught)
    assert old.exists() and sorted((t, s, v) for t, s, v, _ in read_points([new])) == [("a", 0, 2.0)]


def test_cli_force_reanalysis_leaves_one_value_per_tag_and_step(tmp_path, capsys):
    config = tmp_path / "fast.toml"
    config.write_text(FAST_TOML)
    store = make_run(tmp_path / "run", epochs=(0, 1), artifact=15)
    foreign = foreign_file(store.run_dir, steps=(100, 200))
    foreign_bytes = foreign.read_bytes()
    args = [str(store.run_dir), "--config", str(config), "--quiet"]

    assert main(args) == 0
    first = read_points(lrp_files(store.run_dir))
    assert {step for _, step, _, _ in first} == {100, 200}
    assert main([*args, "--force", "--epochs", "1"]) == 0
    second = read_points(lrp_files(store.run_dir))
    assert main([*args, "--force"]) == 0
    third = read_points(lrp_files(store.run_dir))
    capsys.readouterr()

    for points in (second, third):
        counts = Counter((tag, step) for tag, step, _, _ in points)
        assert set(counts) == {(tag, step) for tag, step, _, _ in first}
        assert set(counts.values()) == {1}
    assert len(lrp_files(store.run_dir)) == 1
    # --epochs 1 recomputed step 200 only: step 100 kept as it was
    times = [{(t, s): w for t, s, _, w in points} for points in (first, second, third)]
    for key in times[0]:
        if key[1] == 100:
            assert times[1][key] == times[0][key] < times[2][key]
        else:
            assert times[0][key] < times[1][key] < times[2][key]
    assert foreign.read_bytes() == foreign_bytes
