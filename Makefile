# The two set-up commands of the README: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-fast bench bench-more lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

# Whisper ears when the asr extra is installed (the dev install has it), else pocketsphinx
demo: $(STAMP)
	$(BIN)/python -m livetalk demo --out demo-reply.wav

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

# the unit tests only (no real calls): seconds
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

# the longer comparisons of docs/measurements.md: VAD paths, packet loss, load (~12 min),
# and the recognisers of docs/performance.md (WER, CPU, latency, capacity: ~15 min)
bench-more: $(STAMP)
	$(BIN)/python -m bench.vad_paths
	$(BIN)/python -m bench.loss
	$(BIN)/python -m bench.load_turns
	$(BIN)/python -m bench.asr --docs

lint: $(STAMP)
	$(BIN)/ruff check livetalk tests bench examples
	$(BIN)/mypy livetalk

clean:
	rm -rf $(VENV) build *.egg-info
