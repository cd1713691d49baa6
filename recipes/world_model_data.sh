#!/usr/bin/env bash
# Extra tabletop episodes for the world model (on top of recipes/tokenizer_data.sh):
# expert and random arms, so forward dynamics sees actions that do not follow from the frames; and more
# camera paths (the tokenizer set has 48, one clip each: too few to learn to follow camera poses).
# Seeds 2 and 3 are disjoint from the tokenizer's training (0) and held-out (1) seeds. Resumable.
set -euo pipefail
OUT=${1:-outputs/data}
N_EXPERT=${N_EXPERT:-120}; N_RANDOM=${N_RANDOM:-48}; N_CAMERA=${N_CAMERA:-480}
KINEMA=${KINEMA:-kinema}
for w in push pick_place stack; do
  $KINEMA worlds generate --scenario $w --episodes $N_EXPERT --seed 2 --out $OUT/train/$w-expert
  $KINEMA worlds generate --scenario $w --episodes $N_RANDOM --seed 3 --policy random --out $OUT/train/$w-random
done
$KINEMA worlds generate --scenario camera_motion --episodes $N_CAMERA --seed 2 --out $OUT/train/camera_motion-paths
