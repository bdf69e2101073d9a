#!/usr/bin/env bash
# Validation accuracy of the explanation choices (docs/fast_introspection.md): exact input gradients,
# their JVP estimate, Grad-CAM at the last block, and standard training, on a split held out of train.
#
#   scripts/compare_explanations.sh [MODEL] [EPOCHS] [TRAIN_LIMIT] [SEEDS]
#   .venv/bin/python -m introspective_tf.summarize runs/explanations-<MODEL>
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-small_cnn}; EPOCHS=${2:-6}; LIMIT=${3:-10000}; SEEDS=${4:-"0 1"}
DATA=${DATA:-folder:../shared/data/cifar10}
OUT=runs/explanations-$MODEL
PY=${PYTHON:-.venv/bin/python}
for SEED in $SEEDS; do
  common=(--dataset="$DATA" --model="$MODEL" --epochs="$EPOCHS" --train_limit="$LIMIT" --seed="$SEED"
          --eval_split=validation --validation_split=0.1 --export_dir=none --verbose=2)
  run() {  # run NAME FLAGS...
    local dir=$OUT/$1-seed$SEED; shift
    [ -f "$dir/results.json" ] || "$PY" train.py "${common[@]}" --output_dir="$dir" "$@"
  }
  run exact --method=introspective
  run jvp4 --method=introspective --explanation_estimator=jvp --num_probes=4
  run gradcam --method=introspective --explanation=gradcam
  run standard --method=standard
done
