# Two commands matter: `make lab` and `make test`. Both set everything up on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEV    := $(VENV)/.installed-dev

.PHONY: lab test lint unit notebooks test-slow test-browser bench clean

# Compiled modules are cached in __pycache__ (Python's default; gitignored). Some machines, this
# one among them, set PYTHONDONTWRITEBYTECODE=1: then every pytest process rewrites and compiles
# each test module again, 6 s of CPU per process here. NO_NBVAL: the runs that collect no
# notebook skip nbval's plugin, whose imports (nbformat, jsonschema) cost 3 s of CPU per process.
unexport PYTHONDONTWRITEBYTECODE
NO_NBVAL := -p no:nbval

# pip puts uv into the venv, and uv installs the requirements: on a fresh clone here that took
# 11-15 s where pip took 50-100 s (both compile the bytecode). uv does not read pip's own
# configuration: behind an index or mirror that only pip.conf names, `make INSTALL=pip lab`
# (or test) installs with pip instead.
INSTALL ?= uv
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
ifeq ($(INSTALL),pip)
  install = $(PIP) -r $(1)
else ifeq ($(INSTALL),uv)
  install = $(PIP) uv && { $(BIN)/uv pip install --quiet --compile-bytecode \
    --python $(BIN)/python -r $(1) || { echo "uv could not install $(1). If your packages come \
    through an index or mirror that only pip.conf names, run: make INSTALL=pip $(or \
    $(MAKECMDGOALS),lab)"; exit 1; }; }
else
  $(error INSTALL is uv or pip, not '$(INSTALL)')
endif

# A venv of Python 3.10 or newer, made once.
define make-venv
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
	  { echo "Polling Lab needs Python 3.10 or newer; run e.g. 'make PYTHON=python3.11 test'."; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
endef

$(STAMP): requirements.txt pyproject.toml
	$(make-venv)
	$(call install,requirements.txt)
	@touch $@

# requirements-dev.txt includes requirements.txt: one install runs for both (a second pip run
# only to find everything already there took 12 s), and stands for $(STAMP) too.
$(DEV): requirements.txt requirements-dev.txt pyproject.toml
	$(make-venv)
	$(call install,requirements-dev.txt)
	@touch $(STAMP) $@

## make lab: set up, then open JupyterLab on the notebooks
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

## make test: set up, then lint, type-check and run every test, the notebooks included, and
## finally the notebooks in a real JupyterLab in a real browser
test: lint unit notebooks test-browser

lint: $(DEV)
	$(BIN)/ruff check servers helpers tests bench
	$(BIN)/mypy

## make unit: every test but the browser's. Tests run in PYTEST_WORKERS processes (pytest-xdist):
## alone, the suite keeps about half of one core busy (it waits on held polls, restarts and
## timeouts), so 4 workers fill 2 cores. Tests marked `serial` assert a timing or a limit that
## the other workers' load could break; they run afterwards, two at a time (SERIAL_WORKERS):
## they mostly wait (22 s of CPU in 65 s, one at a time), and two at a time passed 5 runs out of 5
## here, 2 of them beside a busy core, in 36-40 s instead of 63-71. PYTEST_WORKERS=0 runs
## everything in this one process, as a bare `pytest tests` does.
PYTEST_WORKERS ?= 4
SERIAL_WORKERS ?= $(if $(filter 0,$(PYTEST_WORKERS)),0,2)
unit: $(DEV)
	$(BIN)/pytest tests $(NO_NBVAL) -n $(PYTEST_WORKERS) --dist worksteal -m 'not browser and not serial'
	$(BIN)/pytest tests $(NO_NBVAL) -n $(SERIAL_WORKERS) --dist worksteal -m 'serial and not browser'

## make notebooks: every notebook under nbval, top to bottom, each exercise's solution run against
## its own check (copies in build/notebooks; a learner's Run All never runs a solution). Each
## notebook runs whole in one worker (--dist loadfile; pytest-xdist hands out the notebooks with
## the most cells first), NOTEBOOK_WORKERS at a time: a kernel mostly waits on held polls,
## restarts and timeouts. Two at a time took 142-149 s here; three took 98 s, kept 1.2 of the
## 2 cores busy, and every lesson's measured margin stayed wide (2026-12-07).
NOTEBOOK_WORKERS ?= 3
notebooks: $(DEV)
	$(BIN)/python tests/notebooks/solve.py notebooks build/notebooks
	$(BIN)/pytest --nbval-lax --nbval-current-env -p no:cacheprovider -n $(NOTEBOOK_WORKERS) \
	  --dist loadfile build/notebooks

## make test-slow: only the tests marked slow (faults, reconnect storms); `make test` runs them too
test-slow: $(DEV)
	$(BIN)/pytest tests $(NO_NBVAL) -m slow --durations=0

## make test-browser: Run All, then every panel, in every notebook from 01 on, in JupyterLab in headless Chromium (Debian's
## /usr/bin/chromium, or POLLING_LAB_CHROMIUM); screenshots go to results/screenshots/. Its two
## lanes of notebooks, each with a JupyterLab of its own, run side by side (see LANE in
## tests/browser/test_jupyterlab.py); -rP prints how long each step of each notebook took.
test-browser: $(DEV)
	$(BIN)/pytest tests/browser $(NO_NBVAL) -m browser -p no:cacheprovider -n 2 --dist loadscope -rP --durations=0

## make bench: set up, then measure how many waiting clients each server holds and how fast one
## event reaches them, against Nchan (nginx) as the production reference. Takes about 5 minutes;
## not part of `make test`. Writes results/bench-<date>.json and .md; see docs/benchmarks.md
bench: $(DEV)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) results .pytest_cache .mypy_cache .ruff_cache .hypothesis
