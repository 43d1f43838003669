"""Crash safety of training runs: temp files of killed writes are cleaned up, one trainer per
output directory (a lock with the owner's pid), resume of damaged checkpoints fails with a
message, dropout reproducible from the seed, FFJORD's logged NFE identical after a resume."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from generative.checkpoint import (CheckpointCorruptError, RunLock, RunLockedError,
                                   load_checkpoint, remove_stale_temp_files, save_checkpoint)
from generative.data import load_data
from generative.models import make_meta, train_model
from generative.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


def _popen(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 120):
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def moons():
    return load_data("moons", n_train=128, n_test=32)


def _config(steps, **kw):
    return TrainConfig(**{"steps": steps, "batch_size": 16, "log_every": 1, "ckpt_every": 1,
                          "progress": False, **kw})


# --------------------------------------------------------------------------- temp files

def test_temp_files_of_killed_writers_are_removed_by_the_next_save(tmp_path):
    target = tmp_path / "checkpoint.pt"
    killed = """
        import os, sys, torch
        from generative import checkpoint as c
        def dying_save(obj, fh):
            fh.write(b"PK partial"); fh.flush(); os._exit(9)
        c.torch.save = dying_save
        c.save_checkpoint(sys.argv[1], {"step": 1})
    """
    for n in (1, 1):  # real writers killed mid-write (os._exit: no cleanup runs); each
        proc = _popen(killed, str(target))  # save first removes the dead writer's before it
        _finish(proc)
        assert proc.returncode == 9 and len(list(tmp_path.glob(".checkpoint.pt.*.tmp"))) == n
    dead = _dead_pid()
    for i in range(10):  # more of the same, as the names a dead writer leaves
        (tmp_path / f".checkpoint.pt.{dead}.{i:08x}.tmp").write_bytes(b"PK torn")
    assert len(list(tmp_path.glob(".checkpoint.pt.*.tmp"))) == 11
    live = tmp_path / f".checkpoint.pt.{os.getpid()}.0000live.tmp"  # a writer still running
    live.write_bytes(b"in flight")
    other = tmp_path / f".other.pt.{dead}.00000000.tmp"  # another checkpoint's: not ours
    other.write_bytes(b"x")
    save_checkpoint(target, {"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["checkpoint.pt", live.name, other.name])
    assert load_checkpoint(target)["step"] == 2


def test_pidless_temp_files_of_older_versions_go_once_older_than_the_checkpoint(tmp_path):
    target = save_checkpoint(tmp_path / "c.pt", {"step": 1})
    legacy = tmp_path / ".c.pt.abc_123x.tmp"  # mkstemp-style name, no pid
    legacy.write_bytes(b"torn")
    past = target.stat().st_mtime - 60
    os.utime(legacy, (past, past))
    assert remove_stale_temp_files(target) == [legacy] and not legacy.exists()


def test_a_trainer_killed_mid_run_leaves_a_resumable_directory(tmp_path):
    """SIGKILL a training process after its first checkpoints (a write may be in flight),
    then resume: no temp file stays behind, the dead trainer's lock is taken over, and the
    run finishes."""
    out = tmp_path / "run"
    code = """
        import sys, torch
        from torch import nn
        from generative.train import TrainConfig, train
        torch.manual_seed(0)
        train(nn.Linear(4, 4), lambda m, b, g: (m(b) ** 2).mean(), torch.randn(64, 4),
              TrainConfig(steps=100000, batch_size=8, log_every=1, ckpt_every=1,
                          progress=False), out_dir=sys.argv[1])
    """
    proc = _popen(code, str(out))
    try:
        deadline = time.monotonic() + 60
        while not (out / "checkpoint.pt").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert (out / ".train.lock").read_text().strip() == str(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    step = load_checkpoint(out / "checkpoint.pt")["step"]
    torch.manual_seed(0)
    res = train(nn.Linear(4, 4), lambda m, b, g: (m(b) ** 2).mean(), torch.randn(64, 4),
                TrainConfig(steps=step + 3, batch_size=8, log_every=1, ckpt_every=1,
                            progress=False), out_dir=out, resume=True)
    assert res.step == step + 3
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.jsonl"]
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == step + 3


# --------------------------------------------------------------------------- lock

HOLD_LOCK = """
    import sys, time
    from generative.checkpoint import RunLock
    lock = RunLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(120)
"""


def _linear_run(out, **kw):
    torch.manual_seed(0)
    return train(nn.Linear(2, 2), lambda m, b, g: (m(b) ** 2).mean(), torch.randn(32, 2),
                 _config(3), out_dir=out, **kw)


def test_a_second_trainer_on_the_same_directory_is_refused_with_the_owner_pid(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = _popen(HOLD_LOCK, str(out))
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError) as info:
            _linear_run(out)
        msg = str(info.value)
        assert f"pid {holder.pid}" in msg and str(out / ".train.lock") in msg
        assert "in use by another training process" in msg
        assert not (out / "checkpoint.pt").exists()
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.communicate(timeout=30)
    assert _linear_run(out).step == 3  # the dead holder's lock is free
    assert not (out / ".train.lock").exists()


def test_a_stale_lock_file_with_a_dead_pid_is_recovered(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".train.lock").write_text(f"{_dead_pid()}\n")
    assert _linear_run(out).step == 3


def test_lock_is_exclusive_within_a_process_and_released_on_errors(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    with pytest.raises(ValueError, match="loss_fn must return a scalar"):
        train(nn.Linear(2, 2), lambda m, b, g: m(b), torch.randn(8, 2), _config(2),
              out_dir=tmp_path)
    with RunLock(tmp_path):  # free again after the failed run
        pass


def test_cli_second_trainer_exits_2_naming_the_lock(tmp_path, capsys):
    from generative.cli import main
    out = tmp_path / "run"
    out.mkdir()
    holder = _popen(HOLD_LOCK, str(out))
    try:
        assert holder.stdout.readline().strip() == "locked"
        code = main(["train", "--data", "moons", "--steps", "2", "--batch-size", "16",
                     "--width", "8", "--depth", "1", "--out", str(out), "--no-progress"])
        err = capsys.readouterr().err
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.communicate(timeout=30)
    assert code == 2 and "Traceback" not in err
    assert f"sdeflow: error: {str(out)!r} is in use by another training process (pid " \
           f"{holder.pid}, lock file {str(out / '.train.lock')!r})" in err
    assert not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text()


# --------------------------------------------------------------------------- damaged resume

@pytest.mark.parametrize("edit,message", [
    (lambda s: s.pop("optimizer"), r"state\['optimizer'\] must be a dict; got nothing"),
    (lambda s: s.update(step="abc"), r"state\['step'\] must be an int >= 0; got 'abc'"),
    (lambda s: s.update(acc={"loss": 1.0}), r"state\['acc'\] must map names to tensors"),
    (lambda s: s["sampler"].update(n="x"), r"state\['sampler'\] does not fit this run"),
    (lambda s: s["model"].update({"weight": torch.zeros(5)}),
     r"state\['model'\] does not fit this run \(Error\(s\) in loading"),
])
def test_resuming_a_damaged_checkpoint_names_the_part(tmp_path, edit, message):
    out = tmp_path / "run"
    _linear_run(out)
    state = load_checkpoint(out / "checkpoint.pt")
    edit(state)
    save_checkpoint(out / "checkpoint.pt", state)
    with pytest.raises(CheckpointCorruptError, match=message) as info:
        _linear_run(out, resume=True)
    assert str(out / "checkpoint.pt") in str(info.value)


# --------------------------------------------------------------------------- randomness

def _dropout_losses(moons, seed, steps=6, junk=3, out=None, resume=False):
    torch.randn(junk)  # the caller's global RNG state must not matter
    meta = make_meta("score", moons, net_kwargs={"width": 16, "depth": 1, "dropout": 0.5})
    losses = []
    res = train_model(moons, meta, _config(steps, seed=seed, ckpt_every=3), out,
                      resume=resume, on_log=lambda r: losses.append(r["loss"]))
    return losses, res


def test_dropout_is_reproducible_from_the_seed(moons, tmp_path):
    a, _ = _dropout_losses(moons, 0, junk=3)
    b, _ = _dropout_losses(moons, 0, junk=0)
    c, _ = _dropout_losses(moons, 1)
    assert a == b and a != c
    state = torch.get_rng_state()  # a run does not consume the caller's global generator
    _dropout_losses(moons, 0, junk=0)
    assert torch.equal(torch.get_rng_state(), state)
    # resumed halfway: the same trajectory and weights as straight through
    straight, res = _dropout_losses(moons, 0, out=tmp_path / "a")
    first, _ = _dropout_losses(moons, 0, steps=3, out=tmp_path / "b")
    rest, res2 = _dropout_losses(moons, 0, out=tmp_path / "b", resume=True)
    assert first + rest == straight
    for p, q in zip(res.model.parameters(), res2.model.parameters()):
        assert torch.equal(p, q)


def test_global_rng_draws_are_per_step_functions_of_the_seed():
    """What a loss draws from torch's global RNG (as nn.Dropout does): a new mask every step,
    the same masks for the same seed whatever the caller drew before, others for another."""
    def masks(seed, junk):
        torch.randn(junk)
        seen = []

        def loss_fn(model, batch, rng):
            seen.append(torch.nn.functional.dropout(torch.ones(64), 0.5, training=True))
            return (model(batch) ** 2).mean()
        train(nn.Linear(2, 2), loss_fn, torch.ones(16, 2), _config(4, seed=seed))
        return torch.stack(seen)
    a, b, c = masks(0, 1), masks(0, 5), masks(1, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(m.tolist()) for m in a}) == 4


# --------------------------------------------------------------------------- FFJORD resume

def _ffjord_rows(moons, out, steps, resume=False):
    meta = make_meta("ffjord", moons, net_kwargs={"width": 8, "depth": 1}, rtol=1e-3,
                     atol=1e-3)
    train_model(moons, meta, _config(steps, log_every=2, ckpt_every=2), out, resume=resume)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().split("\n")
            if line]


def test_ffjord_logged_nfe_backward_is_the_same_after_a_resume(moons, tmp_path):
    straight = _ffjord_rows(moons, tmp_path / "a", 4)
    _ffjord_rows(moons, tmp_path / "b", 2)
    resumed = _ffjord_rows(moons, tmp_path / "b", 4, resume=True)
    assert len(straight) == len(resumed) == 2
    for a, b in zip(straight, resumed):
        assert a["nfe_backward"] > 0
        assert {k: v for k, v in a.items() if k != "time"} == \
            {k: v for k, v in b.items() if k != "time"}
