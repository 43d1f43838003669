"""Per-example training randomness: shard-independent, deterministic, per-example only."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from generative import randomness
from generative.data import dequantize
from generative.losses import sample_time
from generative.randomness import BatchRandom


def _draws(rng, b):
    return torch.cat([rng.randn((b, 3)).flatten(1), rng.rand((b, 2)),
                      randomness.rademacher((b, 4), rng),
                      randomness.draw_probes(torch.zeros(b, 5), 2, "gaussian", rng)
                      .movedim(0, 1).flatten(1)], 1)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**40), step=st.integers(0, 10**6),
       cuts=st.lists(st.integers(1, 7), min_size=1, max_size=4))
def test_shards_concatenate_to_the_single_process_draws(seed, step, cuts):
    G = sum(cuts)
    whole = _draws(BatchRandom(seed, step, G), G)
    parts, start = [], 0
    for b in cuts:
        parts.append(_draws(BatchRandom(seed, step, b, start=start, global_size=G), b))
        start += b
    assert torch.equal(torch.cat(parts), whole)


def test_draws_depend_on_seed_step_and_draw_number():
    a = BatchRandom(0, 5, 4)
    x1, x2 = a.randn((4, 2)), a.randn((4, 2))
    assert not torch.equal(x1, x2)                                   # draw number
    assert torch.equal(BatchRandom(0, 5, 4).randn((4, 2)), x1)       # reproducible
    assert not torch.equal(BatchRandom(0, 6, 4).randn((4, 2)), x1)   # step
    assert not torch.equal(BatchRandom(1, 5, 4).randn((4, 2)), x1)   # seed


def test_draw_statistics():
    rng = BatchRandom(3, 0, 20000)
    z, u = rng.randn((20000,), dtype=torch.float64), rng.rand((20000,), dtype=torch.float64)
    r = randomness.rademacher((20000,), rng, dtype=torch.float64)
    assert abs(float(z.mean())) < 0.03 and abs(float(z.std()) - 1) < 0.03
    assert 0 <= float(u.min()) and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.01
    assert set(r.unique().tolist()) == {-1.0, 1.0} and abs(float(r.mean())) < 0.03


def test_stratified_times_are_one_per_global_slot_across_shards():
    G = 8
    ts = torch.cat([sample_time(4, 0.0, 1.0, like=torch.zeros(1), stratified=True,
                                generator=BatchRandom(0, 1, 4, start=s, global_size=G))
                    for s in (0, 4)])
    slots = torch.floor(ts * G).long()
    assert torch.equal(slots, torch.arange(G))


def test_dequantize_accepts_batch_random_and_generator():
    x = torch.zeros(6, 2)
    a = dequantize(x, 17, BatchRandom(0, 0, 6))
    b = dequantize(x, 17, torch.Generator().manual_seed(0))
    assert a.shape == b.shape == x.shape and float(a.abs().max()) <= 1 / 16


def test_bad_shapes_and_rows_are_clear_errors():
    with pytest.raises(ValueError, match="first dimension must be the batch size 4"):
        BatchRandom(0, 0, 4).randn((3, 2))
    with pytest.raises(ValueError, match=r"rows \[6, 10\) must lie in the global batch"):
        BatchRandom(0, 0, 4, start=6, global_size=8)
