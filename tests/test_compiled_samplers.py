"""The samplers' compiled inner loop (`generative.samplers.compiled`): ``sample(...,
compile=...)`` with dynamo's ``eager`` backend and ``fullgraph=True`` (a graph break in a
step is an error) gives the eager sampler's samples and NFE, and compiles once per shape.

Agreement: the traced steps run the same ops (float64): results agree to rounding; we allow
inductor's possible reassociation, ~ops * n_steps * 1.1e-16 relative (< 1e-12 here).
"""
import pytest
import torch

from dynamics import VPSDE, GaussianMixture
from generative.errors import InputError
from generative.samplers import sample
from solvers import CompileOptions

GM = GaussianMixture([0.3, 0.7], [[-2.0, 0.0], [1.5, 1.0]],
                     [[[0.3, 0.0], [0.0, 0.2]], [[0.5, 0.2], [0.2, 0.4]]])
F64 = torch.float64
SDE = VPSDE()
SCORE = GM.score_fn(SDE)  # one score function: the same problem for the program cache


class Counting:
    """A dynamo backend counting the graphs it compiles."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


def _run(name, compile=False, noise=None, callback=None, **kw):
    return sample(name, SDE, SCORE, (32, 2), n_steps=8, dtype=F64,
                  generator=torch.Generator().manual_seed(0), noise=noise,
                  seed=None if noise is None else 3, callback=callback, compile=compile, **kw)


@pytest.mark.parametrize("name, kw, noise", [
    ("ddim", {}, None),
    ("ddim", {"eta": 1.0}, None),          # one draw per step, from the generator
    ("ddim", {"eta": 0.5}, "indexed"),
    ("em", {}, "brownian"),
    ("dpmpp_2s", {}, None),
    ("dpmpp_2m", {}, None),                # multistep: the carried denoiser
])
def test_compiled_sampler_equals_eager(name, kw, noise):
    seen = {}

    def callback(i, t, x, denoised):       # sees every grid point in both loops
        seen.setdefault(i, []).append(x)
    eager = _run(name, noise=noise, callback=callback, **kw)
    comp = _run(name, CompileOptions(backend="eager"), noise=noise, callback=callback, **kw)
    scale = float(eager.x.abs().max())
    assert float((comp.x - eager.x).abs().max()) <= 1e-12 * scale
    assert comp.nfe == eager.nfe
    assert sorted(seen) == list(range(9)) and all(len(v) == 2 for v in seen.values())


def test_compiled_sampler_compiles_once_per_shape():
    counting = Counting()
    opts = CompileOptions(backend=counting)
    _run("dpmpp_2m", opts)
    first = counting.graphs
    assert first == 1
    _run("dpmpp_2m", opts)    # same problem and shapes: the cached program, no compile
    assert counting.graphs == first


def test_callback_replacing_the_state_is_honoured():
    def pin(i, t, x, denoised):
        return torch.zeros_like(x) if i == 4 else None
    eager = _run("ddim", callback=pin)
    comp = _run("ddim", CompileOptions(backend="eager"), callback=pin)
    assert float((comp.x - eager.x).abs().max()) <= 1e-12 * float(eager.x.abs().max())


def test_samplers_without_a_compiled_loop_are_refused():
    with pytest.raises(InputError, match="compile"):
        _run("lms", CompileOptions(backend="eager"))
    with pytest.raises(InputError, match="cuda_graphs"):
        _run("ddim", CompileOptions(backend="eager", cuda_graphs=True))
