VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

SERVE_ARGS ?=

COMPILED_VENV ?= .venv-compiled
CPY := $(COMPILED_VENV)/bin/python
CSTAMP := $(COMPILED_VENV)/.installed

.PHONY: install install-compiled test test-compiled test-slow test-ray lint typecheck serve clean

# under a lock (scripts/run-once.sh): `make serve` and `make test` started together install once
$(STAMP): pyproject.toml
	scripts/run-once.sh $(STAMP) pyproject.toml sh -c '\
		test -x $(PY) || python3 -m venv $(VENV); \
		$(PIP) install --quiet --upgrade pip && \
		$(PIP) install --quiet -e ".[test,torch]"'

install: $(STAMP)

# The same package with the scheduler core and simulator compiled by mypyc (setup.py lists the
# modules), in its own environment so that .venv's editable install stays pure Python.
$(CSTAMP): pyproject.toml setup.py mypyc_modules.txt $(shell find src -name '*.py')
	test -x $(CPY) || python3 -m venv $(COMPILED_VENV)
	$(COMPILED_VENV)/bin/pip install --quiet --upgrade pip setuptools wheel 'mypy>=1.10'
	# mypyc type-checks against the dependencies, so they go in first (with a pure build)
	$(COMPILED_VENV)/bin/pip install --quiet '.[test]'
	CLOCKWORK_COMPILE=1 $(COMPILED_VENV)/bin/pip install --quiet --no-build-isolation --no-deps \
		--force-reinstall .
	touch $(CSTAMP)

install-compiled: $(CSTAMP)

test: install
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

test-slow: install
	$(VENV)/bin/pytest -q -m slow

# the Ray cluster (clockwork.cluster_ray) on a multi-node Ray cluster simulated on this machine;
# installs the optional extra into .venv first
test-ray: install
	$(PIP) install --quiet -e ".[ray]"
	$(VENV)/bin/pytest -q -m ray tests/cluster_ray

# the compiled build against the tests of what it compiles (the golden simulation among them)
test-compiled: install-compiled
	CLOCKWORK_EXPECT_COMPILED=1 $(CPY) -m pytest -q -p no:cacheprovider tests/test_compiled_build.py \
		tests/core tests/sim tests/worker/test_device_state.py tests/worker/test_device_state_props.py \
		tests/telemetry tests/workload

# The embedded default: controller + front door (HTTP :8000, gRPC :8001) + one local worker
# (torch on CUDA if present, else CPU) serving demo-repo/, created and profiled on first run.
serve: install
	$(VENV)/bin/clockwork serve $(SERVE_ARGS)

lint: install
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench

typecheck: install
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(COMPILED_VENV) build *.egg-info src/*.egg-info
