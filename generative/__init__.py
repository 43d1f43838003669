"""Generative models on top of `dynamics` and `solvers`: data, networks, losses, training,
checkpoints and metrics (samplers, likelihood, FFJORD, flow matching and the CLI build on
these).

The application modules (`cli_main`, `run_demo`, `plots`, `metrics`) are imported on first
use (PEP 562), so ``import generative`` loads neither the CLI, the demo, matplotlib nor
scipy.
"""
import importlib
from typing import Any

from .checkpoint import (CheckpointCorruptError, CheckpointError, CheckpointNotFoundError,
                         load_checkpoint, save_checkpoint)
from .data import (DATA_NAMES, DIGITS_LEVELS, TOY_NAMES, Dataset, dequantize,
                   dequantize_transform, load_array, load_data, load_digits, quantize,
                   sample_toy)
from .ema import EMA
from .losses import dsm_loss, dsm_loss_per_sample, make_dsm_loss
from .nets import (MLP, ConvODENet, GaussianFourierFeatures, ODENet, ScoreNet, UNet,
                   make_ffjord_net)
from .train import TrainConfig, TrainResult, train
from . import samplers
from .models import DEFAULT_NFE, KINDS, LoadedModel, load_model, make_spec
from .results import CNFDensity, LogProbResult, SampleResult
from .spec import (ClassifierOptions, FFJORDOptions, FlowMatchingOptions, ModelSpec,
                   ScoreOptions)
from .generate import generate
from .ffjord import CNF, integrate_log_density, make_ffjord_loss
from .flow_matching import (PATHS, cfm_loss, fm_bits_per_dim, fm_log_likelihood, fm_sample,
                            make_fm_loss, make_path, ot_pairing)
from .guidance import class_score_fn, guided_score_fn
from .likelihood import bits_per_dim, log_likelihood
from .samplers import (PREDICTORS, SAMPLERS, ancestral_sampler, ddim_sampler, dpmpp_2m_sampler,
                       dpmpp_2s_sampler, edm_heun_sampler, em_sampler, ode_sampler, pc_sampler,
                       reverse_diffusion_sampler, sample, tweedie_denoise)

__all__ = [
    "cli_main", "ScoreNet", "KINDS", "DEFAULT_NFE", "load_model", "LoadedModel", "make_spec",
    "ModelSpec", "ScoreOptions", "FFJORDOptions", "FlowMatchingOptions", "ClassifierOptions",
    "SampleResult", "LogProbResult", "CNFDensity", "generate", "run_demo", "plots",
    "CNF", "ODENet", "ConvODENet", "make_ffjord_net", "make_ffjord_loss",
    "integrate_log_density", "PATHS", "make_path", "ot_pairing", "cfm_loss", "make_fm_loss",
    "fm_sample", "fm_log_likelihood", "fm_bits_per_dim",
    "class_score_fn", "guided_score_fn",
    "sample", "SAMPLERS", "PREDICTORS", "em_sampler", "reverse_diffusion_sampler",
    "ancestral_sampler", "pc_sampler", "ode_sampler", "tweedie_denoise", "ddim_sampler",
    "dpmpp_2m_sampler", "dpmpp_2s_sampler", "edm_heun_sampler",
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

# name -> (module, attribute or None for the module itself), imported on first access
_LAZY = {"cli_main": (".cli", "main"), "run_demo": (".demo", "run_demo"),
         "plots": (".plots", None), "metrics": (".metrics", None)}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = importlib.import_module(module, __name__)
    value = value if attr is None else getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))
