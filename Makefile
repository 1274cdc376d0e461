# Two commands do all the set-up on a fresh machine:
#   make run   - create .venv, install, run one autofocus on the simulated microscope
#   make test  - create .venv, install with test + Micro-Manager extras, run the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,mm]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/autofocus focus --driver sim --seed 1

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check autofocus drivers models tests

bench: $(BIN)/.installed
	$(BIN)/autofocus bench search

clean:
	rm -rf $(VENV) build *.egg-info
