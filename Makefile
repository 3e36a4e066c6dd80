VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

DEMO_REPO ?= demo-repo

.PHONY: install test test-slow lint typecheck serve clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test,torch]'
	touch $(STAMP)

install: $(STAMP)

test: install
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q

test-slow: install
	$(VENV)/bin/pytest -q -m slow

# The network server (OIP over HTTP/gRPC) is not built yet (issue 5). Until it is, `make serve`
# prepares the demo model repository and runs the scheduler on a simulated cluster.
serve: install
	@test -f $(DEMO_REPO)/.created || ( $(VENV)/bin/clockwork models create $(DEMO_REPO) \
		--arch mobilenet_v2 --copies 4 --seed 1 --resolution 64 --overwrite \
		&& touch $(DEMO_REPO)/.created )
	$(VENV)/bin/clockwork models list $(DEMO_REPO)
	@echo "clockwork serve (the HTTP/gRPC front door) is not built yet; running a 20 s simulation"
	$(VENV)/bin/clockwork sim --workload poisson --models 100 --gpus 2 --duration 20 \
		--load-factor 0.4 --out runs/demo

lint: install
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench

typecheck: install
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
