"""The callback's SpRAy analysis: built from the ``analyze`` argument, run off the training loop.

:func:`load_analysis` turns ``LRPCallback(analyze=...)`` into an ``(store, epoch) -> outcome`` function;
:class:`BackgroundAnalysis` runs it for each committed epoch in one worker thread of rank 0, so a slow
analysis never holds training up.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lrp_lightning._validation import argument_error
from lrp_lightning.store import RunStore

# The records keep the logger name they had before this module was split out of lrp_callback.py.
log = logging.getLogger(f"{__package__}.lrp_callback")

OWNER = "LRPCallback"


def load_analysis(config: Any) -> Callable[[RunStore, int], Any] | None:
    """``(store, epoch) -> outcome`` running the SpRAy analysis as configured, or None when disabled.

    ``config`` is True (the default pipeline), a ``SpRAy`` object, or a dict like an ``lrp-analyze
    --config`` file: a table per step, ``random_state``, ``min_category_size`` and the run options
    ``include_all``, ``category_by`` and ``nonfinite``.
    """
    if config is False or config is None:
        return None
    if not (config is True or isinstance(config, Mapping) or hasattr(config, "get_config")):
        raise argument_error(
            OWNER,
            "analyze",
            "False, True (the default analysis), a SpRAy pipeline or a dict of analysis settings like an "
            "`lrp-analyze --config` file",
            config,
        )
    # Imported here, not at the top: the analysis loads scikit-learn and UMAP, which a callback with
    # analyze=False never needs. It ships in the same wheel, so it is always there.
    from lrp_lightning import analysis
    from lrp_lightning.analysis.config import RUN_OPTIONS

    options: dict[str, Any] = {}
    if config is True:
        spray = analysis.SpRAy()
    elif isinstance(config, Mapping):
        options = {key: config[key] for key in RUN_OPTIONS if key in config}
        try:
            spray = analysis.SpRAy.from_config({key: value for key, value in config.items() if key not in options})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{OWNER}: analyze: {exc}") from exc
    else:
        spray = config
    return functools.partial(analysis.analyze_epoch, spray=spray, **options)


class BackgroundAnalysis:
    """Runs the analysis of committed epochs in one worker thread of rank 0, off the training loop.

    :meth:`submit` never waits. One analysis runs at a time and at most one more waits for it; when an
    epoch is ready while another still waits (the analysis is slower than training), the waiting one
    is skipped with a note (``lrp-analyze`` analyses it later) and the newer one waits instead, so the
    analysis keeps up with the latest epochs and its backlog stays bounded.
    """

    def __init__(self, run: Callable[[RunStore, int], Any]) -> None:
        self.run = run
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.RLock()  # a future done before add_done_callback runs _next inside _start
        self._running: tuple[int, int, concurrent.futures.Future] | None = None
        self._waiting: tuple[Path, int, int] | None = None
        self._finished: list[tuple[int, int, concurrent.futures.Future]] = []
        self.started: list[int] = []  # epochs whose analysis began, in order
        self.skipped: list[int] = []  # epochs left out because a newer one was ready before their turn
        self._noted = 0

    def submit(self, store_dir: Path, epoch: int, global_step: int) -> None:
        """Start the epoch's analysis, or queue it behind the running one (never blocks)."""
        with self._lock:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="lrp-analysis")
            if self._running is None:
                self._start(store_dir, epoch, global_step)
                return
            if self._waiting is not None:
                self.skipped.append(self._waiting[1])
            self._waiting = (store_dir, epoch, global_step)

    def _start(self, store_dir: Path, epoch: int, global_step: int) -> None:
        # called with the lock held
        assert self._executor is not None
        self.started.append(epoch)
        future = self._executor.submit(lambda: self.run(RunStore(store_dir), epoch))
        self._running = (epoch, global_step, future)
        future.add_done_callback(self._next)

    def _next(self, future: concurrent.futures.Future) -> None:
        """Runs when an analysis ends (in the worker, or at once if it already ended): start the waiting one."""
        with self._lock:
            if self._running is None or self._running[2] is not future:
                return
            self._finished.append(self._running)
            self._running = None
            if self._waiting is not None and self._executor is not None:
                waiting, self._waiting = self._waiting, None
                self._start(*waiting)

    def _note_skipped(self) -> None:
        with self._lock:
            new = self.skipped[self._noted :]
            self._noted = len(self.skipped)
        if new:
            log.warning(
                "%s: the analysis is slower than training: skipped the analysis of epoch(s) %s (a newer epoch was "
                "ready before their turn); training was not held up. Run `lrp-analyze <run dir>` to analyse them.",
                OWNER,
                ", ".join(str(e) for e in new),
            )

    def collect(self, loggers: Sequence[Any], wait: bool = False) -> None:
        """Log the indicator scalars of finished analyses; warn (never raise) about failed ones.

        With ``wait``, first wait for the running analysis and the one waiting behind it.
        """
        while wait:
            with self._lock:
                running = self._running
            if running is None:
                break
            concurrent.futures.wait([running[2]])
            self._next(running[2])  # its done-callback may not have run yet: start the waiting one now
        self._note_skipped()
        with self._lock:
            finished, self._finished = self._finished, []
        for epoch, step, future in finished:
            try:
                outcome = future.result()
            except Exception as exc:  # the analysis must not stop training
                warnings.warn(
                    f"{OWNER}: the analysis of epoch {epoch} failed ({type(exc).__name__}: {exc}); training "
                    "continues, run `lrp-analyze <run dir>` to analyse it again",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            for message in getattr(outcome, "messages", []):
                log.info("%s: analysis: %s", OWNER, message)
            values = getattr(outcome, "scalars", None) or {}
            metrics = {str(k): float(v) for k, v in values.items() if isinstance(v, (int, float, np.number))}
            if metrics:
                for logger in loggers:
                    logger.log_metrics(metrics, step=step)

    def close(self, loggers: Sequence[Any]) -> None:
        self.collect(loggers, wait=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
