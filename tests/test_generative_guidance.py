"""Controllable generation: class-conditional models, classifier-free and classifier guidance
with every sampler, the samplers' callback, inpainting (replacement vs the conditional
score, against the closed-form conditional of a Gaussian mixture) and the CLI commands."""
from __future__ import annotations

import json
import math
import re

import pytest
import torch
from dynamics_strategies import sample_cov_bounds

import dynamics as D
from generative import models
from generative.classifier import noisy_accuracy
from generative.data import Dataset
from generative.guidance import class_score_fn, classifier_log_prob_fn, guided_score_fn
from generative.inpaint import inpaint, known_mask
from generative.losses import drop_labels, make_dsm_loss
from generative.nets import MLP
from generative.randomness import BatchRandom
from generative.samplers import SAMPLERS, sample
from generative.train import TrainConfig
from solvers.errors import InvalidInputError

F64 = torch.float64

#: every sampler with small settings (ode: fixed rk4 steps)
SAMPLER_OPTIONS = {
    "em": {"n_steps": 20}, "reverse_diffusion": {"n_steps": 30}, "ancestral": {"n_steps": 30},
    "pc": {"n_steps": 30}, "ddim": {"n_steps": 10, "eta": 0.5}, "dpmpp_2m": {"n_steps": 10},
    "dpmpp_2s": {"n_steps": 5}, "edm_heun": {"n_steps": 5, "churn": 2.0},
    "ode": {"method": "rk4", "n_steps": 5},
    "ddpm": {"n_steps": 20}, "dpmpp_3m": {"n_steps": 6}, "dpmpp_2m_sde": {"n_steps": 6},
    "dpmpp_3m_sde": {"n_steps": 6}, "dpmpp_2s_ancestral": {"n_steps": 4},
    "dpmpp_sde": {"n_steps": 4}, "dpm_2": {"n_steps": 4}, "dpm_2_ancestral": {"n_steps": 4},
    "lms": {"n_steps": 6}, "dpm_solver_3": {"n_steps": 3}, "dpm_adaptive": {"rtol": 0.05},
    "unipc": {"n_steps": 6}, "deis": {"n_steps": 6}, "restart": {"n_steps": 4},
}


def test_sampler_table_covers_every_sampler():
    assert set(SAMPLER_OPTIONS) == set(SAMPLERS)


def _tiny_conditional_model(num_classes=3, d=2, seed=0):
    torch.manual_seed(seed)
    data = Dataset("toy", torch.randn(64, d), torch.randn(8, d), torch.arange(64) % num_classes,
                   torch.arange(8) % num_classes, num_classes=num_classes)
    meta = models.make_meta("score", data, net="mlp", net_kwargs={"width": 16, "depth": 1},
                            num_classes=num_classes, label_dropout=0.1)
    return models.build_model(meta).eval().requires_grad_(False), meta


# --------------------------------------------------------------------------- class conditioning

def test_mlp_class_embedding_null_label_and_vector_output():
    torch.manual_seed(0)
    net = MLP(2, width=16, depth=1, num_classes=4)
    assert net.null_label == 4
    x, t = torch.randn(3, 2), torch.rand(3)
    a, b = net(x, t, torch.tensor([1, 1, 1])), net(x, t, torch.tensor([2, 2, 2]))
    assert (a - b).abs().max() > 1e-4
    assert torch.equal(net(x, t), net(x, t, torch.tensor([4, 4, 4])))
    with pytest.raises(ValueError, match="num_classes=None"):
        MLP(2, width=16, depth=1)(x, t, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"y must have shape \(3,\)"):
        net(x, t, torch.tensor([0, 1]))
    assert MLP((1, 4, 4), width=16, depth=1, out_features=5)(torch.randn(3, 1, 4, 4), t).shape \
        == (3, 5)
    with pytest.raises(ValueError, match="out_features"):
        MLP(2, out_features=0)


def test_label_dropout_rate_per_example_and_validation():
    y = torch.arange(20_000) % 7
    for p in (0.0, 0.25, 1.0):
        out = drop_labels(y, p, 7, torch.Generator().manual_seed(0))
        dropped = out == 7
        assert torch.equal(out[~dropped], y[~dropped])
        se = math.sqrt(p * (1 - p) / len(y))
        assert abs(float(dropped.double().mean()) - p) <= 5 * se
    # per example: a row's draw does not depend on how the batch is split
    full = drop_labels(y[:8], 0.5, 7, BatchRandom(3, 5, 8))
    half = drop_labels(y[4:8], 0.5, 7, BatchRandom(3, 5, 4, start=4, global_size=8))
    assert torch.equal(full[4:], half)
    with pytest.raises(ValueError, match="label_dropout"):
        make_dsm_loss(D.VPSDE(), label_dropout=1.5, null_label=3)
    with pytest.raises(ValueError, match="null_label"):
        make_dsm_loss(D.VPSDE(), label_dropout=0.1)


def test_class_conditional_meta_and_unlabelled_data():
    model, meta = _tiny_conditional_model()
    assert meta["num_classes"] == 3 and meta["label_dropout"] == 0.1
    assert model.net.num_classes == 3
    unlabelled = Dataset("toy", torch.randn(16, 2), torch.randn(4, 2))
    meta2 = models.make_meta("score", unlabelled, num_classes=3)
    with pytest.raises(models.ModelError, match="labelled data"):
        models.train_model(unlabelled, meta2, TrainConfig(steps=1, progress=False), None)


@pytest.mark.parametrize("sampler", list(SAMPLER_OPTIONS))
def test_cfg_scale_zero_is_the_unconditional_sampler(sampler):
    """γ = 0 with the same seed reproduces the unconditional model's samples bit for bit; the
    unconditional score is the null label's, and guidance at γ = 2 changes the samples."""
    model, _ = _tiny_conditional_model()
    sde = model.sde
    opts = SAMPLER_OPTIONS[sampler]

    def run(score_fn):
        with torch.no_grad():
            return sample(sampler, sde, score_fn, (16, 2),
                          generator=torch.Generator().manual_seed(7), **opts)[0]

    uncond = run(model.score_fn())
    null = run(class_score_fn(model, sde, torch.full((16,), 3)))
    cfg0 = run(guided_score_fn(model, sde, 1, guidance="cfg", scale=0.0))
    cfg2 = run(guided_score_fn(model, sde, 1, guidance="cfg", scale=2.0))
    assert torch.equal(uncond, null) and torch.equal(uncond, cfg0)
    assert (cfg2 - uncond).abs().max() > 1e-3


def test_cfg_scale_one_is_the_conditional_score():
    model, _ = _tiny_conditional_model()
    sde = model.sde
    x, t = torch.randn(8, 2), torch.rand(8) * 0.9 + 0.05
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    cond = class_score_fn(model, sde, labels)(x, t)
    torch.testing.assert_close(guided_score_fn(model, sde, labels, guidance="cfg")(x, t), cond)
    torch.testing.assert_close(guided_score_fn(model, sde, labels)(x, t), cond)
    assert (cond - model.score_fn()(x, t)).abs().max() > 1e-4


def test_guidance_errors_name_the_problem():
    model, _ = _tiny_conditional_model()
    sde = model.sde
    with pytest.raises(ValueError, match=r"label must be an int class in \[0, 3\)"):
        guided_score_fn(model, sde, 3, guidance="cfg")
    with pytest.raises(ValueError, match="label must be a"):
        guided_score_fn(model, sde, torch.tensor([0, 5]), guidance="cfg")
    with pytest.raises(ValueError, match="`guidance` must be one of"):
        guided_score_fn(model, sde, 0, guidance="free")
    with pytest.raises(ValueError, match="classifier_log_prob"):
        guided_score_fn(model, sde, 0, guidance="classifier")
    data = Dataset("toy", torch.randn(16, 2), torch.randn(4, 2))
    uncond = models.build_model(models.make_meta("score", data, net_kwargs={"width": 8,
                                                                            "depth": 1}))
    with pytest.raises(ValueError, match="class-conditional score model"):
        guided_score_fn(uncond, uncond.sde, 0, guidance="cfg")
    with pytest.raises(models.ModelError, match="class-conditional"):
        models.sample(uncond, models.make_meta("score", data), 4, label=0, nfe=10,
                      sampler="ddim")


# --------------------------------------------------------------------------- trained 2-D model

MIX3 = D.GaussianMixture(torch.ones(3) / 3, torch.tensor([[-1.5, 0.0], [1.5, 0.0], [0.0, 1.8]]),
                         torch.eye(2).expand(3, 2, 2) * 0.25)


@pytest.fixture(scope="module")
def trained_2d():
    """A class-conditional score model (label dropout 0.2) and a noise-conditional classifier,
    300 steps each on a labelled 3-component 2-D mixture."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x, y = MIX3.sample(4000, g, return_labels=True)
    xt, yt = MIX3.sample(1000, g, return_labels=True)
    data = Dataset("mix3", x, xt, y, yt, num_classes=3)
    cfg = TrainConfig(steps=300, batch_size=256, lr=2e-3, warmup_steps=20, progress=False,
                      log_every=100)
    meta = models.make_meta("score", data, net_kwargs={"width": 64, "depth": 2}, num_classes=3,
                            label_dropout=0.2)
    model = models.train_model(data, meta, cfg, None).ema.model
    cmeta = models.make_meta("classifier", data, sde="vp", net_kwargs={"width": 64, "depth": 2})
    clf = models.train_model(data, cmeta, cfg, None).ema.model
    return model, clf, data


def _class_accuracy(sde, score_fn, labels):
    with torch.no_grad():
        x, _ = sample("ddim", sde, score_fn, (len(labels), 2), n_steps=50,
                      generator=torch.Generator().manual_seed(1))
    pred = MIX3.posterior_log_prob(sde, x, sde.t_min).argmax(1)   # the Bayes classifier
    return float((pred == labels).double().mean())


def test_trained_classifier_is_accurate_at_low_noise(trained_2d):
    model, clf, data = trained_2d
    assert noisy_accuracy(clf, model.sde, data.test, data.test_labels, 0.01,
                          torch.Generator().manual_seed(0)) > 0.95
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        classifier_log_prob_fn(clf, 3)


def test_guided_class_accuracy_exceeds_unguided(trained_2d):
    """Both guidances turn the unconditional samples (about 1/3 of them in the requested
    class) into samples of the requested class; a larger scale does not lower the accuracy."""
    model, clf, _ = trained_2d
    sde = model.sde
    labels = torch.arange(600) % 3
    acc = {}
    for guidance in ("cfg", "classifier"):
        for scale in (0.0, 1.0, 3.0):
            score = guided_score_fn(model, sde, labels, guidance=guidance, scale=scale,
                                    classifier_log_prob=lambda y: classifier_log_prob_fn(clf, y))
            acc[guidance, scale] = _class_accuracy(sde, score, labels)
    print({f"{g} {s:g}": round(a, 3) for (g, s), a in acc.items()})
    for guidance in ("cfg", "classifier"):
        assert acc[guidance, 0.0] < 0.5
        assert acc[guidance, 1.0] > acc[guidance, 0.0] + 0.4
        assert acc[guidance, 3.0] >= acc[guidance, 1.0]


# --------------------------------------------------------------------------- callback

@pytest.mark.parametrize("sampler", [s for s in SAMPLER_OPTIONS if s != "dpm_adaptive"])
def test_callback_runs_at_every_grid_point(sampler):
    """``callback(i, t, x, denoised)`` sees the initial state at T (i = 0) and every step's end
    state, down to eps, with the sampler's x0 estimate where it has one; a returned tensor is
    the state the sampler continues from."""
    sde = D.VPSDE()
    seen = []

    def callback(i, t, x, denoised):
        seen.append((i, float(t), denoised is None))
        return x.clamp(-0.5, 0.5)

    opts = SAMPLER_OPTIONS[sampler]
    x, _ = sample(sampler, sde, MIX3.score_fn(sde), (32, 2), callback=callback,
                  generator=torch.Generator().manual_seed(0), **opts)
    assert [i for i, _, _ in seen] == list(range(opts["n_steps"] + 1))
    ts = [t for _, t, _ in seen]
    assert ts[0] == pytest.approx(sde.T) and ts[-1] == pytest.approx(sde.t_min)
    assert all(a > b for a, b in zip(ts, ts[1:]))
    fast = SAMPLERS[sampler].grid == "schedule"      # the x0-based samplers report x0
    assert [none for _, _, none in seen[1:]] == [not fast] * opts["n_steps"]
    assert float(x.abs().max()) <= 0.5 + 1e-6


def test_callback_returning_none_keeps_the_samples():
    """(em with a callback steps in its own loop, with the generator's noise instead of
    solvers' counter-based increments: the same law, other draws.)"""
    sde = D.VPSDE()
    for name, opts in SAMPLER_OPTIONS.items():
        if name == "em":
            continue
        kw = dict(generator=torch.Generator().manual_seed(0), dtype=F64, **opts)
        a, nfe_a = sample(name, sde, MIX3.score_fn(sde), (8, 2), **kw)
        kw["generator"] = torch.Generator().manual_seed(0)
        b, nfe_b = sample(name, sde, MIX3.score_fn(sde), (8, 2),
                          callback=lambda i, t, x, d: None, **kw)
        assert nfe_a == nfe_b
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)


def test_callback_errors():
    sde = D.VPSDE()
    with pytest.raises(InvalidInputError, match="`callback` must be None or a callable"):
        sample("ddim", sde, MIX3.score_fn(sde), (4, 2), n_steps=3, callback=1.0)
    with pytest.raises(InvalidInputError, match=r"`callback\(i, t, x, denoised\)` must return"):
        sample("pc", sde, MIX3.score_fn(sde), (4, 2), n_steps=30,
               callback=lambda i, t, x, d: x[:2])


# --------------------------------------------------------------------------- inpainting

def _oracle():
    """A 3-D two-component mixture, the first coordinate known (= 0.8): the exact conditional
    of the other two puts weight 0.08 / 0.92 on the components."""
    cov = torch.tensor([[1.0, 0.8, 0.3], [0.8, 1.0, 0.2], [0.3, 0.2, 1.0]], dtype=F64)
    mix = D.GaussianMixture(torch.tensor([0.5, 0.5], dtype=F64),
                            torch.tensor([[-1.5, -1.5, 0.0], [1.5, 1.5, 0.0]], dtype=F64),
                            torch.stack([cov, cov]))
    return mix, torch.tensor([True, False, False]), torch.tensor([0.8, 0.0, 0.0], dtype=F64)


@pytest.mark.parametrize("sampler", list(SAMPLER_OPTIONS))
def test_replacement_leaves_known_pixels_at_the_final_noise_level(sampler):
    mix, mask, values = _oracle()
    sde = D.VPSDE()
    known = values.expand(256, 3).clone()
    kw = dict(mode="replace", sampler=sampler, dtype=F64, **SAMPLER_OPTIONS[sampler])
    raw, _ = inpaint(sde, mix.score_fn(sde), known, mask, restore_known=False,
                     generator=torch.Generator().manual_seed(0), **kw)
    eps = torch.tensor(sde.t_min, dtype=F64)
    dev = (raw[:, 0] - sde.alpha(eps) * 0.8).abs()
    assert float(dev.max()) <= 6 * float(sde.sigma(eps))      # on the kernel at eps
    assert float(dev.max()) > 0                               # a fresh kernel sample
    out, _ = inpaint(sde, mix.score_fn(sde), known, mask,
                     generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(out[:, 0], known[:, 0])
    torch.testing.assert_close(out[:, 1:], raw[:, 1:], rtol=0, atol=0)


@pytest.fixture(scope="module")
def oracle_inpaintings():
    """Masked coordinates sampled by replacement and by the exact conditional score
    (reverse diffusion, 400 steps, 3000 samples each), and the exact conditional."""
    mix, mask, values = _oracle()
    sde = D.VPSDE()
    known = values.expand(3000, 3).clone()
    out = {}
    for mode in ("replace", "conditional"):
        lik = mix.observation_log_prob_fn(sde, values, mask) if mode == "conditional" else None
        x, _ = inpaint(sde, mix.score_fn(sde), known, mask, mode=mode,
                       sampler="reverse_diffusion", n_steps=400, log_likelihood_fn=lik,
                       generator=torch.Generator().manual_seed(3), dtype=F64)
        out[mode] = x[:, ~mask]
    return out, mix.condition(values, mask)


def _moment_errors(x, target):
    m, c, se_m, se_c = sample_cov_bounds(x)
    return ((m - target.mean()).abs(), (c - target.covariance()).abs(), se_m, se_c)


def test_conditional_score_inpainting_matches_the_closed_form_conditional(oracle_inpaintings):
    samples, target = oracle_inpaintings
    err_m, err_c, se_m, se_c = _moment_errors(samples["conditional"], target)
    assert bool((err_m <= se_m).all()), (err_m, se_m)            # 5 standard errors
    assert bool((err_c <= se_c).all()), (err_c, se_c)


def test_replacement_bias_is_measured_and_exceeds_the_exact_variant_error(oracle_inpaintings):
    """Replacement is biased even with the exact score: its moment errors are far outside the
    sampling error, and larger than the conditional-score variant's."""
    samples, target = oracle_inpaintings
    rep_m, rep_c, se_m, se_c = _moment_errors(samples["replace"], target)
    con_m, con_c, _, _ = _moment_errors(samples["conditional"], target)
    report = {"replace": (float(rep_m.max()), float(rep_c.max())),
              "conditional": (float(con_m.max()), float(con_c.max())),
              "5 standard errors": (float(se_m.max()), float(se_c.max()))}
    print("max |mean error|, max |cov error|:", report)
    assert float(rep_m.max()) > 2 * float(se_m.max())
    assert float(rep_m.max()) > 3 * float(con_m.max())
    assert float(rep_c.max()) > 3 * float(con_c.max())


def test_known_masks():
    left = known_mask("left", (1, 8, 8), 2)
    assert left.shape == (2, 1, 8, 8) and not left[..., :4].any() and left[..., 4:].all()
    center = known_mask("center", (1, 8, 8))
    assert (~center).sum() == 16 and not center[0, 0, 2:6, 2:6].any()
    rnd = known_mask("random", (1, 8, 8), 50, torch.Generator().manual_seed(0))
    assert abs(float(rnd.double().mean()) - 0.5) < 0.05 and not torch.equal(rnd[0], rnd[1])
    assert known_mask("center", (8,))[0].tolist() == [True] * 2 + [False] * 4 + [True] * 2
    with pytest.raises(ValueError, match="`mask` must be one of"):
        known_mask("top", (1, 8, 8))


def test_inpaint_input_errors():
    mix, mask, values = _oracle()
    sde = D.VPSDE()
    known = values.expand(4, 3).clone()
    with pytest.raises(ValueError, match="does not broadcast"):
        inpaint(sde, mix.score_fn(sde), known, torch.tensor([True, False]), n_steps=3)
    with pytest.raises(ValueError, match="bool tensor"):
        inpaint(sde, mix.score_fn(sde), known, mask.double(), n_steps=3)
    with pytest.raises(ValueError, match="`mode` must be one of"):
        inpaint(sde, mix.score_fn(sde), known, mask, mode="paint", n_steps=3)


def test_conditional_inpainting_with_a_learned_score_runs_with_the_ode_sampler():
    """The reconstruction-guided conditional score is a plain score transform: it runs with
    the probability-flow ODE too and keeps the known pixels exactly."""
    model, _ = _tiny_conditional_model()
    known = torch.randn(4, 2)
    mask = torch.tensor([True, False])
    x, _ = inpaint(model.sde, model.score_fn(), known, mask, mode="conditional",
                   sampler="ode", method="rk4", n_steps=4)
    assert torch.isfinite(x).all() and torch.equal(x[:, 0], known[:, 0])


# --------------------------------------------------------------------------- CLI

@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Tiny checkpoints: class-conditional and unconditional digits score models, a digits
    noise-conditional classifier."""
    from generative.cli import main
    root = tmp_path_factory.mktemp("guidance-cli")
    common = ["--steps", "20", "--width", "32", "--depth", "1", "--batch-size", "32",
              "--no-progress", "--log-every", "10"]
    assert main(["train", "--data", "digits", "--class-conditional", "--label-dropout", "0.2",
                 "--out", str(root / "cond"), *common]) == 0
    assert main(["train", "--data", "digits", "--out", str(root / "uncond"), *common]) == 0
    assert main(["train-classifier", "--data", "digits", "--out", str(root / "clf"),
                 *common]) == 0
    return root


def test_cli_train_class_conditional_and_classifier(cli_runs):
    from generative.checkpoint import load_checkpoint
    meta = load_checkpoint(cli_runs / "cond" / "checkpoint.pt")["meta"]
    assert meta["num_classes"] == 10 and meta["label_dropout"] == 0.2
    clf, cmeta, _ = models.load_model(cli_runs / "clf" / "checkpoint.pt")
    assert cmeta["kind"] == "classifier" and cmeta["num_classes"] == 10
    assert clf(torch.zeros(2, 1, 8, 8), torch.full((2,), 0.5)).shape == (2, 10)
    summary = json.loads((cli_runs / "clf" / "train_summary.json").read_text())
    assert set(summary["test_accuracy_at_t"]) == {"0T", "0.25T", "0.5T", "0.75T"}


@pytest.mark.parametrize("extra", [["--guidance", "cfg", "--scale", "2.0"], [],
                                   ["--guidance", "classifier", "--scale", "2.0"]])
def test_cli_sample_class(cli_runs, tmp_path, extra):
    from generative.cli import main
    if "classifier" in extra:
        extra = extra + ["--classifier", str(cli_runs / "clf" / "checkpoint.pt")]
    out = tmp_path / "three.png"
    assert main(["sample", "--ckpt", str(cli_runs / "cond" / "checkpoint.pt"), "--class", "3",
                 "--sampler", "ddim", "--nfe", "10", "--n", "9", "--out", str(out),
                 *extra]) == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    assert out.is_file() and summary["finite"] and summary["options"]["label"] == 3
    assert torch.load(out.with_suffix(".pt")).shape == (9, 1, 8, 8)


def test_cli_sample_cfg_scale_zero_matches_unconditional(cli_runs, tmp_path):
    from generative.cli import main
    ckpt = str(cli_runs / "cond" / "checkpoint.pt")
    base = ["sample", "--ckpt", ckpt, "--sampler", "ddim", "--nfe", "10", "--n", "6"]
    assert main(base + ["--out", str(tmp_path / "u.png")]) == 0
    assert main(base + ["--out", str(tmp_path / "c.png"), "--class", "2", "--guidance", "cfg",
                        "--scale", "0"]) == 0
    assert torch.equal(torch.load(tmp_path / "u.pt"), torch.load(tmp_path / "c.pt"))


@pytest.mark.parametrize("args,expected", [
    (["--class", "10"], r"--class must be an int class in \[0, 10\)"),
    (["--scale", "2"], "--scale needs --class"),
    (["--class", "1", "--guidance", "classifier"], "go together"),
    (["--class", "1", "--classifier", "CLF"], "go together"),
    (["--class", "1", "--guidance", "classifier", "--classifier", "COND"],
     "not a noise-conditional classifier"),
])
def test_cli_sample_guidance_errors(cli_runs, tmp_path, capsys, args, expected):
    from generative.cli import main
    paths = {"CLF": str(cli_runs / "clf" / "checkpoint.pt"),
             "COND": str(cli_runs / "cond" / "checkpoint.pt")}
    args = [paths.get(a, a) for a in args]
    assert main(["sample", "--ckpt", paths["COND"], "--nfe", "10", "--sampler", "ddim",
                 "--out", str(tmp_path / "x.png"), *args]) == 2
    assert re.search(expected, capsys.readouterr().err)


def test_cli_guidance_on_unconditional_model(cli_runs, tmp_path, capsys):
    from generative.cli import main
    ckpt = str(cli_runs / "uncond" / "checkpoint.pt")
    argv = ["sample", "--ckpt", ckpt, "--nfe", "10", "--sampler", "ddim", "--n", "4",
            "--out", str(tmp_path / "x.png"), "--class", "1"]
    assert main(argv + ["--guidance", "cfg"]) == 2
    assert "needs a class-conditional model" in capsys.readouterr().err
    # classifier guidance works with an unconditional model
    assert main(argv + ["--guidance", "classifier", "--classifier",
                        str(cli_runs / "clf" / "checkpoint.pt")]) == 0


def test_cli_train_label_options_errors(tmp_path, capsys):
    from generative.cli import main
    base = ["train", "--steps", "1", "--out", str(tmp_path / "r"), "--no-progress"]
    assert main(base + ["--data", "digits", "--label-dropout", "0.1"]) == 2
    assert "--label-dropout applies to --class-conditional" in capsys.readouterr().err
    assert main(base + ["--data", "moons", "--class-conditional"]) == 2
    assert "needs labelled data" in capsys.readouterr().err


@pytest.mark.parametrize("mask,mode,sampler", [("left", "replace", "pc"),
                                               ("center", "conditional", "ddim"),
                                               ("random", "replace", "dpmpp_2m")])
def test_cli_inpaint(cli_runs, tmp_path, mask, mode, sampler):
    import matplotlib.image as mpimg

    from generative.cli import main
    from generative.row_figure import row_figure_size
    out = tmp_path / "inpaint.png"
    assert main(["inpaint", "--ckpt", str(cli_runs / "uncond" / "checkpoint.pt"), "--mask",
                 mask, "--mode", mode, "--sampler", sampler, "--nfe", "60", "--n", "5",
                 "--out", str(out)]) == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["n"] == 5 and math.isfinite(summary["mse_missing"])
    assert mpimg.imread(str(out)).shape[:2] == row_figure_size(3, 5, 8, 8)
    saved = torch.load(out.with_suffix(".pt"))
    m = saved["mask"]
    assert torch.equal(saved["inpainted"][m], saved["original"][m])


def test_cli_inpaint_errors(cli_runs, tmp_path, capsys):
    from generative.cli import main
    ckpt = str(cli_runs / "uncond" / "checkpoint.pt")
    assert main(["inpaint", "--ckpt", ckpt, "--sampler", "edm_heun", "--nfe", "1", "--n", "2",
                 "--out", str(tmp_path / "x.png")]) == 2
    assert "`nfe` = 1 is too small for sampler 'edm_heun'" in capsys.readouterr().err
