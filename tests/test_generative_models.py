"""generative.models: the registry of model kinds (score, ffjord, fm, ot-fm) behind the CLI —
meta layout and its version-1 upgrade, build / train / load / sample / log_prob for every kind,
and clear errors for options, nets, shapes and checkpoints that do not fit."""
from dataclasses import asdict

import pytest
import torch

from generative import TrainConfig, load_data
from generative.checkpoint import load_checkpoint, save_checkpoint
from generative.ffjord import CNF
from generative.models import (GENERATIVE_KINDS, KINDS, ModelError, build_model, load_model,
                               log_prob, make_meta, sample, train_model)
from generative.nets import ScoreNet
from generative.spec import KIND_SCHEMAS, META_FORMAT, META_VERSION, ModelSpec, upgrade_meta

SMALL = {"score": {}, "ffjord": {"rtol": 1e-3, "atol": 1e-3, "kinetic": 0.01, "jacobian": 0.01},
         "fm": {}, "ot-fm": {}}


@pytest.fixture(scope="module")
def moons():
    return load_data("moons")


@pytest.fixture(scope="module")
def trained(moons, tmp_path_factory):
    """One tiny trained checkpoint per kind: {kind: (path, meta)}."""
    root = tmp_path_factory.mktemp("models")
    out = {}
    for kind, options in SMALL.items():
        meta = make_meta(kind, moons, net_kwargs={"width": 16, "depth": 1}, **options)
        config = TrainConfig(steps=4, batch_size=32, lr=1e-3, log_every=2, ckpt_every=2,
                             progress=False)
        result = train_model(moons, meta, config, root / kind)
        out[kind] = (result.checkpoint, meta)
    return out


def test_registry_and_meta_layout(moons):
    assert set(KINDS) == {"score", "ffjord", "fm", "ot-fm", "classifier"}
    for kind in GENERATIVE_KINDS:
        meta = make_meta(kind, moons)
        assert meta["format"] == META_FORMAT and meta["version"] == META_VERSION
        assert meta["kind"] == kind and meta["net"] == "mlp" and meta["event_shape"] == [2]
        assert set(KINDS[kind].options) <= set(meta)          # defaults filled in
    ff = make_meta("ffjord", moons, kinetic=0.5)
    assert ff["kinetic"] == 0.5 and ff["jacobian"] == 0.0 and ff["gradient"] == "backsolve"
    assert make_meta("ot-fm", moons, path="cosine")["path"] == "cosine"


def test_build_model_types(moons):
    assert isinstance(build_model(make_meta("score", moons)), ScoreNet)
    cnf = build_model(make_meta("ffjord", moons, net_kwargs={"width": 8, "depth": 2},
                                kinetic=0.1, divergence="hutchinson"))
    assert isinstance(cnf, CNF) and cnf.kinetic == 0.1 and cnf.divergence_method == "hutchinson"
    assert [layer.lin.out_features for layer in cnf.net.layers] == [8, 8, 2]
    v = build_model(make_meta("fm", moons, net_kwargs={"width": 8, "depth": 1}))
    assert v(torch.zeros(3, 2), torch.zeros(3)).shape == (3, 2)


@pytest.mark.parametrize("kind", list(SMALL))
def test_each_kind_trains_loads_samples_and_scores(trained, moons, kind):
    path, meta = trained[kind]
    model, loaded_meta, state = load_model(path)
    assert loaded_meta == meta and state["step"] == 4
    assert not any(p.requires_grad for p in model.parameters())
    opts = {"sampler": "em", "nfe": 10} if kind == "score" else {"method": "rk4", "nfe": 12}
    x, nfe = sample(model, meta, 16, generator=torch.Generator().manual_seed(0), **opts)
    assert x.shape == (16, 2) and torch.isfinite(x).all() and 1 <= nfe <= 12
    again, _ = sample(model, meta, 16, generator=torch.Generator().manual_seed(0), **opts)
    assert torch.equal(x, again)
    logp, nfe = log_prob(model, meta, moons.test[:8], rtol=1e-3, atol=1e-3)
    assert logp.shape == (8,) and torch.isfinite(logp).all() and nfe > 0
    lp_h, _ = log_prob(model, meta, moons.test[:8], divergence="hutch++", rtol=1e-3, atol=1e-3,
                       generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(lp_h).all()  # n_probes defaults to 3 for hutch++


def test_flow_fixed_step_budget_is_respected(trained):
    """--nfe with rk4 (4 evaluations per step): the budget buys floor(nfe / 4) steps."""
    for kind in ("ffjord", "fm"):
        model, meta, _ = load_model(trained[kind][0])
        _, nfe8 = sample(model, meta, 4, method="rk4", nfe=8)
        _, nfe11 = sample(model, meta, 4, method="rk4", nfe=11)
        assert nfe8 == nfe11 <= 8
        _, nfe16 = sample(model, meta, 4, method="rk4", nfe=16)
        assert nfe16 == 2 * nfe8
        with pytest.raises(ModelError, match="too small"):
            sample(model, meta, 4, method="rk4", nfe=3)


def test_ffjord_likelihood_matches_the_cnf(trained, moons):
    model, meta, _ = load_model(trained["ffjord"][0])
    x = moons.test[:8]
    logp, _ = log_prob(model, meta, x, rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        ref = model.log_prob(x, divergence_method="exact", rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(logp, ref, rtol=0, atol=1e-5)


def test_version1_score_meta_is_upgraded(trained, tmp_path):
    """A checkpoint written before the other kinds existed (meta kind 'sdeflow-score-model',
    'model' naming the net) loads as a score model with the same weights."""
    path, meta = trained["score"]
    state = load_checkpoint(path)
    v1_keys = ("data", "event_shape", "levels", "sde", "weighting", "t_min", "dequantize",
               "cond", "data_std")
    old = {k: meta[k] for k in v1_keys}
    old.update(kind="sdeflow-score-model", version=1, model=meta["net"],
               model_kwargs=meta["net_kwargs"], parameterization="eps")
    assert upgrade_meta(old) == meta
    legacy = save_checkpoint(tmp_path / "v1.pt", {**state, "meta": old})
    model, loaded_meta, _ = load_model(legacy)
    assert loaded_meta == meta
    ref, _, _ = load_model(path)
    for a, b in zip(model.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_continues_and_rejects_a_different_model(moons, tmp_path):
    meta = make_meta("fm", moons, net_kwargs={"width": 8, "depth": 1})
    config = TrainConfig(steps=2, batch_size=16, log_every=1, ckpt_every=1, progress=False)
    train_model(moons, meta, config, tmp_path)
    config.steps = 4
    assert train_model(moons, meta, config, tmp_path, resume=True).step == 4
    other = make_meta("fm", moons, net_kwargs={"width": 8, "depth": 1}, path="cosine")
    with pytest.raises(ModelError, match="cannot resume.*path: saved 'linear' vs given 'cosine'"):
        train_model(moons, other, config, tmp_path, resume=True)


def test_bad_options_nets_and_shapes_name_what_is_wrong(trained, moons):
    with pytest.raises(ModelError, match="unknown model kind 'cnf'.*ffjord"):
        make_meta("cnf", moons)
    with pytest.raises(ModelError, match="'kinetic' does not apply to 'score'.*sde"):
        make_meta("score", moons, kinetic=0.1)
    with pytest.raises(ModelError, match="'sde' does not apply to 'ffjord'"):
        make_meta("ffjord", moons, sde="vp")
    with pytest.raises(ModelError, match="unknown net 'unet' for 'ffjord'.*mlp"):
        make_meta("ffjord", moons, net="unet")
    with pytest.raises(ModelError, match="'unet' needs image data"):
        make_meta("fm", moons, net="unet")
    with pytest.raises(ModelError,
                       match=r"meta\['divergence'\] must be one of 'auto'.*got 'bogus'"):
        make_meta("ffjord", moons, divergence="bogus")  # checked before anything is built
    model, meta, _ = load_model(trained["fm"][0])
    with pytest.raises(ModelError, match="sampling option 'sampler' does not apply to 'fm'"):
        sample(model, meta, 4, sampler="pc")
    with pytest.raises(ModelError, match=r"x: expected data of event shape \(2,\).*\(4, 3\)"):
        log_prob(model, meta, torch.zeros(4, 3))


def test_foreign_and_mismatched_checkpoints(trained, tmp_path):
    foreign = save_checkpoint(tmp_path / "f.pt", {"model": {}, "meta": {"kind": "other"}})
    with pytest.raises(ModelError, match="not a checkpoint written by `sdeflow train`"):
        load_model(foreign)
    path, meta = trained["ffjord"]
    state = load_checkpoint(path)
    wrong = save_checkpoint(tmp_path / "w.pt", {**state, "meta": {**meta, "event_shape": [3]}})
    with pytest.raises(ModelError, match="does not match its model description"):
        load_model(wrong)
    future = save_checkpoint(tmp_path / "v3.pt", {**state, "meta": {**meta, "version": 3}})
    with pytest.raises(ModelError, match="version 3"):
        load_model(future)


def test_model_spec_round_trips_meta_and_drives_every_function(trained, moons):
    """`ModelSpec.from_meta` reads a checkpoint's meta (plain dict) and `to_meta` writes it
    back unchanged; the public functions take either form."""
    for kind, (path, meta) in trained.items():
        spec = ModelSpec.from_meta(meta)
        assert spec.kind == kind and spec.event_shape == (2,) and spec.to_meta() == meta
        assert set(asdict(spec.options)) == set(KINDS[kind].options)
        assert isinstance(spec.options, KIND_SCHEMAS[kind].options_type)
    spec = ModelSpec.from_meta(trained["fm"][1])
    model, _, _ = load_model(trained["fm"][0])
    g = torch.Generator().manual_seed(0)
    x, _ = sample(model, spec, 4, generator=g, method="rk4", nfe=8)
    y, _ = sample(model, trained["fm"][1], 4, generator=torch.Generator().manual_seed(0),
                  method="rk4", nfe=8)
    assert torch.equal(x, y)
    assert isinstance(build_model(ModelSpec.from_meta(trained["score"][1])), ScoreNet)
    with pytest.raises(ModelError, match="meta lacks the key 'sde'"):
        ModelSpec.from_meta({k: v for k, v in trained["score"][1].items() if k != "sde"})
    with pytest.raises(ModelError, match="sampling option 'snr' does not apply to 'fm'"):
        sample(model, spec, 4, snr=0.1)


def test_results_are_dataclasses_that_unpack_like_the_tuples(trained, moons):
    model, meta, _ = load_model(trained["ffjord"][0])
    r = sample(model, meta, 4, generator=torch.Generator().manual_seed(0), method="rk4", nfe=8)
    x, nfe = r
    assert x is r.x and nfe == r.nfe and r.x.shape == (4, 2)
    lp = log_prob(model, meta, moons.test[:4], rtol=1e-3, atol=1e-3)
    logp, nfe = lp
    assert logp is lp.logp and nfe == lp.nfe > 0
    d = model.density(moons.test[:4], with_regs=False, rtol=1e-3, atol=1e-3)
    assert d.nfe == lp.nfe and torch.allclose(d.logp, lp.logp) and d.regs == {}
    assert model.nfe_stats()["nfe"] == d.nfe


def test_generative_errors_share_one_root():
    """Every error generative raises on purpose is a GenerativeError; input mistakes stay
    ValueErrors (and solvers' InvalidInputError, which they were before)."""
    from generative.checkpoint import CheckpointError
    from generative.cli_checks import CLIError
    from generative.errors import GenerativeError, InputError, NonFiniteLossError
    from generative.run_config import ConfigError
    from solvers.errors import InvalidInputError
    for cls in (InputError, ModelError, NonFiniteLossError, CheckpointError, CLIError,
                ConfigError):
        assert issubclass(cls, GenerativeError)
    assert issubclass(InputError, ValueError) and issubclass(InputError, InvalidInputError)
    assert issubclass(ModelError, ValueError) and issubclass(NonFiniteLossError,
                                                             FloatingPointError)
    with pytest.raises(InputError, match="event_shape"):
        CNF(0)
