"""Checkpoint integrity: a SHA-256 trailer catches every changed bit; model descriptions (meta)
are validated, and weights compared with the described model's shapes, before anything is
built or allocated."""
import random
import warnings

import pytest
import torch

from generative import checkpoint as ckpt_mod
from generative.checkpoint import (CheckpointCorruptError, load_checkpoint, save_checkpoint)
from generative.data import Dataset, load_data
from generative.models import ModelError, load_model, make_meta, train_model
from generative.spec import validate_meta
from generative.train import TrainConfig

CFG = dict(batch_size=16, log_every=1, progress=False)


def _state():
    return {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "step": 3,
            "config": {"lr": 1e-3, "name": "x"}, "flag": True}


@pytest.fixture(scope="module")
def moons():
    return load_data("moons", n_train=128, n_test=64)


def _tiny_checkpoint(kind, data, tmp_path_factory):
    """A 2-step checkpoint of ``kind`` on ``data`` with a width-8 network."""
    out = tmp_path_factory.mktemp(kind)
    meta = make_meta(kind, data, net_kwargs={"width": 8, "depth": 1})
    train_model(data, meta, TrainConfig(steps=2, ckpt_every=2, **CFG), out)
    return out / "checkpoint.pt"


@pytest.fixture(scope="module")
def score_ckpt(moons, tmp_path_factory):
    return _tiny_checkpoint("score", moons, tmp_path_factory)


def test_every_single_bit_flip_is_detected(tmp_path):
    """60 random single-bit flips plus every bit of the last 100 bytes (zip end record and the
    trailer itself): each raises CheckpointCorruptError saying the file is corrupt."""
    path = save_checkpoint(tmp_path / "c.pt", _state())
    raw = path.read_bytes()
    rnd = random.Random(0)
    spots = [(rnd.randrange(len(raw)), rnd.randrange(8)) for _ in range(60)]
    spots += [(pos, bit) for pos in range(len(raw) - 100, len(raw)) for bit in (0, 5)]
    flipped = tmp_path / "flipped.pt"
    for pos, bit in spots:
        data = bytearray(raw)
        data[pos] ^= 1 << bit
        flipped.write_bytes(bytes(data))
        with pytest.raises(CheckpointCorruptError, match="corrupt|modified") as info:
            load_checkpoint(flipped)
        assert str(flipped) in str(info.value), (pos, bit)


def test_hash_mismatch_message_and_plain_torch_load(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", _state())
    assert torch.load(path, weights_only=True)["state"]["step"] == 3  # still a torch file
    data = bytearray(path.read_bytes())
    data[200] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointCorruptError,
                       match=r"SHA-256 does not match the stored hash .*modified or damaged"):
        load_checkpoint(path)


def test_version1_checkpoints_load_with_a_warning_and_stripped_hashes_are_refused(tmp_path):
    old = tmp_path / "v1.pt"  # what sdeflow wrote before the hash: plain torch.save, version 1
    torch.save({"format": ckpt_mod.FORMAT, "version": 1, "state": _state()}, old)
    with pytest.warns(UserWarning, match="format version 1, no integrity hash"):
        assert load_checkpoint(old)["step"] == 3
    with pytest.warns(UserWarning):
        resaved = save_checkpoint(tmp_path / "v2.pt", load_checkpoint(old))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_checkpoint(resaved)["step"] == 3  # saving again adds the hash
    stripped = tmp_path / "stripped.pt"  # a version-2 payload without its trailer
    torch.save({"format": ckpt_mod.FORMAT, "version": 2, "state": _state()}, stripped)
    with pytest.raises(CheckpointCorruptError, match="lost its integrity hash"):
        load_checkpoint(stripped)


def _resaved(score_ckpt, tmp_path, edit):
    state = load_checkpoint(score_ckpt)
    edit(state, state["meta"])
    return save_checkpoint(tmp_path / "edited.pt", state)


@pytest.mark.parametrize("edit,message", [
    (lambda s, m: m.update(net_kwargs={"width": 200000, "depth": 30}),
     r"meta\['net_kwargs'\]\['width'\] must be an int in \[1, 65536\]; got 200000"),
    (lambda s, m: m.pop("sde"), r"meta lacks the key 'sde'"),
    (lambda s, m: m.update(event_shape="abc"), r"meta\['event_shape'\] must be a list"),
    (lambda s, m: m.update(event_shape=[-2]), r"meta\['event_shape'\] must be a list.*\[-2\]"),
    (lambda s, m: m.update(data_std=float("nan")), r"meta\['data_std'\] must be a finite"),
    (lambda s, m: m.update(net_kwargs=[1, 2]), r"meta\['net_kwargs'\] must be a dict"),
    (lambda s, m: m.update(net_kwargs={"bogus": 3}), r"unknown key 'bogus'; valid keys: width"),
    (lambda s, m: m.update(net="resnet"), r"meta\['net'\] must be one of 'mlp', 'unet'"),
    (lambda s, m: m.update(weighting="zz"), r"meta\['weighting'\] must be one of 'std2'"),
    (lambda s, m: m.update(t_min="a"), r"meta\['t_min'\] must be None or a finite number"),
    (lambda s, m: m.update(num_classes=0), r"meta\['num_classes'\] must be None or an int"),
    (lambda s, m: m.update(dequantize="yes"), r"meta\['dequantize'\] must be True or False"),
    (lambda s, m: m.update(zzz=1), r"meta has the unknown key 'zzz'"),
    (lambda s, m: m.update(data=3), r"meta\['data'\] must be a non-empty string"),
    (lambda s, m: s.update(ema=3), r"state\['ema'\] must be a dict"),
])
def test_invalid_meta_is_refused_before_building(score_ckpt, tmp_path, edit, message):
    path = _resaved(score_ckpt, tmp_path, edit)
    with pytest.raises(ModelError, match=message) as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_weights_are_compared_with_the_described_shapes_before_allocating(score_ckpt,
                                                                          tmp_path):
    """In range but huge (width 60000, depth 30: ~430 GB of float32): the shapes are compared
    on the meta device first, so this fails at once instead of allocating."""
    path = _resaved(score_ckpt, tmp_path,
                    lambda s, m: m.update(net_kwargs={"width": 60000, "depth": 30}))
    with pytest.raises(ModelError, match=r"does not match its model description: its weights: "
                       r"missing .* shapes \(saved vs described\) net\.time\.1\.weight: "
                       r"\(8, 64\) vs \(60000, 64\)"):
        load_model(path)
    path = _resaved(score_ckpt, tmp_path, lambda s, m: m.update(event_shape=[3]))
    with pytest.raises(ModelError, match=r"net\.inp\.weight: \(8, 2\) vs \(8, 3\)"):
        load_model(path)


def test_loading_leaves_the_global_rng_alone(score_ckpt):
    before = torch.get_rng_state()
    load_model(score_ckpt)
    assert torch.equal(torch.get_rng_state(), before)


def test_make_meta_validates_too(moons):
    with pytest.raises(ModelError, match=r"meta\['net_kwargs'\] has the unknown key 'widht'"):
        make_meta("score", moons, net_kwargs={"widht": 8})
    with pytest.raises(ModelError, match=r"meta\['label_dropout'\] must be a finite number "
                       r"in \[0, 1\]; got 2"):
        make_meta("score", moons, label_dropout=2)
    meta = make_meta("ffjord", moons, net_kwargs={"width": 8, "depth": 1})
    assert validate_meta(meta) == meta


# --------------------------------------------------------------------------- classifier

@pytest.fixture(scope="module")
def labelled(moons):
    return Dataset("moons", moons.train, moons.test, (moons.train[:, 0] > 0).long(),
                   (moons.test[:, 0] > 0).long(), 2)


@pytest.fixture(scope="module")
def clf_ckpt(labelled, tmp_path_factory):
    return _tiny_checkpoint("classifier", labelled, tmp_path_factory)


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.pop("sde"), "meta lacks the key 'sde'"),
    (lambda m: m.pop("event_shape"), "meta lacks the key 'event_shape'"),
    (lambda m: m.update(net_kwargs={"width": 200000, "depth": 30}),
     r"meta\['net_kwargs'\]\['width'\] must be an int in \[1, 65536\]"),
    (lambda m: m.update(net_kwargs={"width": 60000, "depth": 30}),
     r"its weights: .*shapes \(saved vs described\)"),
    (lambda m: m.update(num_classes="x"), r"meta\['num_classes'\] must be an int"),
    (lambda m: m.update(kind="other"), "is not a checkpoint written by `sdeflow train`"),
])
def test_invalid_classifier_checkpoints(clf_ckpt, tmp_path, edit, message):
    state = load_checkpoint(clf_ckpt)
    edit(state["meta"])
    path = save_checkpoint(tmp_path / "c.pt", state)
    with pytest.raises(ModelError, match=message) as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_classifier_is_a_kind_and_its_old_layout_still_loads(clf_ckpt, labelled, tmp_path):
    """Classifier checkpoints written before the classifier was a kind (kind
    'sdeflow-noise-classifier', 'model_kwargs', the first ones without data_std) load as the
    kind 'classifier' with the same weights; it neither samples nor has a likelihood."""
    from generative.models import sample
    state = load_checkpoint(clf_ckpt)
    m = state["meta"]
    old = {k: m[k] for k in ("data", "event_shape", "levels", "sde", "num_classes", "t_min",
                             "dequantize")}
    old.update(kind="sdeflow-noise-classifier", version=1, model_kwargs=m["net_kwargs"])
    model, meta, _ = load_model(save_checkpoint(tmp_path / "old.pt", {**state, "meta": old}))
    assert meta == {**m, "data_std": 1.0}
    ref, _, _ = load_model(clf_ckpt)
    for a, b in zip(model.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ModelError, match="'classifier' models neither sample"):
        sample(ref, m, 4)
    with pytest.raises(ModelError, match="needs labelled data"):
        make_meta("classifier", Dataset("moons", labelled.train, labelled.test))


def test_cli_classifier_lacking_sde_and_resume_of_a_corrupt_classifier(
        clf_ckpt, score_ckpt, labelled, tmp_path, capsys):
    from generative.cli import main
    state = load_checkpoint(clf_ckpt)
    del state["meta"]["sde"]
    bad = save_checkpoint(tmp_path / "nosde.pt", state)
    assert main(["sample", "--ckpt", str(score_ckpt), "--class", "1", "--guidance",
                 "classifier", "--classifier", str(bad), "--n", "4", "--nfe", "4",
                 "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert "sdeflow: error:" in err and "lacks the key 'sde'" in err and "Traceback" not in err

    import numpy as np
    npz = tmp_path / "lab.npz"
    np.savez(npz, x=labelled.train.numpy(), y=labelled.train_labels.numpy())
    out = tmp_path / "clf_run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(clf_ckpt.read_bytes()[:-300])  # torn file
    assert main(["train-classifier", "--data", str(npz), "--steps", "4", "--batch-size", "16",
                 "--width", "8", "--depth", "1", "--out", str(out), "--no-progress",
                 "--resume"]) == 2
    err = capsys.readouterr().err
    assert "sdeflow: error:" in err and "is corrupt" in err and "Traceback" not in err


# --------------------------------------------------------------------------- caches

def test_load_cached_upgrades_old_entries_and_refuses_bad_ones(tmp_path):
    from generative.cache import load_cached
    from generative.checkpoint import is_hashed
    entry = tmp_path / "entry.pt"
    assert load_cached(entry) is None  # none yet
    torch.save({"format": ckpt_mod.FORMAT, "version": 1, "state": _state()}, entry)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an old cache entry is upgraded without a warning
        assert load_cached(entry)["step"] == 3
    assert is_hashed(entry) and load_checkpoint(entry)["step"] == 3
    data = bytearray(entry.read_bytes())
    data[100] ^= 1
    entry.write_bytes(bytes(data))
    said = []
    assert load_cached(entry, said.append) is None
    assert "is unusable" in said[0] and "SHA-256 does not match" in said[0]


def test_digits_classifier_cache_with_bad_content_is_retrained(tmp_path, monkeypatch):
    from generative.metrics import features as features_mod
    monkeypatch.setenv("SDEFLOW_CACHE", str(tmp_path))
    config = features_mod.ClassifierConfig(seed=3)
    model = features_mod.DigitsClassifier(config.feature_dim, config.channels)
    save_checkpoint(features_mod._cache_path(config),
                    {"model": model.state_dict(), "test_accuracy": "x"})  # intact, bad content
    calls = []

    def fake_train(cfg):
        calls.append(cfg)
        fresh = features_mod.DigitsClassifier(cfg.feature_dim, cfg.channels)
        fresh.test_accuracy = 0.25
        return fresh
    monkeypatch.setattr(features_mod, "train_digits_classifier", fake_train)
    assert features_mod.load_digits_classifier(config).test_accuracy == 0.25 and calls
    assert load_checkpoint(features_mod._cache_path(config))["test_accuracy"] == 0.25


def test_demo_cache_with_bad_content_is_retrained_and_a_stuck_one_names_retrain(
        tmp_path, monkeypatch):
    from generative import demo
    monkeypatch.setenv("SDEFLOW_CACHE", str(tmp_path))
    cfg = {**demo.QUICK_CONFIG, "net_kwargs": {"width": 8, "depth": 1}, "steps": 2,
           "batch_size": 16, "warmup_steps": 0}
    data = load_data("digits")
    said = []
    assert demo._ensure_model(cfg, data, retrain=False, progress=False,
                              log=said.append)["cached"] is False
    ckpt = demo.model_dir(cfg) / "checkpoint.pt"
    assert demo._ensure_model(cfg, data, retrain=False, progress=False,
                              log=said.append)["cached"] is True
    state = load_checkpoint(ckpt)
    state["meta"]["data_std"] = "x"  # a valid file whose model description is not
    save_checkpoint(ckpt, state)
    info = demo._ensure_model(cfg, data, retrain=False, progress=False, log=said.append)
    assert info["cached"] is False and any(
        "cached model unusable" in m and "meta['data_std']" in m for m in said)
    assert load_model(ckpt)[1]["data_std"] > 0
    state = load_checkpoint(ckpt)  # an interrupted training that cannot be continued
    state["step"], state["config"]["lr"] = 1, 0.5
    save_checkpoint(ckpt, state)
    with pytest.raises(ModelError, match=r"cannot continue the cached demo model .*"
                       r"cannot resume.*`sdeflow demo --retrain` trains it afresh"):
        demo._ensure_model(cfg, data, retrain=False, progress=False, log=said.append)
    assert demo._ensure_model(cfg, data, retrain=True, progress=False,
                              log=said.append)["steps"] == 2
