"""Score / velocity networks: ``net(x, t)`` with ``t`` a ``(B,)`` tensor."""
from .embedding import GaussianFourierFeatures, LabelEmbedding
from .mlp import MLP
from .unet import UNet

__all__ = ["GaussianFourierFeatures", "LabelEmbedding", "MLP", "UNet"]
