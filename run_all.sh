#!/usr/bin/env bash
# Train every method on one config, evaluate each run with the config's metric suite, gather the
# report (results/leaderboard.csv, report.html, plots/) and check the config's claims.
#
#   ./run_all.sh                        # quick CPU recipe + reduced full suite (quick_suite.toml)
#   ./run_all.sh --paper                # the IPMix paper recipe, WRN-40-4, 100 epochs (CUDA GPU)
#   ./run_all.sh --config FILE --seeds "0 1 2" --methods "baseline ipmix" --set data.dataset=cifar100
#   ./run_all.sh --claims FILE          # claims to check at the end (default: see below)
#   ./run_all.sh --results-dir DIR      # default: the config's results_dir
#   ./run_all.sh --paper --nproc-per-node 4 --parallel 2 --gpus 0,1,2,3,4,5,6,7
#                                       # robench sweep: each run on torchrun with 4 GPUs, 2 at once
#   ./run_all.sh ... --dry-run          # print the sweep's commands, run nothing
#
# Finished runs are skipped and interrupted ones resumed (robench train --resume); a finished run
# that lacks some of the config's metrics is only evaluated. Claims: --claims, else
# baselines/claims/ipmix_paper.toml with --paper, else baselines/claims/quick.toml when present.
# --nproc-per-node, --parallel, --gpus and --dry-run hand the runs to `robench sweep`
# (docs/scaling-out.md); without them the runs go one after another in this shell, as always.
# Set PYTHON to the interpreter that has robench installed (default: python).
set -euo pipefail
cd "$(dirname "$0")"

py=${PYTHON:-python}
config=baselines/quick_suite.toml
claims=""
seeds="0"
methods="baseline cutmix augmix pixmix ipmix"
paper=0
extra=()
sweep=()
dry=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --paper) config=baselines/paper_wrn40_4.toml; paper=1; shift ;;
    --config) config="$2"; shift 2 ;;
    --seeds) seeds="$2"; shift 2 ;;
    --methods) methods="$2"; shift 2 ;;
    --claims) claims="$2"; shift 2 ;;
    --set) extra+=(--set "$2"); shift 2 ;;
    --results-dir) extra+=(--results-dir "$2"); results_dir="$2"; shift 2 ;;
    --nproc-per-node|--parallel|--gpus) sweep+=("$1" "$2"); shift 2 ;;
    --dry-run) sweep+=(--dry-run); dry=1; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "run_all.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z "$claims" ]]; then
  if [[ $paper == 1 ]]; then claims=baselines/claims/ipmix_paper.toml
  elif [[ -f baselines/claims/quick.toml ]]; then claims=baselines/claims/quick.toml; fi
fi
robench=("$py" -m robench.cli)

known=$("$py" -c "import robench; print('\n'.join(robench.AUGMENTATIONS.names()))")
for method in $methods; do
  if ! grep -qx "$method" <<<"$known"; then
    echo "run_all.sh: method '$method' is not registered (known: $(echo $known))" >&2
    exit 2
  fi
done
results_dir=${results_dir:-$("$py" -c "import sys, robench; print(robench.load_config(sys.argv[1]).results_dir)" "$config")}

total=$(( $(wc -w <<<"$methods") * $(wc -w <<<"$seeds") ))
n=0
start=$SECONDS
if [[ ${#sweep[@]} -gt 0 ]]; then
  "${robench[@]}" sweep "$config" --methods "$methods" --seeds "$seeds" "${sweep[@]}" "${extra[@]}"
  [[ $dry == 1 ]] && exit 0
else
  for seed in $seeds; do
    for method in $methods; do
      n=$((n + 1))
      echo "=== [$n/$total] $method, seed $seed, $config (elapsed $(( (SECONDS - start) / 60 )) min) ==="
      "${robench[@]}" train "$config" --method "$method" --seed "$seed" --resume "${extra[@]}"
    done
  done
fi
echo "=== all $total runs done in $(( (SECONDS - start) / 60 )) min; report ==="
"${robench[@]}" report --results-dir "$results_dir"
if [[ -n "$claims" ]]; then
  echo "=== claims: $claims ==="
  "${robench[@]}" check "$claims" --results-dir "$results_dir"
fi
