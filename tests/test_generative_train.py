"""Training loop: bit-for-bit resume, checkpoints, metrics log, EMA, errors."""
import json
import math

import pytest
import torch
from torch import nn

from generative import randomness
from generative.checkpoint import load_checkpoint
from generative.ema import EMA
from generative.train import BatchSampler, TrainConfig, train


class Crash(RuntimeError):
    pass


def _net():
    return nn.Sequential(nn.Linear(2, 16), nn.SiLU(), nn.Dropout(0.2), nn.Linear(16, 2))


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 2, generator=g)
    return x, (x.sum(1) > 0).long()


def _loss(crash_at=None):
    calls = {"n": 0}

    def loss_fn(model, batch, rng):
        calls["n"] += 1
        if crash_at is not None and calls["n"] == crash_at:
            raise Crash("simulated crash")
        x, y = batch
        noisy = x + 0.1 * randomness.randn(x.shape, rng, device=x.device)
        err = (model(noisy) - torch.nn.functional.one_hot(y, 2).float()).square().mean()
        return err, {"aux": err.detach() * 2}
    return loss_fn


def _transform(batch, rng):
    x, y = batch
    return x + 0.01 * randomness.rand(x.shape, rng), y


def _config(**kw):
    base = dict(steps=30, batch_size=32, lr=1e-2, weight_decay=1e-3, warmup_steps=5,
                grad_clip=0.5, ema_decay=0.9, log_every=7, ckpt_every=10, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def _run(out_dir, seed_before_init, crash_at=None, resume=False, **kw):
    torch.manual_seed(seed_before_init)
    model = _net()
    return train(model, _loss(crash_at), _data(), _config(**kw), out_dir=out_dir,
                 resume=resume, transform=_transform, meta={"net": "mlp", "width": 16})


def _log(path):
    return [{k: v for k, v in json.loads(line).items() if k != "time"}
            for line in path.read_text().splitlines()]


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    ref = _run(tmp_path / "ref", seed_before_init=0)
    with pytest.raises(Crash):
        _run(tmp_path / "cut", seed_before_init=0, crash_at=26)  # dies after step 25
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 20
    # a different global RNG state before building the model: everything must come from the
    # checkpoint (weights, EMA, optimiser, data order, noise, dropout RNG, log accumulators)
    with open(tmp_path / "cut" / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 26, "lo')  # a line torn by the crash
    res = _run(tmp_path / "cut", seed_before_init=123, resume=True)
    assert res.step == 30
    for a, b in zip(ref.model.state_dict().values(), res.model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(ref.ema.model.state_dict().values(), res.ema.model.state_dict().values()):
        assert torch.equal(a, b)
    sa, sb = ref.optimizer.state_dict()["state"], res.optimizer.state_dict()["state"]
    for k in sa:
        for name in sa[k]:
            assert torch.equal(sa[k][name], sb[k][name])
    assert _log(tmp_path / "ref" / "metrics.jsonl") == _log(tmp_path / "cut" / "metrics.jsonl")


def test_extending_a_finished_run_equals_a_longer_run(tmp_path):
    ref = _run(tmp_path / "ref", seed_before_init=0, steps=30)
    _run(tmp_path / "ext", seed_before_init=0, steps=20)
    res = _run(tmp_path / "ext", seed_before_init=5, resume=True, steps=30)
    for a, b in zip(ref.model.parameters(), res.model.parameters()):
        assert torch.equal(a, b)


def test_checkpoint_contents_and_metrics_log(tmp_path):
    res = _run(tmp_path, seed_before_init=0)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 30 and state["meta"] == {"net": "mlp", "width": 16}
    assert state["config"]["lr"] == 1e-2 and isinstance(state["config"], dict)
    assert "rng" not in state  # dropout etc. draw from a per-step seeded global RNG instead
    log = _log(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in log] == [7, 14, 21, 28, 30]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in log)
    assert all(r["aux"] == pytest.approx(2 * r["loss"]) for r in log)
    assert log[0]["lr"] == pytest.approx(1e-2)  # warmup over after 5 steps
    assert res.metrics["step"] == 30


def test_training_reduces_the_loss():
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    x = torch.randn(256, 2)
    y = x @ torch.tensor([[2.0], [-1.0]]) + 0.5

    def loss_fn(m, batch, g):
        xb, yb = batch
        return (m(xb) - yb).square().mean()
    logs = []
    cfg = TrainConfig(steps=200, batch_size=64, lr=5e-2, log_every=20, progress=False)
    train(model, loss_fn, (x, y), cfg, on_log=logs.append)
    assert logs[-1]["loss"] < 1e-2 * logs[0]["loss"]


def test_resume_refuses_changed_config_and_fresh_run_refuses_existing_dir(tmp_path):
    _run(tmp_path, seed_before_init=0, steps=10)
    with pytest.raises(ValueError, match="lr: saved 0.01 vs given 0.5"):
        _run(tmp_path, seed_before_init=0, resume=True, lr=0.5)
    with pytest.raises(FileExistsError, match="resume=True"):
        _run(tmp_path, seed_before_init=0)


def test_non_finite_loss_is_reported():
    model = nn.Linear(2, 1)

    def loss_fn(m, batch, g):
        return m(batch).sum() * float("nan")
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        train(model, loss_fn, torch.randn(10, 2),
              TrainConfig(steps=5, batch_size=4, log_every=5, progress=False))


def test_config_and_data_validation():
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="same first dimension"):
        train(nn.Linear(2, 1), lambda m, b, g: m(b[0]).sum(),
              (torch.randn(5, 2), torch.randn(4)), TrainConfig(steps=1, progress=False))


def test_batch_sampler_covers_each_epoch_once():
    s = BatchSampler(10, 4, seed=0)
    first = torch.cat([s.next() for _ in range(5)])  # 20 indices = 2 epochs
    assert sorted(first[:10].tolist()) == list(range(10))
    assert sorted(first[10:].tolist()) == list(range(10))
    state = s.state_dict()
    nxt = s.next()
    s2 = BatchSampler(10, 4, seed=99)
    s2.load_state_dict(state)
    assert torch.equal(s2.next(), nxt)


def test_ema_update_warmup_and_swap():
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    ema = EMA(model, decay=0.9, warmup=False)
    w0 = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.model.weight, 0.9 * w0 + 0.1 * (w0 + 1.0))
    with ema.swapped(model):
        assert torch.equal(model.weight, ema.model.weight)
    assert torch.equal(model.weight, w0 + 1.0)
    warm = EMA(model, decay=0.999)
    assert warm.current_decay() == pytest.approx(0.1)
    state = ema.state_dict()
    other = EMA(nn.Linear(3, 1), decay=0.5)
    other.load_state_dict(state)
    assert other.decay == 0.9 and other.num_updates == 1
    assert torch.equal(other.model.weight, ema.model.weight)
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)


def test_digits_unet_dsm_training_composes(tmp_path):
    """Data + dequantisation + U-Net + DSM loss + loop + checkpoint fit together."""
    from dynamics import VPSDE
    from generative.data import dequantize_transform, load_digits
    from generative.losses import make_dsm_loss
    from generative.nets import UNet

    d = load_digits()
    torch.manual_seed(0)
    net = UNet(image_size=8, base_channels=16, num_res_blocks=1, num_classes=10)
    cfg = TrainConfig(steps=3, batch_size=16, log_every=1, progress=False)
    res = train(net, make_dsm_loss(VPSDE()), (d.train, d.train_labels), cfg, out_dir=tmp_path,
                transform=dequantize_transform(d.levels), meta={"data": "digits"})
    assert res.step == 3 and math.isfinite(res.metrics["loss"])
    assert load_checkpoint(tmp_path / "checkpoint.pt")["meta"] == {"data": "digits"}


@pytest.mark.gpu
def test_resume_is_exact_on_cuda(tmp_path):
    def run(out, seed, crash_at=None, resume=False):
        torch.manual_seed(seed)
        return train(_net(), _loss(crash_at), _data(), _config(), out_dir=out,
                     resume=resume, device="cuda")
    ref = run(tmp_path / "ref", 0)
    with pytest.raises(Crash):
        run(tmp_path / "cut", 0, crash_at=26)
    res = run(tmp_path / "cut", 1, resume=True)
    for a, b in zip(ref.model.parameters(), res.model.parameters()):
        assert a.is_cuda and torch.equal(a, b)
