"""Segmentation networks: pure flax.linen modules that import nothing else from msunet."""

from msunet.models.multiresunet import MultiResBlock, MultiResUNet, ResPath, multires_widths
from msunet.models.unet import UNet

__all__ = ["MultiResBlock", "MultiResUNet", "ResPath", "UNet", "multires_widths"]

# The names a config's `model.name` may take.
MODELS = {"multiresunet": MultiResUNet, "unet": UNet}
