"""descplug: distilled CNN patch descriptors for COLMAP, hloc and OpenCV pipelines."""
from .api import DescDis
from .models import load_model

__version__ = "0.1.0"
__all__ = ["DescDis", "load_model", "__version__"]
