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
PROFILE ?=
EXECUTOR ?= local
SCHEDULER ?=
# A matplotlib font cache of this environment's own: a cache shared through $HOME can point
# at another installation's fonts, and its "findfont" warnings would reach notebook outputs.
export MPLCONFIGDIR := $(CURDIR)/$(VENV)/matplotlib

.PHONY: setup data run sweep status test test-fast bench lint lab report clean lock

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

BUILD_ARGS = --dataset $(DATASET) $(if $(PROFILE),--profile $(PROFILE)) $(if $(CONFIG),--config $(CONFIG))
RUN_ARGS = --jobs $(JOBS) $(if $(SCHEDULER),--executor dask --scheduler $(SCHEDULER),--executor $(EXECUTOR))

data: $(STAMP)
	$(PY) -m linmnist data --name $(DATASET)

# The experiment products only (grid cells, stability sweep, framework comparison).
run: $(STAMP)
	$(PY) -m linmnist run grid subset stability edge frameworks scaling theory sizes $(BUILD_ARGS) $(RUN_ARGS)

# The stability sweep alone (it is part of `make report` too).
sweep: $(STAMP)
	$(PY) -m linmnist run stability $(BUILD_ARGS) $(RUN_ARGS)

# Every product of the build and whether it is up to date; runs nothing.
status: $(STAMP)
	$(PY) -m linmnist status $(BUILD_ARGS)

# The tests run in two pytest-xdist workers of one BLAS thread each. Python writes the
# bytecode of the modules pytest rewrites, whatever PYTHONDONTWRITEBYTECODE says, so that each
# worker does not compile them again; nbval's plugin is loaded for the notebooks only.
PYTEST = PYTHONDONTWRITEBYTECODE= OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 -p no:nbval

# nbval compares the notebooks with their stored outputs, those of the small build.
test: $(STAMP)
	bash tools/system-packages
	$(PYTEST) tests
	$(PY) -m linmnist run grid subset stability edge frameworks scaling theory sizes --profile small --jobs $(JOBS) --no-progress
	$(PY) -m pytest -q -n 2 --dist loadscope --nbval --nbval-sanitize-with notebooks/sanitize.cfg --nbval-kernel-name linmnist notebooks

# numpy's huge-page advice off: the tests' many first touches of fresh arrays cost less
# kernel time in 4 KiB pages (the builds keep the advice, for their large products).
test-fast: $(STAMP)
	NUMPY_MADVISE_HUGEPAGE=0 $(PYTEST) -m "not integration and not browser and not slow" tests

bench: $(STAMP)
	$(PY) -m linmnist bench

# The same three checks as .pre-commit-config.yaml.
lint: $(STAMP)
	$(BIN)/ruff check linmnist tests notebooks
	$(BIN)/ruff format --check linmnist tests notebooks
	$(PY) -m mypy

lab: $(STAMP)
	$(PY) -m pip install --quiet -c requirements.lock -e '.[lab]'
	$(BIN)/jupyter lab notebooks

report: $(STAMP)
	$(PY) -m linmnist report $(BUILD_ARGS) $(RUN_ARGS)

clean:
	rm -rf reports/results reports/notebooks reports/mnist reports/fashion-mnist reports/report.* reports/*.png reports/report-sections reports/.lock reports/runs.jsonl .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
