#!/usr/bin/env bash
# The sweep behind the introspective defaults (docs/sweep.md), made with exact input gradients: the soft target's temperature tau, the
# student temperature T, alpha and the target's form, scored on a validation split held out of the
# training data (never a test split). Runs are in priority order; finished runs are skipped, so the
# script can be stopped and started again.
#
#   scripts/sweep_introspective.sh [MODEL] [EPOCHS] [TRAIN_LIMIT] [SEED]
#   .venv/bin/python -m introspective_tf.tools.summarize runs/sweep-<MODEL>
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-resnet20}; EPOCHS=${2:-15}; LIMIT=${3:-5000}; SEED=${4:-0}
DATA=${DATA:-folder:../shared/data/cifar10}
OUT=${OUT:-runs/sweep-$MODEL}
PY=${PYTHON:-.venv/bin/python}
common=(--dataset="$DATA" --model="$MODEL" --epochs="$EPOCHS" --train_limit="$LIMIT" --seed="$SEED"
        --eval_split=validation --validation_split=0.1 --export_dir=none --verbose=2)
run() {  # run NAME FLAGS...
  local dir=$OUT/$1-seed$SEED; shift
  [ -f "$dir/results.json" ] || "$PY" train.py "${common[@]}" --output_dir="$dir" "$@"
}
introspective() {  # introspective TAU T ALPHA [extra flags]
  local tau=$1 T=$2 alpha=$3; shift 3
  run "softmax-tau$tau-T$T-alpha$alpha" --method=introspective --explanation=gradient --soft_target=softmax \
    --similarity_temperature="$tau" --temperature="$T" --alpha="$alpha" "$@"
}
run standard --method=standard
introspective 0.2 1 0.5
introspective 0.05 1 0.5
run smoothing-eps0.1-tau0.2-T1-alpha0.5 --method=introspective --explanation=gradient --soft_target=smoothing \
  --epsilon=0.1 --similarity_temperature=0.2 --temperature=1 --alpha=0.5
introspective 0.2 4 0.5
introspective 0.05 1 0.2
introspective 1.0 1 0.5
introspective 0.05 4 0.5
