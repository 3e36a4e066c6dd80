VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

SERVE_ARGS ?=

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
	rm -rf $(VENV) build *.egg-info src/*.egg-info
