"""Data-parallel training, sharded sampling and merged statistics on 2 CPU processes (gloo).

Jobs run `tests/dist_worker.py` in 2 processes on localhost (a free port each time; the
elastic test goes through torchrun). Two processes compute the same global-batch mean
gradient as one process, only summed in a different order: float32 round-off (~1e-7
relative) is all that separates them, and after a dozen AdamW steps of size ~lr the
weights agree to ~1e-6. The two ranks themselves hold bit-identical weights (both apply the
same all-reduced gradient).
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import dist_worker as worker
from fid_tolerance import DIGITS_FEATURE_REL_ERR, frechet_roundoff_bound
from generative.checkpoint import load_checkpoint
from generative.cli import main
from generative.distributed import DistContext, gather_feature_stats
from generative.metrics import FeatureMoments, feature_stats
from generative.train import CHECKPOINT_NAME, TrainConfig, train

WORKER = str(Path(worker.__file__).resolve())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            **extra}


def _wait(procs, logs, timeout=120.0, grace=15.0):
    """Wait for all processes; once one has failed, kill those still running ``grace``
    seconds later (a hung collective), and all of them after ``timeout``."""
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        if any(p.poll() not in (None, 0) for p in procs):
            deadline = min(deadline, time.monotonic() + grace)
        time.sleep(0.05)
    for p in procs:
        if p.poll() is None:  # kill its whole session: torchrun's workers too
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    return [p.returncode for p in procs], [log.read_text() for log in logs]


def _launch(task: str, out: Path, world: int = 2):
    """Run the worker in ``world`` processes with torchrun's environment variables."""
    out.mkdir(parents=True, exist_ok=True)
    port = str(_free_port())
    logs = [out / f"rank{r}.log" for r in range(world)]
    procs = [subprocess.Popen([sys.executable, WORKER, task, str(out)],
                              stdout=open(logs[r], "w"), stderr=subprocess.STDOUT,
                              start_new_session=True,
                              env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(world),
                                       MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
             for r in range(world)]
    return _wait(procs, logs)


def _result(task: str, out: Path):
    codes, logs = _launch(task, out)
    assert codes == [0, 0], "\n".join(logs)
    return torch.load(out / "result.pt", weights_only=False)


def _log(text: str):
    return [{k: v for k, v in json.loads(line).items() if k != "time"}
            for line in text.splitlines()]


# --------------------------------------------------------------------------- in-process units

def test_shards_tile_the_range():
    for n in (0, 1, 5, 11, 64):
        for world in (1, 2, 3, 8):
            shards = [DistContext(rank=r, world_size=world).shard(n) for r in range(world)]
            assert [i for s in shards for i in s] == list(range(n))
            assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_global_batch_must_divide_over_ranks():
    with pytest.raises(ValueError, match=r"batch_size \(10\) must be divisible .*world size 3"):
        train(torch.nn.Linear(2, 1), lambda m, b, g: m(b).mean(), torch.randn(20, 2),
              TrainConfig(steps=1, batch_size=10, progress=False),
              distributed=DistContext(rank=0, world_size=3))


def test_distributed_flag_outside_torchrun_is_a_clear_error(tmp_path, monkeypatch, capsys):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    code = main(["train", "--data", "moons", "--steps", "1", "--out", str(tmp_path),
                 "--no-progress", "--distributed"])
    assert code == 2
    assert "torchrun" in capsys.readouterr().err


def test_feature_moments_merge_exactly():
    f = worker.all_features()
    parts = [f[:0], f[:1], f[1:40], f[40:]]
    merged = FeatureMoments.of(parts[0])
    for p in parts[1:]:
        merged = merged.merge(FeatureMoments.of(p))
    mean, cov = merged.stats()
    ref_mean, ref_cov = feature_stats(f)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gather_feature_stats(f)[1], ref_cov, rtol=1e-12)


# --------------------------------------------------------------------------- 2 processes

def test_two_processes_train_like_one(tmp_path):
    """Score model (DSM), flow matching and FFJORD: 2 ranks x 16 examples == 1 x 32."""
    rank0, rank1 = _result("kinds", tmp_path / "two")
    for kind in worker.KINDS:
        ref = worker.train_summary(worker.train_job(kind, tmp_path / kind), tmp_path / kind)
        two, one = rank0[kind], rank1[kind]
        for part in ("model", "ema"):  # the ranks agree bit for bit
            assert all(torch.equal(v, one[part][k]) for k, v in two[part].items()), kind
        diff = max(float((two["model"][k] - v).abs().max()) for k, v in ref["model"].items())
        assert diff < 1e-5, (kind, diff)
        assert two["log"] == one["log"]  # rank 1 read rank 0's file
        got, want = _log(two["log"]), _log(ref["log"])
        assert [r["step"] for r in got] == [r["step"] for r in want] == [4, 8, 12]
        for a, b in zip(got, want):
            assert a.keys() == b.keys(), kind
            for k in a:
                assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), (kind, k, a, b)


def test_sharded_sampling_and_merged_frechet_statistics(tmp_path):
    shards = _result("eval", tmp_path)
    full = shards[0]["gathered"]
    assert full.shape == (worker.N_SAMPLES, 2) and shards[1]["gathered"] is None
    assert [len(s["shard"]) for s in shards] == [6, 5]  # chunks of 3: two per rank
    assert torch.equal(full, torch.cat([s["shard"] for s in shards]))
    assert len(torch.unique(full, dim=0)) == worker.N_SAMPLES  # no duplicated rows
    assert torch.equal(full, worker.sample_job())  # independent of the number of processes

    assert shards[1]["stats"] is None
    mean, cov = shards[0]["stats"]
    ref_mean, ref_cov = feature_stats(worker.all_features())
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-12, atol=1e-12)
    # the CLI's `sample --fid`: each rank featurises its share (12 + 11 of 23 digits), rank 0
    # merges. The float32 features of a row may depend on the batch split (another kernel):
    # bounded by DIGITS_FEATURE_REL_ERR * max|feature| each, and the float64 statistics path
    # differs (merged moments vs one set), amplified by sqrtm of a rank-22 covariance product:
    # both in fid_tolerance (~5e-5 relative here; observed 1.5e-8 with every row featurised
    # alone). A wrong merge (a shard dropped or counted twice, biased shard covariances)
    # moves d by >= 1e-2 relative.
    assert shards[1]["fid"] is None
    want = worker.digits_fid_job()
    f_gen = worker.digits_fid_features().double()
    f_ref = worker.digits_reference_features().double()
    tol = frechet_roundoff_bound(f_gen, f_ref, want, feature_err=DIGITS_FEATURE_REL_ERR
                                 * float(f_gen.abs().max()))
    assert abs(shards[0]["fid"] - want) <= tol, (shards[0]["fid"], want, tol)


def test_rank0_failure_stops_every_rank(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / CHECKPOINT_NAME).write_bytes(b"an earlier run")
    codes, logs = _launch("exists", tmp_path)
    assert codes == [1, 1], "\n".join(logs)  # both exit on their own; none is killed hanging
    assert all("FileExistsError" in log for log in logs), "\n".join(logs)
    if sys.version_info >= (3, 11):  # exception notes
        assert "raised on rank 0; this is rank 1" in logs[1]


def test_elastic_restart_resumes_from_the_last_checkpoint(tmp_path):
    """Rank 1 is SIGKILLed at step 7 of torchrun's first attempt; torchrun restarts both
    workers, which resume from the step-6 checkpoint and end bit-identical to a run that was
    never interrupted."""
    ref = _result("score", tmp_path / "plain")
    out = tmp_path / "elastic"
    out.mkdir()
    log = out / "torchrun.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "--max-restarts", "1", "--monitor-interval", "0.1", WORKER, "score", str(out)],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
        env=_env(SDEFLOW_TEST_KILL_AT_STEP="7"))
    (code,), (text,) = _wait([proc], [log], timeout=180)
    assert code == 0, text
    assert (out / "attempts.txt").read_text().split("\n")[:2] == ["0 0", "1 6"]
    got, want = (load_checkpoint(d / "run" / CHECKPOINT_NAME)
                 for d in (out, tmp_path / "plain"))
    assert got["step"] == worker.CONFIG["steps"]
    _assert_identical(got, want)  # weights, EMA, optimiser, sampler, RNG, log accumulators
    assert _log(ref[0]["log"]) == _log((out / "run" / "metrics.jsonl").read_text())


def _assert_identical(a, b, where="checkpoint"):
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_identical(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where
