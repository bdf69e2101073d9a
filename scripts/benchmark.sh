#!/usr/bin/env bash
# Step-time ratios of every explanation choice and method, on ResNet-20 at C = 10 and C = 100, written as
# rows of results/benchmark.jsonl (python -m introspective_tf.tools.report turns them into the docs' tables).
# Run it on a machine with nothing else running: each command interleaves its methods in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-results/benchmark.jsonl}
GRADIENT="introspective:explanation=gradient"
C10="standard,introspective,introspective:explanation_mode=inference,$GRADIENT"
C10="$C10,$GRADIENT;explanation_implementation=batch_jacobian,$GRADIENT;explanation_implementation=pfor"
C10="$C10,introspective:explanation=gradient_x_input,$GRADIENT;explanation_mode=shared"
C10="$C10,$GRADIENT;explanation_estimator=jvp;num_probes=1,$GRADIENT;explanation_estimator=jvp;num_probes=4"
C10="$C10,introspective:explanation_layer=stage2_block3_out,label_smoothing,pskd,tfkd_reg,dml"
# The softness set by the true-class mass (per batch, per example), and the teacher-free targets built on
# the model's own predictions (issue: PS-KD with explanation-ordered wrong classes; Online Label Smoothing).
C10="$C10,introspective:target_true_mass=0.75,introspective:target_true_mass=0.75;target_mass_scope=example"
C10="$C10,$GRADIENT;target_true_mass=0.75,pskd_explained,online_label_smoothing"
# TensorBoard's explanation images: a step plus an epoch end it does not draw at; one epoch it draws.
C10="$C10,standard+explanation_images,standard+explanation_images_drawn"
$PY -m introspective_tf.tools.benchmark --model=resnet20 --num_classes=10 --rounds=3 --steps=4 --methods="$C10" --output="$OUT"
# At C = 100 the vectorised exact implementations would need 10-20 GB; the loop is the exact path.
C100="standard,introspective,introspective:explanation_mode=inference,$GRADIENT"
C100="$C100,$GRADIENT;explanation_estimator=jvp;num_probes=1,introspective:explanation_layer=stage2_block3_out,pskd,tfkd_reg"
$PY -m introspective_tf.tools.benchmark --model=resnet20 --num_classes=100 --rounds=3 --steps=3 --methods="$C100" --output="$OUT"
