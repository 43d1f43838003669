"""Atomic checkpoints: crash mid-write keeps the old file; weights_only loading; errors."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from generative import checkpoint as ckpt_mod
from generative.checkpoint import (CheckpointCorruptError, CheckpointNotFoundError,
                                   check_plain, load_checkpoint, save_checkpoint)


def _state(v: float):
    return {"model": {"w": torch.full((3,), v)}, "step": int(v), "config": {"lr": 1e-3},
            "rng": torch.get_rng_state()}


def test_roundtrip_and_plain_torch_load_weights_only(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", _state(1.0))
    state = load_checkpoint(path)
    assert torch.equal(state["model"]["w"], torch.ones(3)) and state["step"] == 1
    raw = torch.load(path, weights_only=True)  # a user can load it without sdeflow
    assert raw["state"]["config"] == {"lr": 1e-3}
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp files left


def test_exception_mid_write_keeps_old_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.pt", _state(1.0))
    before = path.read_bytes()

    def torn_save(obj, fh):
        fh.write(b"PK\x03\x04 half a zip file")
        raise OSError("disk full")
    monkeypatch.setattr(ckpt_mod.torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _state(2.0))
    assert path.read_bytes() == before
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_process_killed_mid_write_keeps_old_checkpoint(tmp_path):
    """A hard crash (no Python cleanup) in the middle of torch.save."""
    path = save_checkpoint(tmp_path / "c.pt", _state(1.0))
    script = textwrap.dedent(f"""
        import os, torch
        from generative import checkpoint as c
        real_save = torch.save
        def dying_save(obj, fh):
            fh.write(b"PK\\x03\\x04 partial")
            fh.flush()
            os._exit(17)
        c.torch.save = dying_save
        c.save_checkpoint({str(path)!r}, {{"step": 2, "model": {{"w": torch.zeros(3)}}}})
    """)
    repo_root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", script], cwd=repo_root,
                          capture_output=True, timeout=120)
    assert proc.returncode == 17, proc.stderr.decode()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "c.pt"]
    assert leftovers and all(n.endswith(".tmp") for n in leftovers)  # torn temp file only
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["model"]["w"], torch.ones(3))


def test_missing_and_corrupt_checkpoints_raise_clear_errors(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointCorruptError, match="corrupt"):
        load_checkpoint(bad)
    good = save_checkpoint(tmp_path / "good.pt", _state(1.0))
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointCorruptError):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"w": torch.ones(2)}, foreign)
    with pytest.raises(CheckpointCorruptError, match="not an sdeflow checkpoint"):
        load_checkpoint(foreign)


class Thing:
    pass


def test_unsafe_objects_are_refused_at_save_and_load(tmp_path):
    with pytest.raises(TypeError, match=r"state\['config'\]\['obj'\] is a Thing"):
        save_checkpoint(tmp_path / "x.pt", {"config": {"obj": Thing()}})
    assert not list(tmp_path.iterdir())
    # a pickle with arbitrary objects is refused by weights_only loading
    evil = tmp_path / "evil.pt"
    torch.save({"format": ckpt_mod.FORMAT, "version": 1, "state": {"f": Thing}}, evil)
    with pytest.raises(CheckpointCorruptError, match="weights_only"):
        load_checkpoint(evil)


def test_check_plain_accepts_optimizer_state():
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(net.parameters())
    net(torch.ones(1, 2)).sum().backward()
    opt.step()
    assert opt.state_dict()["state"]
    check_plain(opt.state_dict())
    with pytest.raises(TypeError, match="key of type"):
        check_plain({(1, 2): 3})
