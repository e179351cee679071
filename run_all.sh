#!/usr/bin/env bash
# Train every method on one config, evaluate each run, then gather the leaderboard.
#
#   ./run_all.sh                         # the quick CPU config, seed 0
#   ./run_all.sh --paper                 # the WRN-40-2 paper recipe (a CUDA GPU is expected)
#   ./run_all.sh --config FILE --seeds "0 1 2" --methods "baseline ipmix"
#
# Finished runs are skipped and interrupted ones resumed (robench train --resume).
set -euo pipefail
cd "$(dirname "$0")"

config=baselines/quick.toml
seeds="0"
methods="baseline cutmix augmix pixmix ipmix"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --paper) config=baselines/paper_wrn40_2.toml; shift ;;
    --config) config="$2"; shift 2 ;;
    --seeds) seeds="$2"; shift 2 ;;
    --methods) methods="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

known=$(robench list | awk '$1 == "method" {print $2}')
for method in $methods; do
  if ! grep -qx "$method" <<<"$known"; then
    echo "run_all.sh: method '$method' is not registered (robench list shows: $(echo $known))" >&2
    exit 2
  fi
done

total=$(( $(wc -w <<<"$methods") * $(wc -w <<<"$seeds") ))
n=0
for seed in $seeds; do
  for method in $methods; do
    n=$((n + 1))
    echo "=== [$n/$total] $method, seed $seed, $config ==="
    robench train "$config" --method "$method" --seed "$seed" --resume
  done
done
robench report
