#!/usr/bin/env bash
# The paper-recipe runs on a GPU held for short sessions, as far as one call's time allows
# (docs/results.md, "The paper recipe"). Trains the runs in order, seeds outer and methods inner (seed 0
# of every method first), each with `robench train --resume`, until BUDGET seconds are used: the
# run in progress then gets SIGTERM and saves a checkpoint at its next step. Afterwards OUT holds
#   store/             robench export of every finished run (no checkpoints): what gets committed
#   resume/<run id>/   the unfinished run's checkpoint in parts of 15 MiB (the device hands back
#                      files of at most 16 MiB); carry them back and pass --restore
#   paper_runs.log     what happened, with the time of each step
#
#   scripts/paper_runs.sh BUDGET OUT [--restore DIR] [--config FILE] [--methods "a b"]
#                         [--seeds "0 1 2"] [--data DIR] [--results-dir DIR] [--set KEY=VALUE ...]
#
# On a GPU the runs use the captured training step and evaluator forward (train.step and
# evaluate.forward = auto). Until their CUDA tests have passed on a GPU once (scripts/gpu_check.sh,
# cuda_tests; BENCHMARKS.md says when), run that first, or pass --set train.step=eager.
#
# On the development device (64 MiB carried per call, working tree included): the data (55 MB)
# and a WRN-40-2 checkpoint (17.2 MiB) do not fit in one call. A session that resumes makes two:
# the first carries data/cifar10-jpeg (cp -r ../shared/data/cifar10-jpeg data/) and runs something
# short (scripts/gpu_check.sh); the second, while the machine is still held, carries
# results/resume (the parts copied there) and runs `scripts/paper_runs.sh 780 "$OUT" --restore
# results/resume`. A WRN-40-4 checkpoint (68.4 MiB) cannot be carried: its runs must end in one
# session.
#
# Defaults: baselines/paper_wrn40_2.toml; baseline cutmix augmix pixmix ipmix; seeds 0 1 2; the data
# in data/cifar10-jpeg (a copy of ../shared/data/cifar10-jpeg, labelled cifar10-jpeg by its folder
# name); runs under results/paper.
set -euo pipefail
budget=${1:?usage: scripts/paper_runs.sh BUDGET OUT [options]}
out=${2:?usage: scripts/paper_runs.sh BUDGET OUT [options]}
shift 2
config=baselines/paper_wrn40_2.toml
methods="baseline cutmix augmix pixmix ipmix"
seeds="0 1 2"
data=data/cifar10-jpeg
results=results/paper
restore=""
sets=()
overrides=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --restore) restore=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --methods) methods=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --results-dir) results=$2; shift 2 ;;
    --set) sets+=(--set "$2"); overrides+=("$2"); shift 2 ;;
    *) echo "paper_runs.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -d $data ]] || { echo "paper_runs.sh: no data at $data; copy ../shared/data/cifar10-jpeg there" >&2; exit 2; }
py=${PYTHON:-python3}
mkdir -p "$out/store" "$out/resume" "$results"
log="$out/paper_runs.log"
say() { echo "[$(date -u +%T)] $*" | tee -a "$log"; }
start=$SECONDS

if [[ -n $restore ]]; then  # the parts of an unfinished run's checkpoint, joined in place
  for parts in "$restore"/*/; do
    run=$(basename "$parts")
    mkdir -p "$results/runs/$run"
    cat "$parts"/checkpoint.pt.part-* > "$results/runs/$run/checkpoint.pt"
    say "restored $run from $(ls "$parts" | wc -l) parts"
  done
fi

for seed in $seeds; do
  for method in $methods; do
    left=$((budget - (SECONDS - start)))
    if ((left < ${MIN_LEFT:-60})); then say "budget spent: $method seed $seed not started"; break 2; fi
    say "train $method seed $seed (${left} s left)"
    set +e
    timeout --signal=TERM --kill-after=120 "$left" "$py" -m robench.cli train "$config" \
      --method "$method" --seed "$seed" --dataset "imagefolder:$data" --results-dir "$results" \
      --resume --quiet "${sets[@]}" >> "$log" 2>&1
    code=$?
    set -e
    say "$method seed $seed: exit $code"
    if ((code != 0)); then  # stopped by the budget (130) or failed (see the log)
      unfinished=$("$py" -c "import sys; from robench.config import load_config
from robench.runs import run_id
print(run_id(load_config(sys.argv[1], sys.argv[2:])))" "$config" "augment.method=\"$method\"" \
        "seed=$seed" "data.dataset=\"imagefolder:$data\"" "${overrides[@]}")
      checkpoint="$results/runs/$unfinished/checkpoint.pt"
      if [[ -f $checkpoint ]]; then
        mkdir -p "$out/resume/$unfinished"
        split -b 15M -d "$checkpoint" "$out/resume/$unfinished/checkpoint.pt.part-"
        say "unfinished: $unfinished, checkpoint in $(ls "$out/resume/$unfinished" | wc -l) parts"
      fi
      break 2
    fi
  done
done

"$py" -m robench.cli export "$out/store" --results-dir "$results" >> "$log" 2>&1 || say "export failed"
say "done in $((SECONDS - start)) s"
