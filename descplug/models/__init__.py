"""Descriptor networks: one file per architecture family, `zoo` for names and checkpoints."""
from .hardnet import HardNet, SOSNet
from .inference import fold_batchnorm
from .student import DesDisNet
from .tfeat import HardTFeat, TFeat
from .zoo import build_from_checkpoint, default_model_name, load_model, model_card, save_checkpoint, shipped_models

__all__ = ["DesDisNet", "HardNet", "SOSNet", "TFeat", "HardTFeat", "fold_batchnorm", "load_model",
           "build_from_checkpoint", "save_checkpoint", "shipped_models", "default_model_name", "model_card"]
