#!/usr/bin/env bash
# Given-frame and action conditioning (config.frame_condition) added to the joint generator + reasoner
# checkpoint by post-training: the noisy frames also read the last given frame and the actions since it
# (kinema/model/sequence.py `cond`). Both inputs start at zero, so step 0 is the old model.
# Data: recipes/tokenizer_data.sh, recipes/world_model_data.sh, recipes/reasoner_data.sh. Resumable: rerun after a kill.
set -euo pipefail
KINEMA=${KINEMA:-kinema}
INIT=${INIT:-outputs/runs/world-model-reason/final}
OUT=${OUT:-outputs/runs/world-model-cond}
$KINEMA train --preset small --init $INIT --frame-condition --data outputs/data/train --reason-data outputs/data/reason \
  --out $OUT --reason-weight 0.25 --steps ${STEPS:-4800} --batch-size 16 --lr ${LR:-3e-4} --warmup 100 --dtype bf16 \
  --ckpt-every 250 "$@"
