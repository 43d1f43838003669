"""Sample-quality metrics: Fréchet distance on project-trained digits features (and the one
digits evaluation, `DigitsEvaluator` / `digits_fid`), MMD and sliced Wasserstein distance for
low-dimensional data."""
from .baselines import gaussian_fit_sample
from .digits import CONFIDENT, DigitsEvaluator, digits_fid
from .features import (ClassifierConfig, DigitsClassifier, digits_features, digits_predict,
                       load_digits_classifier, train_digits_classifier)
from .frechet import (FeatureMoments, FrechetResult, bootstrap_frechet, feature_stats,
                      frechet_distance, frechet_distance_features)
from .mmd import bandwidth_points, median_bandwidth, mmd_rbf, sliced_wasserstein

__all__ = [
    "gaussian_fit_sample", "CONFIDENT", "DigitsEvaluator", "digits_fid",
    "ClassifierConfig", "DigitsClassifier", "digits_features", "digits_predict",
    "load_digits_classifier",
    "train_digits_classifier", "FeatureMoments", "FrechetResult", "bootstrap_frechet",
    "feature_stats", "frechet_distance", "frechet_distance_features", "bandwidth_points",
    "median_bandwidth", "mmd_rbf",
    "sliced_wasserstein",
]
