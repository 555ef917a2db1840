"""Indicator scalars into a run's TensorBoard event files, without TensorFlow or torch.

Writes with TensorBoard's own event-file writer and protocol buffers, into a separate file
(``events.out.tfevents.<time>.<host>.<pid>.<n>.lrp-analyze``) in the run directory, next to the
logger's files, so TensorBoard shows the scalars under the same run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["write_scalars"]

SUFFIX = ".lrp-analyze"


def write_scalars(run_dir: str | os.PathLike[str], scalars: Mapping[int, Mapping[str, float]]) -> Path | None:
    """Append scalars to a new event file in ``run_dir``.

    Parameters
    ----------
    run_dir : path
        The run directory (the logger's ``log_dir``).
    scalars : mapping of int to mapping of str to float
        Global step to ``{tag: value}``; non-finite values are written as they are.

    Returns
    -------
    pathlib.Path or None
        The event file written, or None when there was nothing to write.
    """
    if not any(scalars.values()):
        return None
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(run_dir), filename_suffix=SUFFIX)
    try:
        for step in sorted(scalars):
            values = [
                summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
                for tag, value in sorted(scalars[step].items())
            ]
            event = event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values))
            writer.add_event(event)
        writer.flush()
        return Path(writer._file_name)
    finally:
        writer.close()
