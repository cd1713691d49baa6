#!/usr/bin/env bash
# Motion-weighted post-training (config.motion_weight, kinema/model/train.py): the vision loss of a noisy token
# is weighed by how far it is from the given frame's patch at its place, so the few tokens where the arm and what
# it moves change (what the actions decide) carry the loss instead of the static table. From the shipped weights
# (recipes/world_model_pose.sh), same mixture and reasoner share. Data: recipes/tokenizer_data.sh,
# recipes/world_model_data.sh, recipes/reasoner_data.sh. Resumable: rerun after a kill.
set -euo pipefail
KINEMA=${KINEMA:-kinema}
INIT=${INIT:-checkpoints/world-model-small}
OUT=${OUT:-outputs/runs/world-model-motion}
$KINEMA train --preset small --init $INIT --motion-weight ${MOTION_WEIGHT:-3} --data outputs/data/train \
  --reason-data outputs/data/reason --out $OUT --reason-weight 0.25 --steps ${STEPS:-3000} --batch-size 16 \
  --lr ${LR:-2e-4} --warmup 100 --dtype bf16 --ckpt-every 250 "$@"
