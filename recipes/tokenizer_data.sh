#!/usr/bin/env bash
# Simulate the tokenizers' training data (seed 0) and held-out evaluation data (seed 1):
# every world at 64x64, all cameras. Resumable: rerun to finish an interrupted run.
set -euo pipefail
OUT=${1:-outputs/data}
N_PHYS=${N_PHYS:-48}; N_TABLE=${N_TABLE:-16}; N_HELD=${N_HELD:-6}
KINEMA=${KINEMA:-kinema}
for w in free_fall tilted_slope u_slope stable_stack unstable_stack dominoes seesaw gyroscope camera_motion; do
  $KINEMA worlds generate --scenario $w --episodes $N_PHYS --seed 0 --out $OUT/train/$w
  $KINEMA worlds generate --scenario $w --episodes $N_HELD --seed 1 --out $OUT/heldout/$w
done
for w in push pick_place stack; do
  $KINEMA worlds generate --scenario $w --episodes $N_TABLE --seed 0 --out $OUT/train/$w
  $KINEMA worlds generate --scenario $w --episodes $N_HELD --seed 1 --out $OUT/heldout/$w
done
