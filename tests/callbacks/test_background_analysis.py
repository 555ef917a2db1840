"""The callback's background analysis never holds training up: a slow analysis queues or skips epochs."""

from __future__ import annotations

import logging
import threading
import types

from callback_testing import ImageData, TinyNet, loader, trainer
from lightning.pytorch.callbacks import Callback

from lrp_lightning import LRPCallback
from lrp_lightning.callbacks._background import BackgroundAnalysis
from lrp_lightning.store import RunStore

BOX = {"low": 0.0, "high": 1.0}
RELEASE_TIMEOUT = 120.0  # seconds a gated analysis waits at most (a bug must fail the test, not hang it)


class Logger:
    def __init__(self) -> None:
        self.logged: list[tuple[int, dict]] = []

    def log_metrics(self, metrics: dict, step: int) -> None:
        self.logged.append((step, metrics))


def returns_within(function, seconds: float = 30.0) -> bool:
    """Whether ``function()`` returns while the analysis thread is blocked (a liveness check, no timing)."""
    thread = threading.Thread(target=function)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive()


def test_a_slow_analysis_queues_the_next_epoch_and_skips_older_waiting_ones(tmp_path, caplog):
    gate = threading.Event()
    ran: list[int] = []

    def slow(store, epoch):
        ran.append(epoch)
        if epoch == 0:
            assert gate.wait(RELEASE_TIMEOUT), "never released"
        return types.SimpleNamespace(scalars={"lrp/eigengap": float(epoch)}, messages=[])

    runner = BackgroundAnalysis(slow)
    logger = Logger()
    store = RunStore.create(tmp_path, heatmap_shape=(4, 4)).store_dir
    runner.submit(store, 0, 10)
    # epochs 1, 2 and 3 are ready while epoch 0's analysis still runs: submitting never waits for it
    for epoch in (1, 2, 3):
        assert returns_within(lambda epoch=epoch: runner.submit(store, epoch, 10 * (epoch + 1)))
    assert returns_within(lambda: runner.collect([logger]))  # nothing finished yet: nothing logged
    assert logger.logged == [] and runner.started == [0]
    assert runner.skipped == [1, 2]  # each replaced by a newer epoch while it waited; epoch 3 waits
    with caplog.at_level(logging.WARNING):
        gate.set()
        runner.close([logger])
    assert ran == [0, 3] and runner.started == [0, 3]
    assert logger.logged == [(10, {"lrp/eigengap": 0.0}), (40, {"lrp/eigengap": 3.0})]
    notes = [r.getMessage() for r in caplog.records if "skipped the analysis" in r.getMessage()]
    assert len(notes) == 1 and "epoch(s) 1, 2" in notes[0] and "lrp-analyze" in notes[0]


def test_a_fast_analysis_runs_every_epoch_in_order(tmp_path):
    runner = BackgroundAnalysis(lambda store, epoch: types.SimpleNamespace(scalars={"x": epoch}, messages=[]))
    logger = Logger()
    store = RunStore.create(tmp_path, heatmap_shape=(4, 4)).store_dir
    for epoch in range(4):
        runner.submit(store, epoch, epoch)
        runner.collect([logger], wait=True)  # each finishes before the next epoch: none waits, none skipped
    runner.close([logger])
    assert runner.started == [0, 1, 2, 3] and runner.skipped == []
    assert [step for step, _ in logger.logged] == [0, 1, 2, 3]


class StepCounter(Callback):
    """Counts training batches and tells a gated analysis when training has ended."""

    def __init__(self) -> None:
        self.batches = 0
        self.ended = threading.Event()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1

    def on_fit_end(self, trainer, pl_module) -> None:
        self.ended.set()  # after LRPCallback's on_fit_end, which waits for the last epoch's commit


def test_training_proceeds_while_an_analysis_slower_than_an_epoch_runs(tmp_path, monkeypatch):
    counter = StepCounter()
    seen: dict[int, tuple[int, int]] = {}  # epoch -> (batches trained when its analysis began, when it ended)

    def analyze_epoch(store, epoch, spray=None, **options):
        begin = counter.batches
        if epoch == 0:  # slower than the rest of training: it ends only when training has ended
            assert counter.ended.wait(RELEASE_TIMEOUT), "training did not proceed while the analysis ran"
        seen[epoch] = (begin, counter.batches)
        return types.SimpleNamespace(scalars={"lrp/eigengap": 1.0}, messages=[])

    class FakeSpRAy:
        @classmethod
        def from_config(cls, config):
            return cls()

    import lrp_lightning.analysis

    monkeypatch.setattr(lrp_lightning.analysis, "analyze_epoch", analyze_epoch)
    monkeypatch.setattr(lrp_lightning.analysis, "SpRAy", FakeSpRAy)
    lrp = LRPCallback(num_samples=12, composite_kwargs=BOX, batch_size=5, analyze=True)
    run = trainer(tmp_path, callbacks=[lrp, counter], max_epochs=4)
    run.fit(TinyNet(), loader(ImageData(48, seed=1), shuffle=True), loader(ImageData(30)))
    per_epoch = 3  # 48 samples in batches of 16
    assert counter.batches == 4 * per_epoch
    # epoch 0's analysis began after its epoch (its commit, in the callback's worker, may end while the next
    # epoch trains) and ended after the last: every later step ran meanwhile
    assert per_epoch <= seen[0][0] < 4 * per_epoch and seen[0][1] == 4 * per_epoch
    analysis = lrp._analysis
    assert analysis.started == [0, 3] and analysis.skipped == [1, 2]  # 3 waited, replacing 2, which replaced 1
    assert sorted(seen) == [0, 3]
