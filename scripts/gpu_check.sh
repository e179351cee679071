#!/usr/bin/env bash
# The CUDA check and GPU benchmark run on a lent GPU machine (figures go to BENCHMARKS.md):
# CUDA-only tests, batched augmentation on the GPU, training-step share of IPMix + JSD for
# WRN-40-2, inference throughput, and the whole evaluator suite for WRN-40-2 on CIFAR-10.
#
#   scripts/gpu_check.sh DATASET OUT_DIR      # e.g. imagefolder:../shared/data/cifar10-jpeg
#
# Each step has its own time limit so one slow step cannot take the others with it.
set -uo pipefail
dataset=${1:?usage: scripts/gpu_check.sh DATASET OUT_DIR}
out=${2:?usage: scripts/gpu_check.sh DATASET OUT_DIR}
logs=$(mktemp -d)
mkdir -p "$out"
trap 'cat "$logs"/*.log > "$out/logs.txt" 2>/dev/null' EXIT
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
step() {  # step SECONDS NAME COMMAND...
  local limit=$1 name=$2
  shift 2
  echo "=== $name ($(date -u +%T)) ==="
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$logs/$name.log" | grep -v "it/s\]$" | tail -n 25
  echo "=== $name: exit ${PIPESTATUS[0]}, $((SECONDS - start)) s ==="
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$py" -c "import torch, timm, torchvision; print('torch', torch.__version__, 'timm', timm.__version__,
'torchvision', torchvision.__version__, torch.cuda.get_device_name(), 'cpus', __import__('os').cpu_count())"
step 90 cuda_tests "$py" -m pytest -q -p no:cacheprovider tests/augment/test_batched_equivalence.py \
  tests/training/test_batch_workers.py -k cuda
step 45 bench_augment "$py" -m robench.cli bench augment --device cuda --images 4096 \
  --methods augmix,pixmix,ipmix,baseline,cutmix --csv "$out/bench_augment_cuda.csv"
step 200 bench_train "$py" -m robench.cli bench train --device cuda --model wrn_40_2 --images 10000 \
  --methods ipmix,augmix,pixmix,baseline --variant batch_workers=0 --variant batch_workers=2 \
  --csv "$out/bench_train_cuda.csv"
step 30 bench_eval "$py" -m robench.cli bench eval --device cuda --model wrn_40_2 --images 20000 \
  --csv "$out/bench_eval_cuda.csv"
step 240 bench_suite "$py" -m robench.cli bench suite --device cuda --model wrn_40_2 \
  --dataset "$dataset" --quiet --csv "$out/bench_suite_cuda.csv"
