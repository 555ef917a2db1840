"""lrp-lightning: training-time explainability for PyTorch Lightning.

LRP attribution (rules, composites, canonizers, attributors), a Parquet run store,
dataset-wide SpRAy analysis and a TensorBoard plugin. Importing this package needs
neither Lightning nor TensorBoard.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
