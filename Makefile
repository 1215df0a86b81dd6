# One-command set-up: every target creates and uses the local virtual environment .venv.
#   make demo   - generate the bundled synthetic cohort and run the main job on it
#   make test   - run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= demo-output

.PHONY: venv system-deps demo test unit bench clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-build.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-build.txt
	$(BIN)/python -m pip install -q --no-build-isolation -r requirements.txt
	$(BIN)/python -m pip install -q --no-build-isolation --no-deps -e .
	touch $(STAMP)

demo: $(STAMP) system-deps
	$(BIN)/compass demo $(DEMO)

# Mesa's EGL/OpenGL for offscreen rendering of Slicer views (COMPASSLib/mrml/render.py, docs/view.md),
# and the headless browser (with a font) the web-view and report tests drive through Playwright:
# installed with apt where a Debian machine lacks them (CI runs as root), nothing to do where present.
SYSTEM_DEBS := libegl1 libegl-mesa0 libgl1-mesa-dri chromium fonts-dejavu-core
system-deps:
	@dpkg-query -W -f='$${Status}\n' $(SYSTEM_DEBS) 2>/dev/null | grep -qv 'install ok installed' || \
	  [ $$(dpkg-query -W -f='$${Status}\n' $(SYSTEM_DEBS) 2>/dev/null | wc -l) -ne $(words $(SYSTEM_DEBS)) ] || exit 0; \
	if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(SYSTEM_DEBS); \
	else echo "system-deps: install $(SYSTEM_DEBS) (Debian) for offscreen rendering and the browser tests; those tests skip without them"; fi

# the Slicer module's own dependency install, for real, in a Slicer-like venv (~3-5 min), then the suite
test: $(STAMP) system-deps
	$(BIN)/python Testing/check_slicer_install.py
	$(BIN)/python -m pytest Testing -q -p no:cacheprovider -n 2 --dist loadfile

# the test suite alone
unit: $(STAMP)
	$(BIN)/python -m pytest Testing -q -p no:cacheprovider -n 2 --dist loadfile

bench: $(STAMP)
	for b in Testing/Benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO) build *.egg-info
