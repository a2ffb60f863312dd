# The two set-up commands of the README: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-fast test-realapi bench bench-more bench-echo lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m livetalk demo --out demo-reply.wav

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not realapi"

# the unit tests only (no real calls): seconds
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow and not realapi"

# smoke tests against the real OpenAI API (needs OPENAI_API_KEY; costs a few cents; see
# docs/fidelity.md). Never part of `make test`.
test-realapi: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m realapi tests/realapi

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

# the longer comparisons of docs/measurements.md: VAD paths, packet loss, load (~12 min),
# and scenarios at scale (docs/researchers.md, ~8 min)
bench-more: $(STAMP)
	$(BIN)/python -m bench.vad_paths
	$(BIN)/python -m bench.loss
	$(BIN)/python -m bench.load_turns
	$(BIN)/python -m bench.scenarios_scale

# the echo modes in simulated rooms, offline and over real calls (docs/performance.md, ~25 min)
bench-echo: $(STAMP)
	$(BIN)/python -m bench.echo

lint: $(STAMP)
	$(BIN)/ruff check livetalk tests bench examples
	$(BIN)/mypy livetalk

clean:
	rm -rf $(VENV) build *.egg-info
