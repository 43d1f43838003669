"""Training faults: divergence keeps the last good checkpoint; bad output directories
fail before training starts."""
import importlib

import pytest
import torch
from torch import nn

from generative.checkpoint import load_checkpoint
from generative.train import TrainConfig, train

train_mod = importlib.import_module("generative.train")  # the module, not the function


def _diverging_loss(nan_from_step):
    calls = {"n": 0}

    def loss_fn(model, batch, generator):
        calls["n"] += 1
        loss = (model(batch) ** 2).mean()
        return loss * float("nan") if calls["n"] >= nan_from_step else loss
    return loss_fn


@pytest.mark.parametrize("log_every", [4, 7])  # 7: checkpoints fall between log steps
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, log_every):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    cfg = TrainConfig(steps=40, batch_size=8, log_every=log_every, ckpt_every=4, lr=1e-2,
                      progress=False)
    with pytest.raises(FloatingPointError, match=r"non-finite loss .* before step \d+"):
        train(model, _diverging_loss(nan_from_step=14), torch.randn(64, 3), cfg,
              out_dir=tmp_path)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] <= 13  # written before the first NaN step
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_unwritable_output_dir_fails_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    calls = []

    def loss_fn(model, batch, generator):
        calls.append(1)
        return model(batch).sum()
    with pytest.raises(OSError, match="not writable"):
        train(nn.Linear(2, 1), loss_fn, torch.randn(8, 2),
              TrainConfig(steps=3, batch_size=4, progress=False), out_dir=blocker / "run")
    assert not calls


def test_full_disk_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(train_mod.shutil, "disk_usage",
                        lambda path: type("U", (), {"free": 10})())
    with pytest.raises(OSError, match=r"MiB free but a checkpoint needs"):
        train(nn.Linear(2, 1), lambda m, b, g: m(b).sum(), torch.randn(8, 2),
              TrainConfig(steps=3, batch_size=4, progress=False), out_dir=tmp_path / "run")
