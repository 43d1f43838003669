"""Fréchet distance (closed form), bootstrap CI, MMD, sliced Wasserstein, digits features."""
import math
import time

import numpy as np
import pytest
import torch

from generative.data import load_digits
from generative.metrics import (ClassifierConfig, DigitsClassifier, bootstrap_frechet,
                                digits_features, digits_predict, feature_stats,
                                frechet_distance, frechet_distance_features,
                                gaussian_fit_sample, load_digits_classifier, mmd_rbf,
                                sliced_wasserstein)
from generative.metrics import features as features_mod


def _random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _psd_sqrt(m):
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _closed_form(mu1, s1, mu2, s2):
    """tr(S1 + S2 - 2 (S1^½ S2 S1^½)^½) via symmetric eigendecompositions."""
    r1 = _psd_sqrt(s1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * _psd_sqrt(r1 @ s2 @ r1)))


def test_frechet_diagonal_gaussians_exact():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    got = frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-10)
    assert expected == pytest.approx(10.0 + 4.0 + 1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frechet_general_gaussians_match_closed_form(seed):
    rng = np.random.default_rng(seed)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_closed_form(mu1, s1, mu2, s2),
                                                               rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)


def test_frechet_from_samples_approaches_closed_form():
    rng = np.random.default_rng(0)
    d = 4
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    f1 = rng.multivariate_normal(mu1, s1, size=200_000)
    f2 = rng.multivariate_normal(mu2, s2, size=200_000)
    assert frechet_distance_features(f1, f2) == pytest.approx(_closed_form(mu1, s1, mu2, s2),
                                                              rel=0.03)


def test_frechet_singular_covariance_is_finite():
    rng = np.random.default_rng(0)
    f1 = np.repeat(rng.normal(size=(50, 1)), 5, axis=1)   # rank 1 in 5-D
    f2 = rng.normal(size=(50, 5))
    value = frechet_distance_features(f1, f2)
    assert math.isfinite(value) and value > 0


def test_feature_stats_validation():
    with pytest.raises(ValueError, match=r"\(N, F\)"):
        feature_stats(np.zeros(5))
    with pytest.raises(ValueError, match="expected means"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_bootstrap_ci_is_deterministic_and_narrows_with_samples():
    rng = np.random.default_rng(0)

    def widths(n):
        a = rng.normal(size=(n, 3))
        b = rng.normal(size=(n, 3)) + 0.5
        r = bootstrap_frechet(a, b, n_boot=100, seed=1)
        assert r == bootstrap_frechet(a, b, n_boot=100, seed=1)
        assert r.ci_low < r.ci_high and r.ci_low > 0
        assert r.ci_low <= r.value * 1.5 and r.ci_high >= r.value * 0.5
        return r.ci_high - r.ci_low
    assert widths(4000) < 0.6 * widths(400)


def _coverage(d, n, shift, same_cov, trials, n_boot=100, **kw):
    """Fraction of trials whose interval covers (a) the known distance from the generating
    Gaussian to the fixed reference set and (b) the point estimate itself."""
    rng = np.random.default_rng(d)
    cov_g = _random_spd(rng, d)
    cov_r = cov_g if same_cov else _random_spd(rng, d)
    ref = rng.multivariate_normal(np.full(d, shift), cov_r, size=359)
    target = frechet_distance(np.zeros(d), cov_g, *feature_stats(ref))   # known exactly
    hits = covers_value = 0
    for k in range(trials):
        x = rng.multivariate_normal(np.zeros(d), cov_g, size=n)
        r = bootstrap_frechet(x, ref, n_boot=n_boot, seed=k, **kw)
        hits += r.ci_low <= target <= r.ci_high
        covers_value += r.ci_low <= r.value <= r.ci_high
    return hits / trials, covers_value / trials


def test_bootstrap_ci_covers_known_distance_near_the_floor():
    """Near-identical distributions (the digits "real data floor" regime: 16-D features,
    1000 samples vs 359 references): the plug-in FD's upward bias dominates its spread. The
    old interval (both sets resampled, percentile) lay above the point estimate and the true
    distance; the basic bootstrap over the generated rows covers both."""
    cover, cover_value = _coverage(16, 1000, 0.3, True, trials=25)
    old_cover, old_value = _coverage(16, 1000, 0.3, True, trials=25, method="percentile",
                                     resample_ref=True)
    print(f"coverage of the known FD: basic {cover:.2f}, old percentile {old_cover:.2f}; "
          f"of the point estimate: basic {cover_value:.2f}, old {old_value:.2f}")
    assert cover >= 0.85 and cover_value == 1.0
    assert old_cover <= 0.5 and old_value <= 0.8


def test_bootstrap_ci_coverage_far_from_the_floor():
    """Clearly different Gaussians (spread dominates the bias): coverage near nominal 95%."""
    cover, cover_value = _coverage(4, 500, 0.3, False, trials=40)
    print(f"coverage of the known FD: {cover:.2f}; of the point estimate {cover_value:.2f}")
    assert 0.8 <= cover and cover_value == 1.0


def test_bootstrap_ci_methods_and_validation():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 3)), rng.normal(size=(200, 3)) + 0.2
    basic = bootstrap_frechet(a, b, n_boot=50)
    pct = bootstrap_frechet(a, b, n_boot=50, method="percentile")
    assert basic.method == "basic" and pct.method == "percentile"
    assert basic.value == pct.value and basic.bias == pytest.approx(pct.bias)
    # basic = 2 value - (percentile interval), reflected (clipped at 0)
    assert basic.ci_high == pytest.approx(2 * basic.value - pct.ci_low)
    assert basic.ci_low == pytest.approx(max(0.0, 2 * basic.value - pct.ci_high))
    assert set(basic.as_dict()) >= {"value", "ci_low", "ci_high", "bias", "method"}
    with pytest.raises(ValueError, match="method"):
        bootstrap_frechet(a, b, method="bca")
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_frechet(a, b, n_boot=1)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_frechet(a, b, confidence=1.0)


def test_mmd_separates_distributions():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 2, generator=g)
    y = torch.randn(500, 2, generator=g)
    z = torch.randn(500, 2, generator=g) + torch.tensor([1.0, 0.0])
    same, diff = mmd_rbf(x, y), mmd_rbf(x, z)
    assert abs(same) < 0.01 and diff > 0.1 and diff > 20 * abs(same)
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        mmd_rbf(x, torch.randn(5, 3))


def test_sliced_wasserstein_of_a_shift_is_exact():
    """SW_2 between a cloud and its shift by c is |c| / sqrt(2) in 2-D (E[(θ·c)²] = |c|²/2)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 2, generator=g)
    c = torch.tensor([3.0, -4.0])
    sw = sliced_wasserstein(x, x + c, n_projections=4000, generator=g)
    assert sw == pytest.approx(5.0 / math.sqrt(2), rel=0.02)
    assert sliced_wasserstein(x, x.flip(0)) == pytest.approx(0.0, abs=1e-12)
    # unequal sample sizes use quantiles
    y = torch.randn(700, 2, generator=g)
    assert sliced_wasserstein(x, y) < 0.3 < sliced_wasserstein(x, y + c)


# --------------------------------------------------------------------------- digits classifier

@pytest.fixture(scope="module")
def classifier_in_tmp_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("SDEFLOW_CACHE", str(cache))
    start = time.perf_counter()
    model = load_digits_classifier()
    seconds = time.perf_counter() - start
    yield model, cache, seconds, mp
    mp.undo()


def test_classifier_accuracy_and_feature_dim(classifier_in_tmp_cache):
    model, _, seconds, _ = classifier_in_tmp_cache
    print(f"digits classifier: test accuracy {model.test_accuracy:.4f}, trained in {seconds:.1f}s")
    d = load_digits()
    acc = (model(d.test).argmax(1) == d.test_labels).double().mean().item()
    assert acc == pytest.approx(model.test_accuracy)
    assert acc >= 0.9
    feats = digits_features(d.test, model)
    assert feats.shape == (len(d.test), ClassifierConfig().feature_dim)
    assert feats.shape[1] <= 64


def test_classifier_is_cached_and_reloaded(classifier_in_tmp_cache, monkeypatch):
    model, cache, _, _ = classifier_in_tmp_cache
    files = list(cache.glob("digits_classifier-*.pt"))
    assert len(files) == 1 and not list(cache.glob(".*.tmp"))

    def fail(*a, **k):
        raise AssertionError("retrained although a cached classifier exists")
    monkeypatch.setattr(features_mod, "train_digits_classifier", fail)
    again = load_digits_classifier()
    for p, q in zip(model.parameters(), again.parameters()):
        assert torch.equal(p, q)
    assert again.test_accuracy == model.test_accuracy
    # another config hashes to another file
    assert features_mod._cache_path(ClassifierConfig(seed=1)) != files[0]


def test_fid_digits_separates_real_from_gaussian_fit(classifier_in_tmp_cache):
    model = classifier_in_tmp_cache[0]
    d = load_digits()
    f_test, f_train = digits_features(d.test, model), digits_features(d.train, model)
    floor = frechet_distance_features(f_test, f_train)
    fake = gaussian_fit_sample(d.train, 1000, torch.Generator().manual_seed(0))
    baseline = frechet_distance_features(digits_features(fake, model), f_test)
    print(f"FID(digits): real test vs train {floor:.2f}, Gaussian fit {baseline:.2f}")
    assert baseline > 5 * floor
    # confident predictions: real digits mostly, the Gaussian fit much less often
    labels, conf = digits_predict(d.test, model)
    assert (labels == d.test_labels).double().mean() == pytest.approx(model.test_accuracy)
    assert (conf > 0.9).double().mean() > 0.9
    assert (digits_predict(fake, model)[1] > 0.9).double().mean() < 0.7


def test_digits_features_rejects_wrong_shape(classifier_in_tmp_cache):
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        digits_features(torch.zeros(3, 64), classifier_in_tmp_cache[0])


def test_classifier_config_limits_feature_dim():
    with pytest.raises(ValueError, match="feature_dim"):
        ClassifierConfig(feature_dim=128)


def test_corrupt_cache_file_is_retrained_over(tmp_path, monkeypatch):
    monkeypatch.setenv("SDEFLOW_CACHE", str(tmp_path))
    config = ClassifierConfig(seed=5)
    path = features_mod._cache_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"torn")
    calls = []

    def fake_train(cfg):
        calls.append(cfg)
        model = DigitsClassifier(cfg.feature_dim, cfg.channels)
        model.test_accuracy = 0.5
        return model
    monkeypatch.setattr(features_mod, "train_digits_classifier", fake_train)
    model = load_digits_classifier(config)
    assert calls == [config] and model.test_accuracy == 0.5
    assert load_digits_classifier(config).test_accuracy == 0.5 and len(calls) == 1


def test_gaussian_fit_sample_matches_moments():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5000, 3, generator=g) @ torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0],
                                                          [0.0, 0.0, 0.2]]) + 2.0
    s = gaussian_fit_sample(x, 20000, g)
    assert s.shape == (20000, 3) and s.dtype == x.dtype
    assert torch.allclose(s.mean(0), x.mean(0), atol=0.03)
    assert torch.allclose(torch.cov(s.T), torch.cov(x.T), atol=0.05)
    img = gaussian_fit_sample(torch.randn(10, 1, 2, 2), 4)
    assert img.shape == (4, 1, 2, 2)
