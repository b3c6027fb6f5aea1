# Fresh machine: `make demo` runs the main job on bundled data, `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_OUT ?= runs
LATEST ?= .venv-latest
PINS   := constraints.txt
# pytest workers (pytest-xdist): two on the 2-core CI machine, where one test's waits (Ray's start,
# a trial's start, a subprocess) are the other's CPU time; JOBS=0 runs in one process.
JOBS   ?= 2
# tests marked MANY_PROCESSES (tests/helpers.py) run one after another on one worker
DIST   ?= --dist loadgroup

.PHONY: install check-pins pins demo test test-fast test-latest clean

# The tested versions: every package at its pin in constraints.txt (pyproject.toml keeps ranges).
$(STAMP): pyproject.toml $(PINS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(PINS) -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Fails when what is installed differs from the pins (CI runs it: no silent reuse of older packages).
check-pins: install
	$(BIN)/python .ci/check_pins.py $(PINS)

# The main job on the bundled demo data: a small search into runs/demo/ (run again: it continues;
# studies/demo/ is the committed example made the same way), then its Pareto front.
demo: install
	$(BIN)/rksearch run search_spaces/demo.yaml --out $(DEMO_OUT)

test: install
	$(BIN)/python -m pytest -q -n $(JOBS) $(DIST) --durations=15 $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -q -n $(JOBS) $(DIST) -m "not slow" $(PYTEST_ARGS)

# Drift watch (not part of CI): a throw-away environment with the newest releases the ranges in
# pyproject.toml admit, then the fast tests. When it passes, `make pins` records those versions.
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q --upgrade -e '.[dev]'
	@$(LATEST)/bin/python -m pip freeze --exclude-editable | grep -iE '^(optuna|ray|torch|numpy|pandas|scipy)=='
	$(LATEST)/bin/python -m pytest -q -n $(JOBS) -m "not slow" -p no:cacheprovider $(PYTEST_ARGS)

# Record the versions of an environment (default: the newest ones test-latest installed) as the pins.
pins:
	@test -x $(LATEST)/bin/python || { echo "run make test-latest first (it builds $(LATEST))"; exit 2; }
	{ head -2 $(PINS); $(LATEST)/bin/python -m pip freeze --exclude-editable | grep -v '^rksearch'; } > $(PINS).new
	mv $(PINS).new $(PINS)

clean:
	rm -rf $(VENV) $(LATEST) .pytest_cache .hypothesis build *.egg-info
