"""Lightning callbacks of lrp-lightning, installed as ``lrp_lightning.callbacks``.

* :class:`LRPCallback` explains a fixed probe set of validation samples while a model trains.
* :class:`LRPPredictionWriter` explains a whole data set with ``Trainer.predict`` (e.g. a checkpoint).
* :class:`ClArCCallback` revises the model to unlearn an artifact that ``LRPCallback``'s analysis found.

Both write the Parquet run store of :mod:`lrp_lightning.store`.
"""

from .clarc_callback import ClArCCallback
from .lrp_callback import LRPCallback
from .prediction_writer import LRPPredictionWriter

__all__ = ["ClArCCallback", "LRPCallback", "LRPPredictionWriter"]
