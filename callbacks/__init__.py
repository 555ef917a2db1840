"""Lightning callbacks of lrp-lightning, installed as ``lrp_lightning.callbacks``."""
