#!/usr/bin/env bash
# The sweep behind the introspective defaults (docs/sweep.md): a grid over the soft target's
# temperature tau, the student temperature T, alpha and the target's form, scored on a validation
# split held out of the training data (never a test split).
#
#   scripts/sweep_introspective.sh [MODEL] [EPOCHS] [TRAIN_LIMIT] [SEED]
#   .venv/bin/python -m introspective_tf.summarize runs/sweep-<MODEL>
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-small_cnn}; EPOCHS=${2:-15}; LIMIT=${3:-10000}; SEED=${4:-0}
DATA=${DATA:-folder:../shared/data/cifar10}
OUT=runs/sweep-$MODEL
PY=${PYTHON:-.venv/bin/python}
common=(--dataset="$DATA" --model="$MODEL" --epochs="$EPOCHS" --train_limit="$LIMIT" --seed="$SEED"
        --eval_split=validation --validation_split=0.1 --export_dir=none --verbose=2)
run() {  # run NAME FLAGS...
  local dir=$OUT/$1-seed$SEED; shift
  [ -f "$dir/results.json" ] || "$PY" train.py "${common[@]}" --output_dir="$dir" "$@"
}
run standard --method=standard
for tau in 0.05 0.2 1.0; do
  for T in 1 4; do
    for alpha in 0.5 0.9; do
      run "softmax-tau$tau-T$T-alpha$alpha" --method=introspective --soft_target=softmax \
        --similarity_temperature="$tau" --temperature="$T" --alpha="$alpha"
    done
  done
done
for eps in 0.1 0.3; do
  run "smoothing-eps$eps-tau0.2-T1-alpha0.5" --method=introspective --soft_target=smoothing \
    --epsilon="$eps" --similarity_temperature=0.2 --temperature=1 --alpha=0.5
done
