# Fresh machine: `make demo` runs the main job on bundled data, `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_OUT ?= runs

.PHONY: install demo test test-fast bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The main job on the bundled demo data: a small search into runs/demo/ (run again: it continues;
# studies/demo/ is the committed example made the same way), then its Pareto front.
demo: install
	$(BIN)/rksearch run search_spaces/demo.yaml --out $(DEMO_OUT)

test: install
	$(BIN)/python -m pytest -q --durations=15 $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info
