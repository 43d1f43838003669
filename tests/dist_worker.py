"""Worker of tests/test_distributed.py, run in every process of a small job:

    python tests/dist_worker.py TASK OUT     # env RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
    python -m torch.distributed.run --nproc_per_node 2 tests/dist_worker.py TASK OUT

TASK ``score`` / ``fm`` / ``ffjord``: a short training run (checkpoints in OUT/run, resumed
if one is there); ``kinds``: the three in turn; ``eval``: sharded sampling and feature
statistics; ``exists``: a run refused by rank 0 (OUT/run/checkpoint.pt exists).
Rank 0 saves what the test compares to OUT/result.pt. The same functions give the test's
single-process references.

Test-only fault: with ``SDEFLOW_TEST_KILL_AT_STEP=k`` rank 1 SIGKILLs itself as it starts
step k, on torchrun's first attempt only (``TORCHELASTIC_RESTART_COUNT=0``).
"""
import gc
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, Dict

import torch

from dynamics import VPSDE
from generative.checkpoint import load_checkpoint
from generative.metrics.digits import digits_fid
from generative.generate import generate
from generative.data import load_data
from generative.distributed import (SINGLE_PROCESS, DistContext, gather_feature_stats,
                                    init_distributed)
from generative.ffjord import CNF, make_ffjord_loss
from generative.nets import ODENet
from generative.flow_matching import make_fm_loss
from generative.losses import make_dsm_loss
from generative.models import build_model, make_meta
from generative.nets import MLP
from generative.train import CHECKPOINT_NAME, METRICS_NAME, TrainConfig, TrainResult, train

CONFIG = dict(steps=12, batch_size=32, lr=3e-3, warmup_steps=2, log_every=4, ckpt_every=3,
              progress=False, seed=3)
N_SAMPLES, SAMPLE_BATCH = 11, 3  # chunks of 3, 3, 3, 2: rank 0 draws two, rank 1 two
FEATURES = (101, 5)


def toy_data() -> torch.Tensor:
    """Two Gaussian blobs in 2-D (256 points)."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-1.0, 0.5], [1.0, -0.5]])
    return centres[torch.arange(256) % 2] + 0.3 * torch.randn(256, 2, generator=g)


KINDS = ("score", "fm", "ffjord")


def build(kind: str):
    """A freshly initialised ``(model, loss_fn)`` of ``kind`` (same weights in every process)."""
    torch.manual_seed(1)
    if kind == "score":
        return MLP(2, width=32, depth=2, time_dim=16), make_dsm_loss(VPSDE())
    if kind == "fm":
        return MLP(2, width=32, depth=2, time_dim=16), make_fm_loss("linear")
    if kind == "ffjord":  # fixed steps: the solve of an example does not depend on its batch
        cnf = CNF(2, ODENet(2, hidden=(16, 16)), gradient="direct", method="rk4",
                  step_size=0.25)
        return cnf, make_ffjord_loss()
    raise ValueError(f"unknown kind {kind!r}")


def _fault_hook(loss_fn, ctx: DistContext):
    step = os.environ.get("SDEFLOW_TEST_KILL_AT_STEP")
    if step is None or ctx.rank != 1 or os.environ.get("TORCHELASTIC_RESTART_COUNT") != "0":
        return loss_fn

    def loss_or_die(model, batch, rng):
        if rng.step == int(step):
            os.kill(os.getpid(), signal.SIGKILL)
        return loss_fn(model, batch, rng)
    return loss_or_die


def train_job(kind: str, out_dir: Path, ctx: DistContext = SINGLE_PROCESS, *,
              resume: bool = True) -> TrainResult:
    """Train ``kind`` on the toy data in ``out_dir`` (resuming a checkpoint found there)."""
    model, loss_fn = build(kind)
    return train(model, _fault_hook(loss_fn, ctx), toy_data(), TrainConfig(**CONFIG),
                 out_dir=out_dir, resume=resume, distributed=ctx)


def train_summary(result: TrainResult, out_dir: Path) -> Dict[str, Any]:
    return {"model": result.model.state_dict(), "ema": result.ema.model.state_dict(),
            "log": (out_dir / METRICS_NAME).read_text()}


def sample_job(ctx: DistContext = SINGLE_PROCESS) -> torch.Tensor:
    """``N_SAMPLES`` DDIM samples of an untrained score model (this process's share)."""
    meta = make_meta("score", load_data("8gaussians"),
                     net_kwargs={"width": 16, "depth": 1, "time_dim": 8})
    torch.manual_seed(2)
    model = build_model(meta).eval()
    x, _ = generate(model, meta, N_SAMPLES, batch_size=SAMPLE_BATCH, seed=5, distributed=ctx,
                    sampler="ddim", nfe=4)
    return x


def all_features() -> torch.Tensor:
    g = torch.Generator().manual_seed(4)
    return torch.randn(FEATURES, generator=g, dtype=torch.float64) * 3 + 1


def digits_fid_job(ctx: DistContext = SINGLE_PROCESS):
    """The CLI's sharded FID of 23 held-out digits (this process's share of them)."""
    images = load_data("digits").test[:23]
    return digits_fid(images[list(ctx.shard(len(images)))], ctx)


def digits_fid_features() -> torch.Tensor:
    """Single-process features of `digits_fid_job`'s 23 digits (for its tolerance)."""
    from generative.metrics import digits_features, load_digits_classifier
    return digits_features(load_data("digits").test[:23], load_digits_classifier())


def digits_reference_features() -> torch.Tensor:
    """Features of the held-out digits `digits_fid` compares against."""
    from generative.metrics import digits_features, load_digits_classifier
    return digits_features(load_data("digits").test, load_digits_classifier())


def main(task: str, out: Path) -> None:
    torch.set_num_threads(1)
    ctx = init_distributed()
    try:
        if task == "eval":
            x = sample_job(ctx)
            mine = all_features()[list(ctx.shard(FEATURES[0]))]
            result: Any = {"shard": x, "gathered": ctx.gather_rows(x),
                           "stats": gather_feature_stats(mine, ctx), "fid": digits_fid_job(ctx)}
        elif task == "kinds":  # each kind in its own directory, one after another
            result = {kind: train_summary(train_job(kind, out / kind, ctx), out / kind)
                      for kind in KINDS}
        elif task == "exists":  # rank 0 refuses to overwrite OUT/run/checkpoint.pt
            result = train_job("score", out / "run", ctx, resume=False)
        else:
            ckpt = out / "run" / CHECKPOINT_NAME
            if ctx.is_main:  # which torchrun attempt starts from which step
                start = load_checkpoint(ckpt)["step"] if ckpt.is_file() else 0
                with open(out / "attempts.txt", "a") as fh:
                    fh.write(f"{os.environ.get('TORCHELASTIC_RESTART_COUNT', '-')} {start}\n")
            result = train_summary(train_job(task, out / "run", ctx), out / "run")
        shards = ctx.gather_object(result)
        if ctx.is_main:
            torch.save(shards, out / "result.pt")
    finally:
        ctx.close()


def run(argv) -> int:
    """`main` with its exit status; an exception's traceback is printed and its frames are freed
    before the interpreter shuts down. Frames kept alive until finalization hold tensors that gloo
    broadcast, and releasing those during interpreter teardown aborts the process (SIGABRT,
    "terminate called without an active exception") instead of exiting with status 1."""
    try:
        main(argv[1], Path(argv[2]))
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        gc.collect()  # the exception <-> frame reference cycle
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv))
