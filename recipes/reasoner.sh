#!/usr/bin/env bash
# The shipped small world model with its reasoner: joint post-training of the generator mixture and the
# reasoner's questions (half of the samples each), from the 4000-step generator (recipes/world_model.sh).
# Data: recipes/tokenizer_data.sh, recipes/world_model_data.sh, recipes/reasoner_data.sh. Resumable: rerun after a kill.
set -euo pipefail
KINEMA=${KINEMA:-kinema}
INIT=${INIT:-outputs/runs/world-model-small/final}
OUT=${OUT:-outputs/runs/world-model-reason}
$KINEMA train --preset small --init $INIT --data outputs/data/train --reason-data outputs/data/reason --out $OUT \
  --reason-weight 0.5 --steps ${STEPS:-3000} --batch-size 16 --lr 3e-4 --warmup 100 --dtype bf16 --ckpt-every 250 "$@"
