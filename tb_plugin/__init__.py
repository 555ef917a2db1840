"""TensorBoard plugin "lrp", installed as ``lrp_lightning.tb_plugin``.

This module is imported by TensorBoard's plugin loader: it must stay light and never fail.
"""
