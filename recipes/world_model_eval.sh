#!/usr/bin/env bash
# The world-model rows of BENCHMARKS.md: every evaluation of the shipped model, next to copy_last on the
# same held-out episodes. Resumable (kinema eval reuses finished rollouts in --out).
set -euo pipefail
KINEMA=${KINEMA:-kinema}
MODEL=${MODEL:-checkpoints/world-model-small}
OUT=${OUT:-outputs/eval-wm}
N=${N:-5}
for who in "--model $MODEL" "--baseline copy_last"; do
  $KINEMA eval physics $who --n $N --out $OUT --no-progress
  $KINEMA eval actions $who --n $((2 * N)) --out $OUT --no-progress
done
$KINEMA eval text2video --model $MODEL --n 4 --out $OUT --no-progress
$KINEMA eval report --out $OUT
