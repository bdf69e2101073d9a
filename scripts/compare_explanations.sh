#!/usr/bin/env bash
# Validation accuracy of the explanation choices (docs/fast_introspection.md): exact input gradients,
# their JVP estimate, Grad-CAM at the last block (from a separate pass, or from the training pass
# itself), and standard training, on a split held out of train. Finished runs are skipped.
#
#   scripts/compare_explanations.sh [MODEL] [EPOCHS] [TRAIN_LIMIT] [SEEDS] [CHOICES]
#   e.g. scripts/compare_explanations.sh resnet20 15 5000 "0 1 2" "exact gradcam_shared standard"
#   .venv/bin/python -m introspective_tf.tools.summarize runs/explanations-<MODEL>
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-small_cnn}; EPOCHS=${2:-6}; LIMIT=${3:-10000}; SEEDS=${4:-"0 1"}; CHOICES=${5:-"exact jvp4 gradcam standard"}
DATA=${DATA:-folder:../shared/data/cifar10}
OUT=${OUT:-runs/explanations-$MODEL}
PY=${PYTHON:-.venv/bin/python}
declare -A FLAGS_OF=(
  [exact]="--method=introspective --explanation=gradient"
  [jvp4]="--method=introspective --explanation=gradient --explanation_estimator=jvp --num_probes=4"
  [gradcam]="--method=introspective --explanation=gradcam"
  [gradcam_shared]="--method=introspective --explanation=gradcam --explanation_mode=shared"
  [gradcam_shared_tau0.02]="--method=introspective --explanation=gradcam --explanation_mode=shared --similarity_temperature=0.02"
  [gradcam_shared_tau0.1]="--method=introspective --explanation=gradcam --explanation_mode=shared --similarity_temperature=0.1"
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
