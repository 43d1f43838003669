"""Generative models on top of `dynamics` and `solvers`: data, networks, losses, training,
checkpoints and metrics (samplers, likelihood, FFJORD, flow matching and the CLI build on
these)."""
from .checkpoint import (CheckpointCorruptError, CheckpointError, CheckpointNotFoundError,
                         load_checkpoint, save_checkpoint)
from .data import (DATA_NAMES, DIGITS_LEVELS, TOY_NAMES, Dataset, dequantize,
                   dequantize_transform, load_array, load_data, load_digits, quantize,
                   sample_toy)
from .ema import EMA
from .losses import dsm_loss, dsm_loss_per_sample, make_dsm_loss
from .nets import MLP, GaussianFourierFeatures, UNet
from .train import TrainConfig, TrainResult, train
from . import metrics, samplers
from .likelihood import bits_per_dim, log_likelihood
from .samplers import (PREDICTORS, SAMPLERS, ancestral_sampler, em_sampler, ode_sampler,
                       pc_sampler, reverse_diffusion_sampler, sample, tweedie_denoise)

__all__ = [
    "sample", "SAMPLERS", "PREDICTORS", "em_sampler", "reverse_diffusion_sampler",
    "ancestral_sampler", "pc_sampler", "ode_sampler", "tweedie_denoise",
    "log_likelihood", "bits_per_dim", "samplers",
    "CheckpointCorruptError", "CheckpointError", "CheckpointNotFoundError",
    "load_checkpoint", "save_checkpoint",
    "DATA_NAMES", "DIGITS_LEVELS", "TOY_NAMES", "Dataset", "dequantize", "dequantize_transform",
    "load_array",
    "load_data", "load_digits", "quantize", "sample_toy",
    "EMA", "dsm_loss", "dsm_loss_per_sample", "make_dsm_loss",
    "MLP", "GaussianFourierFeatures", "UNet",
    "TrainConfig", "TrainResult", "train", "metrics",
]
