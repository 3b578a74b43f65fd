# Two commands matter: `make lab` and `make test`. Both set everything up on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: lab test lint unit notebooks clean

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
	  { echo "Polling Lab needs Python 3.10 or newer; run e.g. 'make PYTHON=python3.11 test'."; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

## make lab: set up, then open JupyterLab on the notebooks
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

## make test: set up, then lint, type-check and run every test, the notebooks included
test: lint unit notebooks

lint: $(STAMP)
	$(BIN)/ruff check servers helpers tests
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests

notebooks: $(STAMP)
	$(BIN)/pytest --nbval-lax --nbval-current-env -p no:cacheprovider notebooks

clean:
	rm -rf $(VENV) results .pytest_cache .mypy_cache .ruff_cache
