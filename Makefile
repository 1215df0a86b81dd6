# One-command set-up: every target creates and uses the local virtual environment .venv.
#   make demo   - generate the bundled synthetic cohort and run the main job on it
#   make test   - run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= demo-output

.PHONY: venv demo test unit bench clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-build.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-build.txt
	$(BIN)/python -m pip install -q --no-build-isolation -r requirements.txt
	$(BIN)/python -m pip install -q --no-build-isolation --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/compass demo $(DEMO)

# the Slicer module's own dependency install, for real, in a Slicer-like venv (~3-5 min), then the suite
test: $(STAMP)
	$(BIN)/python Testing/check_slicer_install.py
	$(BIN)/python -m pytest Testing -q -p no:cacheprovider

# the test suite alone
unit: $(STAMP)
	$(BIN)/python -m pytest Testing -q -p no:cacheprovider

bench: $(STAMP)
	for b in Testing/Benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO) build *.egg-info
