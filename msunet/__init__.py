"""msunet: MultiResUNet lesion segmentation for mammograms in JAX/Flax."""

from msunet.models import MultiResBlock, MultiResUNet, ResPath, UNet

__all__ = ["MultiResBlock", "MultiResUNet", "ResPath", "UNet"]
__version__ = "0.1.0"
