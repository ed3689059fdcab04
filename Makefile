# Two commands for a fresh Debian/Ubuntu machine with Python >= 3.10:
#   make book   creates .venv, installs everything, executes every notebook (quick profile), builds _build/html
#   make test   unit tests, the book build with warnings as errors, nbval against the executed notebooks,
#               and the real-browser check of the built HTML
# System packages (the Fashion-MNIST data and chromium) come from `make system-deps` (needs root/sudo);
# .ci/run does that first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
PY := $(BIN)/python
MATHJAX_VERSION ?= 3.2.2
# The kernel that executes notebooks is the venv's python: put it first on PATH.
export PATH := $(BIN):$(PATH)
# The book and CI run the quick profile; progress bars are off so outputs are reproducible.
export COMPANION_PROFILE ?= quick
export COMPANION_PROGRESS ?= 0
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: book test unit nbval browser venv mathjax system-deps benchmark clean sync-notebooks

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps d2l==1.0.3
	$(PY) -m pip install --quiet --no-deps 'stardist>=0.9'
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# MathJax 3 from the npm registry, served from the book itself (no CDN needed to render math).
_build/mathjax/.installed:
	rm -rf _build/mathjax _build/npm-mathjax
	mkdir -p _build/npm-mathjax _build/mathjax
	cd _build/npm-mathjax && npm install --silent --no-audit --no-fund --prefix . mathjax@$(MATHJAX_VERSION)
	cp -r _build/npm-mathjax/node_modules/mathjax/es5 _build/mathjax/mathjax
	touch $@

mathjax: _build/mathjax/.installed

# --all: every build re-reads and so re-executes every notebook (an incremental build would keep the
# outputs of unchanged notebooks even when the companion changed). The executed copies land in
# _build/jupyter_execute/<path>.ipynb; old ones are removed first so `make nbval` sees only these.
book: venv mathjax
	rm -rf _build/jupyter_execute
	$(BIN)/jupyter-book build . -W -n --keep-going --all

unit: venv
	$(PY) -m pytest tests -q

# Re-run the notebooks the book build executed and compare every text output with the rendered one
# (strict --nbval: all cells, not only those marked). Needs `make book` first.
nbval: venv
	@executed="$$(find _build/jupyter_execute -name '*.ipynb' 2>/dev/null | sort)"; \
	if [ -z "$$executed" ]; then echo "nbval: no executed notebooks in _build/jupyter_execute; run make book first" >&2; exit 1; fi; \
	echo "$(PY) -m pytest --nbval ... $$(echo $$executed)"; \
	$(PY) -m pytest -q -p no:cacheprovider --nbval --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg $$executed

browser: venv
	$(PY) tools/check_browser.py _build/html --screenshot _build/screenshots

test: unit book nbval browser

benchmark: venv
	$(PY) benchmarks/run_notebooks.py

sync-notebooks: venv
	$(PY) tools/sync_setup_cells.py

system-deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist chromium
	command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm

clean:
	rm -rf _build
