#!/usr/bin/env bash
# GPU readiness in one command, on a machine with CUDA (10 minutes at most):
#   EXTRAS=dev,gpu make .venv/.installed real-model && bench/gpu_check.sh
# 1. every gpu-marked test: the bf16 learner step, chunked log-probs, the liger head, vLLM-CUDA
#    against a transformers forward, and vLLM-CUDA taking new weights over the collective path
#    (NCCL) on SmolLM2-135M-Instruct and on a Qwen2.5-0.5B-shaped model;
# 2. bench/learner_gpu.py: the learner's step against plain transformers, 4K to 32K tokens;
# 3. bench/rollout.py --real --device cuda: vLLM ÷ HF generate on SmolLM2 at 1K and 4K tokens.
# Each step's time and exit status are printed; the script exits non-zero if any step failed.
set -u
cd "$(dirname "$0")/.."
PY=.venv/bin/python
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this check needs one')" || exit 2
failed=0
step() {
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  echo "== $name (at most $limit s)"
  timeout "$limit" "$@"; local rc=$?
  echo "== $name: exit $rc in $((SECONDS - start)) s"
  [ "$rc" = 0 ] || failed=1
}
step "gpu tests" 240 .venv/bin/pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py
step "learner bench" 150 $PY bench/learner_gpu.py --lengths 4096 16384 --steps 3
step "rollout bench (SmolLM2)" 150 $PY bench/rollout.py --real --device cuda --dtype bfloat16
exit $failed
