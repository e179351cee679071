#!/usr/bin/env bash
# The CUDA check and GPU benchmark run on a lent GPU machine (figures go to BENCHMARKS.md):
# the CUDA-only tests, the training step of WRN-40-2 (baseline and IPMix + JSD) eager and captured
# against the bare captured model step, inference throughput eager and captured, and the whole
# evaluator suite for WRN-40-2 on CIFAR-10. The targets it measures are in docs/benchmarks.md
# ("Targets, and where they stand").
#
#   scripts/gpu_check.sh DATASET OUT_DIR      # e.g. imagefolder:data/cifar10-jpeg
#
# Each step has its own time limit so one slow step cannot take the others with it; STEPS names
# the steps to run (default: cuda_tests bench_train bench_eval bench_suite; also bench_augment
# and same_results, below). At most 11.5 minutes in all, start-up not counted. On the development
# device (10 minutes per call) that is two calls on the same machine:
#   STEPS="cuda_tests bench_train" scripts/gpu_check.sh ...   then   STEPS="bench_eval bench_suite" ...
set -uo pipefail
dataset=${1:?usage: scripts/gpu_check.sh DATASET OUT_DIR}
out=${2:?usage: scripts/gpu_check.sh DATASET OUT_DIR}
logs=$(mktemp -d)
mkdir -p "$out"
trap 'cat "$logs"/*.log > "$out/logs.txt" 2>/dev/null' EXIT
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
steps=${STEPS:-cuda_tests bench_train bench_eval bench_suite}
step() {  # step SECONDS NAME COMMAND...
  local limit=$1 name=$2
  shift 2
  [[ " $steps " == *" $name "* ]] || return 0
  echo "=== $name ($(date -u +%T)) ==="
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$logs/$name.log" | grep -v "it/s\]$" | tail -n 25
  echo "=== $name: exit ${PIPESTATUS[0]}, $((SECONDS - start)) s ==="
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$py" -c "import torch, timm, torchvision; print('torch', torch.__version__, 'timm', timm.__version__,
'torchvision', torchvision.__version__, torch.cuda.get_device_name(), 'cpus', __import__('os').cpu_count())"
step 120 cuda_tests "$py" -m pytest -q -p no:cacheprovider tests/augment/test_batched_equivalence.py \
  tests/training/test_batch_workers.py tests/training/test_captured_cuda.py \
  tests/evaluation/test_corruption_flip_metrics.py tests/evaluation/test_adversarial.py -k cuda
step 45 bench_augment "$py" -m robench.cli bench augment --device cuda --images 4096 \
  --methods augmix,pixmix,ipmix,baseline,cutmix --csv "$out/bench_augment_cuda.csv"
# the step targets: framework step / bare captured step <= 1.25 for baseline and IPMix + JSD; the
# images/s give the 100-epoch times (x 50,000 images x 100 epochs)
step 300 bench_train "$py" -m robench.cli bench train --device cuda --model wrn_40_2 --images 10000 \
  --methods ipmix,baseline --variant step=eager,batch_workers=2 \
  --variant step=captured,batch_workers=2 --variant step=captured,batch_workers=4 \
  --csv "$out/bench_train_cuda.csv"
step 30 bench_eval "$py" -m robench.cli bench eval --device cuda --model wrn_40_2 --images 20000 \
  --csv "$out/bench_eval_cuda.csv"
step 240 bench_suite "$py" -m robench.cli bench suite --device cuda --model wrn_40_2 \
  --dataset "$dataset" --quiet --csv "$out/bench_suite_cuda.csv"
# opt-in (STEPS=same_results, a call of its own: up to 9 minutes once bench_suite has cached the
# corrupted sets):
# 10-epoch WRN-16-2 IPMix + JSD runs on all of CIFAR-10, 3 seeds, eager and captured step; their
# clean and corruption errors must agree within the seed spread
same_results() {
  for kind in eager captured; do
    for seed in 0 1 2; do
      "$py" -m robench.cli train baselines/quick.toml --dataset "$dataset" --method ipmix \
        --epochs 10 --seed "$seed" --set data.train_per_class=0 --set train.step="$kind" \
        --set 'evaluate.metrics=["clean","corruption"]' --results-dir "results/same-$kind" --quiet
    done
    "$py" -m robench.cli report --results-dir "results/same-$kind" --no-plots
    cp "results/same-$kind/runs.csv" "$out/same_results_$kind.csv"
  done
  "$py" - "$out" <<'PY'
import sys
import pandas as pd
runs = {k: pd.read_csv(f"{sys.argv[1]}/same_results_{k}.csv") for k in ("eager", "captured")}
for col in ("clean_error", "corruption_error"):
    e, c = runs["eager"][col], runs["captured"][col]
    print(f"{col}: eager {e.mean():.2f} +- {e.std():.2f}, captured {c.mean():.2f} +- {c.std():.2f}"
          f" (n = {len(e)}, {len(c)}); difference {c.mean() - e.mean():+.2f}")
PY
}
step 540 same_results same_results
