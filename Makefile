# Both `make test` and `make demo` set up .venv on first use (fresh machine, nothing installed).
TORCH_VERSION ?= 2.13.0
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sdeflow-installed
PYTEST_WORKERS ?= 2

.PHONY: install test slow bench demo lint clean peers

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m "not slow and not gpu" tests

slow: $(STAMP)
	$(PY) -m pytest -q -m "slow" tests

bench: $(STAMP)
	$(PY) -m benchmarks.ode_speed --out results/ode_speed
	$(PY) -m benchmarks.sde_speed --out results/sde_speed
	$(PY) -m benchmarks.adjoint_memory --out results/adjoint_memory
	$(PY) -m benchmarks.divergence_speed --out results/divergence_speed
	$(PY) -m benchmarks.nfe_vs_fid --out results/nfe_vs_fid
	$(PY) -m benchmarks.guidance --out results/guidance
	$(PY) -m benchmarks.rnode_nfe --out results/rnode_nfe
	$(PY) -m benchmarks.flow_matching_nfe --out results/flow_matching_nfe
	$(PY) -m benchmarks.scaling --out results/scaling
	$(PY) -m benchmarks.stiff --out results/stiff
	$(PY) -m benchmarks.step_control --out results/step_control
	$(PY) -m benchmarks.inverse_oracle --out results/inverse_oracle
	$(PY) -m benchmarks.inverse_colour --out results/inverse_colour

demo: $(STAMP)
	$(PY) -m generative.cli demo

# torchdiffeq's own test suite against solvers.compat.torchdiffeq (~5-15 min; not in `test`)
PEER_SUITES ?= ../shared/peer-suites
peers: $(STAMP)
	@test -x $(PEER_SUITES)/run || { echo "no peer suites at $(PEER_SUITES) (set PEER_SUITES=)"; exit 1; }
	$(PEER_SUITES)/run torchdiffeq
	$(PEER_SUITES)/run torchsde

lint: $(STAMP)
	$(PY) -m flake8 solvers dynamics generative benchmarks tests

clean:
	rm -rf $(VENV) results .pytest_cache .hypothesis
