# linmnist: every target that needs the environment depends on .venv/.stamp,
# so `make test` or `make report` on a fresh clone sets itself up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.stamp
JOBS   ?= 2
DATASET ?= mnist
CONFIG ?=
EXECUTOR ?= local
SCHEDULER ?=
# A matplotlib font cache of this environment's own: a cache shared through $HOME can point
# at another installation's fonts, and its "findfont" warnings would reach notebook outputs.
export MPLCONFIGDIR := $(CURDIR)/$(VENV)/matplotlib

.PHONY: setup data run sweep test test-fast bench lint lab report clean lock

setup: $(STAMP)

# Re-runs only when the dependency files change.
$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e '.[frameworks,dev]'
	$(PY) -m ipykernel install --sys-prefix --name linmnist --display-name "linmnist (.venv)" > /dev/null
	touch $(STAMP)

# Regenerate the pinned versions from the current environment (maintainers only).
lock: $(STAMP)
	$(PY) -m pip install --quiet -c requirements.lock -e '.[frameworks,dev,lab]'
	$(PY) -m pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

data: $(STAMP)
	$(PY) -m linmnist data --name $(DATASET)

run: $(STAMP)
	$(PY) -m linmnist run --jobs $(JOBS) --dataset $(DATASET) $(if $(CONFIG),--config $(CONFIG))

# The stability sweep (linmnist/grids.toml [stability]): about 4.5 minutes on 2 cores with JOBS=2.
sweep: $(STAMP)
	$(PY) -m linmnist run --task stability --jobs $(JOBS) --dataset $(DATASET) $(if $(SCHEDULER),--executor dask --scheduler $(SCHEDULER),--executor $(EXECUTOR)) $(if $(CONFIG),--config $(CONFIG))

test: $(STAMP)
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q --nbval --nbval-sanitize-with notebooks/sanitize.cfg --nbval-kernel-name linmnist notebooks

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not integration and not browser" tests

bench: $(STAMP)
	$(PY) -m linmnist.engine.bench

lint: $(STAMP)
	$(BIN)/ruff check linmnist tests
	$(BIN)/ruff format --check linmnist tests

lab: $(STAMP)
	$(PY) -m pip install --quiet -c requirements.lock -e '.[lab]'
	$(BIN)/jupyter lab notebooks

report: $(STAMP)
	$(PY) -m linmnist report --jobs $(JOBS) --dataset $(DATASET) $(if $(CONFIG),--config $(CONFIG)) $(if $(SWEEP),--sweep)

clean:
	rm -rf reports/runs reports/runs-* reports/fashion-mnist reports/report.* reports/*.png .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
