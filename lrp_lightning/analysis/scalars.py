"""Indicator scalars into a run's TensorBoard event files, without TensorFlow or torch.

Writes with TensorBoard's own event-file writer and protocol buffers, into a separate file
(``events.out.tfevents.<time>.<host>.<pid>.<n>.lrp-analyze``) in the run directory, next to the
logger's files, so TensorBoard shows the scalars under the same run.

Each write merges the points of the run's earlier ``*.lrp-analyze`` files with the new ones into one
new file and then deletes the files it supersedes, so that re-analysing epochs never leaves two
values at the same step of a tag.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

from ..store.fileio import fsync_dir, fsync_file, read_regular

__all__ = ["write_scalars"]

SUFFIX = ".lrp-analyze"
PATTERN = "events.out.tfevents.*" + SUFFIX

_HEADER = struct.Struct("<QI")  # record length, masked CRC-32C of the length
_FOOTER = struct.Struct("<I")  # masked CRC-32C of the data


class _UnreadableEventFile(Exception):
    """An event file that cannot be read completely, or holds more than scalar summaries."""


def _records(data: bytes):
    """The records of a TFRecord file, checking every length and checksum (never a partial read)."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    offset = 0
    while offset < len(data):
        if offset + _HEADER.size > len(data):
            raise _UnreadableEventFile(f"truncated record header at byte {offset}")
        length, length_crc = _HEADER.unpack_from(data, offset)
        if masked_crc32c(data[offset : offset + 8]) != length_crc:
            raise _UnreadableEventFile(f"corrupt record length at byte {offset}")
        start = offset + _HEADER.size
        end = start + length
        if end + _FOOTER.size > len(data):
            raise _UnreadableEventFile(f"truncated record at byte {offset}")
        record = data[start:end]
        if masked_crc32c(record) != _FOOTER.unpack_from(data, end)[0]:
            raise _UnreadableEventFile(f"corrupt record at byte {offset}")
        yield record
        offset = end + _FOOTER.size


def _read_points(path: Path) -> dict[tuple[str, int], tuple[float, object]]:
    """``(tag, step) -> (wall_time, Summary.Value)`` of one event file written by :func:`write_scalars`.

    Raises
    ------
    _UnreadableEventFile
        If the file cannot be read completely or holds anything but the file version and summaries;
        such a file is left alone.
    """
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto import event_pb2

    try:
        data = read_regular(path)  # never blocks on a named pipe
    except OSError as exc:
        raise _UnreadableEventFile(str(exc)) from exc
    points: dict[tuple[str, int], tuple[float, object]] = {}
    for record in _records(data):
        event = event_pb2.Event()
        try:
            event.ParseFromString(record)
        except DecodeError as exc:
            raise _UnreadableEventFile(f"undecodable event: {exc}") from exc
        kind = event.WhichOneof("what")
        if kind == "file_version":
            continue
        if kind != "summary":
            raise _UnreadableEventFile(f"unexpected {kind or 'empty'} event")
        for value in event.summary.value:
            key = (value.tag, int(event.step))
            if key not in points or event.wall_time >= points[key][0]:
                points[key] = (event.wall_time, value)
    return points


def _age(path: Path) -> tuple[int, str]:
    try:
        return path.stat().st_mtime_ns, path.name
    except OSError:
        return 0, path.name


def write_scalars(run_dir: str | os.PathLike[str], scalars: Mapping[int, Mapping[str, float]]) -> Path | None:
    """Write scalars into ``run_dir``, replacing earlier values at the same step of the same tag.

    The new points are merged with those of the run's earlier ``*.lrp-analyze`` event files and
    written to one new event file; a new value replaces the old one at the same ``(tag, step)``,
    and the points of the steps and tags not given are carried over. Only when the new file is
    complete, closed and synced are the earlier files it supersedes deleted, so after any number of
    writes the ``*.lrp-analyze`` files hold exactly one value per ``(tag, step)``, the newest.

    Nothing is lost on the way: an earlier file that cannot be read completely (truncated, corrupt,
    or holding events other than the file version and summaries) is left as it is, and the new points are written
    anyway; if writing the new file fails, it is removed and the earlier files are untouched. A
    superseded file that cannot be deleted is left with a :class:`RuntimeWarning`. Event files of
    other writers (the logger's, without the ``.lrp-analyze`` suffix) are never read nor touched.

    Parameters
    ----------
    run_dir : path
        The run directory (the logger's ``log_dir``).
    scalars : mapping of int to mapping of str to float
        Global step to ``{tag: value}``; non-finite values are written as they are.

    Returns
    -------
    pathlib.Path or None
        The event file written, or None when there was nothing to write (then nothing is changed).
    """
    if not any(scalars.values()):
        return None
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    run_dir = Path(run_dir)
    # Oldest first, so that among equal wall times the later file wins.
    earlier = sorted(run_dir.glob(PATTERN), key=_age) if run_dir.is_dir() else []
    points: dict[tuple[str, int], tuple[float, object]] = {}
    superseded: list[Path] = []
    for path in earlier:
        try:
            found = _read_points(path)
        except _UnreadableEventFile:
            continue  # kept as it is: its points may be duplicated, but are never lost
        for key, (wall_time, value) in found.items():
            if key not in points or wall_time >= points[key][0]:
                points[key] = (wall_time, value)
        superseded.append(path)

    now = time.time()
    for step, values in scalars.items():
        for tag, number in values.items():
            points[(tag, int(step))] = (now, summary_pb2.Summary.Value(tag=tag, simple_value=float(number)))

    events: dict[tuple[int, float], list] = {}
    for (_tag, step), (wall_time, value) in points.items():
        events.setdefault((step, wall_time), []).append(value)

    writer = EventFileWriter(str(run_dir), filename_suffix=SUFFIX)
    written = Path(writer._file_name)
    try:
        try:
            for step, wall_time in sorted(events):
                values = sorted(events[(step, wall_time)], key=lambda v: v.tag)
                event = event_pb2.Event(wall_time=wall_time, step=step, summary=summary_pb2.Summary(value=values))
                writer.add_event(event)
            writer.flush()
        finally:
            writer.close()
    except BaseException:
        with contextlib.suppress(OSError):
            written.unlink()
        raise
    with contextlib.suppress(OSError):  # best effort: make the merged file durable before deleting
        fsync_file(written)
    fsync_dir(run_dir)

    for path in superseded:
        if path == written:
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            pass  # removed meanwhile (by a concurrent writer that merged it too)
        except OSError as exc:
            warnings.warn(
                f"could not remove superseded TensorBoard event file {path}: {exc}", RuntimeWarning, stacklevel=2
            )
    return written
