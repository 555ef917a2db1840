"""One ordered worker thread per callback: the local work of an explained epoch, off the training thread.

:class:`EpochWorker` runs the tasks it is given one after another in a single thread (epochs write and
commit in order), and keeps what the training thread must do with their results: calls that need the
trainer (logging) are queued by the task with :meth:`EpochWorker.post` and run on the training thread by
:meth:`EpochWorker.flush`; a task's error is raised on the training thread by the next :meth:`flush`,
:meth:`wait` or :meth:`drain`, once, with a note naming the epoch. Collectives never run here.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections import deque
from collections.abc import Callable
from typing import Any


class EpochWorker:
    """A single worker thread for an owner's epochs, with a queue of calls back to the training thread.

    Parameters
    ----------
    owner : str
        Name of the callback, shown in the thread's name and in error notes.
    """

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: deque[tuple[int, concurrent.futures.Future]] = deque()
        self._posted: deque[Callable[[], Any]] = deque()
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        """Whether a submitted task has not been waited for yet."""
        return bool(self._pending)

    def in_worker(self) -> bool:
        """Whether the calling thread is the worker."""
        return threading.current_thread().name.startswith(self._thread_prefix)

    @property
    def _thread_prefix(self) -> str:
        return f"{self.owner}-epochs-{id(self):x}"

    def submit(self, epoch: int, task: Callable[[], Any]) -> None:
        """Run ``task()`` after every task submitted before it (never blocks)."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=self._thread_prefix
            )
        self._pending.append((epoch, self._executor.submit(task)))

    def post(self, call: Callable[[], Any]) -> None:
        """From a task: run ``call()`` on the training thread at its next :meth:`flush`."""
        with self._lock:
            self._posted.append(call)

    def flush(self) -> None:
        """Training thread: run the posted calls, and raise the error of a finished task (in order)."""
        while self._pending and self._pending[0][1].done():
            self._finish(*self._pending.popleft())
        self._run_posted()

    def wait(self) -> None:
        """Training thread: wait for every submitted task, run the posted calls, raise the first error."""
        while self._pending:
            epoch, future = self._pending.popleft()
            concurrent.futures.wait([future])
            self._finish(epoch, future)
        self._run_posted()

    def drain(self) -> None:
        """:meth:`wait`, then end the thread (a later :meth:`submit` starts a new one)."""
        try:
            self.wait()
        finally:
            self.close()

    def close(self) -> None:
        """End the thread after the tasks already submitted; errors not yet raised are dropped."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._pending.clear()
        with self._lock:
            self._posted.clear()

    def _finish(self, epoch: int, future: concurrent.futures.Future) -> None:
        error = future.exception()
        if error is None:
            return
        self._run_posted()  # what the failed epoch's predecessors posted still gets logged
        note = f"{self.owner}: raised while writing epoch {epoch} in the background (its worker thread)"
        if hasattr(error, "add_note"):
            error.add_note(note)
        else:  # Python 3.10: no add_note; keep the note where 3.11's tracebacks and the tests read it
            error.__notes__ = [*getattr(error, "__notes__", []), note]
        self.close()  # later epochs' tasks ran after the failure; they are dropped with it
        raise error

    def _run_posted(self) -> None:
        while True:
            with self._lock:
                if not self._posted:
                    return
                call = self._posted.popleft()
            call()
