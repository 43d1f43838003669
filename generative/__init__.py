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
from . import metrics

__all__ = [
    "CheckpointCorruptError", "CheckpointError", "CheckpointNotFoundError",
    "load_checkpoint", "save_checkpoint",
    "DATA_NAMES", "DIGITS_LEVELS", "TOY_NAMES", "Dataset", "dequantize", "dequantize_transform",
    "load_array",
    "load_data", "load_digits", "quantize", "sample_toy",
    "EMA", "dsm_loss", "dsm_loss_per_sample", "make_dsm_loss",
    "MLP", "GaussianFourierFeatures", "UNet",
    "TrainConfig", "TrainResult", "train", "metrics",
]
