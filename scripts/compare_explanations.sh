#!/usr/bin/env bash
# Validation accuracy of the explanation choices (docs/fast_introspection.md): exact input gradients,
# their JVP estimate, Grad-CAM at the last block, and standard training, on a split held out of train.
#
#   scripts/compare_explanations.sh [MODEL] [EPOCHS] [TRAIN_LIMIT] [SEEDS] [CHOICES]
#   .venv/bin/python -m introspective_tf.summarize runs/explanations-<MODEL>
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-small_cnn}; EPOCHS=${2:-6}; LIMIT=${3:-10000}; SEEDS=${4:-"0 1"}; CHOICES=${5:-"exact jvp4 gradcam standard"}
DATA=${DATA:-folder:../shared/data/cifar10}
OUT=runs/explanations-$MODEL
PY=${PYTHON:-.venv/bin/python}
declare -A FLAGS_OF=(
  [exact]="--method=introspective"
  [jvp4]="--method=introspective --explanation_estimator=jvp --num_probes=4"
  [gradcam]="--method=introspective --explanation=gradcam"
  [standard]="--method=standard"
)
for SEED in $SEEDS; do
  for CHOICE in $CHOICES; do
    dir=$OUT/$CHOICE-seed$SEED
    # shellcheck disable=SC2086
    [ -f "$dir/results.json" ] || "$PY" train.py --dataset="$DATA" --model="$MODEL" --epochs="$EPOCHS" \
      --train_limit="$LIMIT" --seed="$SEED" --eval_split=validation --validation_split=0.1 --export_dir=none \
      --verbose=2 --output_dir="$dir" ${FLAGS_OF[$CHOICE]}
  done
done
