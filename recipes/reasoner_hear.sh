#!/usr/bin/env bash
# The reasoner learns to hear: joint post-training (half generator tasks, half reasoner questions) from the
# shipped checkpoint, on the corrected first-collision answers, with each video's sound in the reasoner's
# input (--reason-audio; a fifth of the clips muted). Run as measured: 1,200 steps, then extended to 2,400
# (the cosine restarts from the resumed step). Data: recipes/tokenizer_data.sh, recipes/world_model_data.sh,
# recipes/reasoner_data.sh. Resumable: rerun after a kill.
set -euo pipefail
KINEMA=${KINEMA:-kinema}
INIT=${INIT:-checkpoints/world-model-small}
OUT=${OUT:-outputs/runs/world-model-hear}
for steps in 1200 2400; do
  $KINEMA train --preset small --init $INIT --data outputs/data/train --reason-data outputs/data/reason --out $OUT \
    --reason-weight 0.5 --reason-audio --steps $steps --batch-size 16 --lr 1e-4 --warmup 50 --dtype bf16 "$@"
done
