"""Every network of `generative`: ``net(x, t)`` with ``t`` a ``(B,)`` tensor — the time nets
(`MLP`, `UNet`), the preconditioned `ScoreNet` around them, FFJORD's `ODENet` / `ConvODENet`."""
from .embedding import GaussianFourierFeatures, LabelEmbedding
from .mlp import MLP
from .ode_net import ConvODENet, ODENet, make_ffjord_net
from .score_net import NOISE_CONDITIONS, ScoreNet
from .unet import UNet

__all__ = ["GaussianFourierFeatures", "LabelEmbedding", "MLP", "UNet", "ScoreNet",
           "NOISE_CONDITIONS", "ODENet", "ConvODENet", "make_ffjord_net"]
