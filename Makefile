# Two commands do all the set-up on a fresh machine:
#   make run   - create .venv, install what running needs, run one autofocus on the simulator
#   make test  - add the test + Micro-Manager extras, run the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench screenshots clean

$(BIN)/python:
	@echo "==> creating the virtual environment $(VENV) (Python: $(PYTHON))"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Runtime only: numpy, SciPy, OpenCV, tifffile, onnxruntime, FastAPI/uvicorn, matplotlib, ...
$(BIN)/.installed-run: pyproject.toml | $(BIN)/python
	@echo "==> installing autofocus-service and what running it needs (numpy, SciPy, OpenCV,"
	@echo "    onnxruntime, FastAPI, uvicorn, matplotlib, ...; about 1 GB, 1-3 minutes the first time)"
	$(BIN)/python -m pip install --progress-bar off -e .
	@$(BIN)/python -c "import autofocus" && touch $@

# Tests also need pytest, hypothesis, ruff, schemathesis and the Micro-Manager extras.
$(BIN)/.installed-test: pyproject.toml $(BIN)/.installed-run
	@echo "==> adding the test and Micro-Manager extras (pytest, hypothesis, ruff, schemathesis,"
	@echo "    pycromanager, pymmcore-plus, mm-test-adapters)"
	$(BIN)/python -m pip install --progress-bar off -e '.[test,mm]'
	@$(BIN)/python -c "import pytest, pymmcore_plus" && touch $@

run: $(BIN)/.installed-run
	$(BIN)/autofocus focus --driver sim --seed 1

test: $(BIN)/.installed-test
	$(BIN)/python -m pytest -q

lint: $(BIN)/.installed-test
	$(BIN)/ruff check autofocus drivers models tests benchmarks

# The web page's screenshots in docs/ (page-now/-history/-job/-maps.png), from its browser test.
screenshots: $(BIN)/.installed-test
	AUTOFOCUS_PAGE_SCREENSHOTS=docs $(BIN)/python -m pytest -q tests/test_web_page.py -k screenshots

bench: $(BIN)/.installed-run
	$(BIN)/autofocus bench search

clean:
	rm -rf $(VENV) build *.egg-info
