#!/usr/bin/env bash
# The shipped world model since "The reasoner hears": three post-trainings from the checkpoint before it.
#  1. Joint training (half generator tasks, half reasoner questions) on the corrected first-collision answers,
#     with each video's sound in the reasoner's input (--reason-audio; a fifth of the clips muted): 1,200 steps,
#     then extended to 2,400 (the cosine restarts from the resumed step). 4 min of latents + 76 min.
#  2. 900 more joint steps with timing questions drawn 4x as often. 30 min.
#  3. 900 generator-only steps with the reasoner frozen (--freeze-reasoner: its answers stay exactly those of
#     step 2), text-to-video drawn 2x as often: the generator learns to read the prompt as the reasoner now
#     encodes it (joint training had cost text-to-video 0.14 of named colours). 16 min.
# Data: recipes/tokenizer_data.sh, recipes/world_model_data.sh, recipes/reasoner_data.sh. Each stage is resumable:
# rerun after a kill. Then: python scripts/ship_world_model.py --run outputs/runs/world-model-hear-gen
set -euo pipefail
KINEMA=${KINEMA:-kinema}
INIT=${INIT:-checkpoints/world-model-small}
RUNS=${RUNS:-outputs/runs}
common=(--preset small --data outputs/data/train --batch-size 16 --lr 1e-4 --warmup 50 --dtype bf16)
joint=(--reason-data outputs/data/reason --reason-weight 0.5 --reason-audio)
for steps in 1200 2400; do
  $KINEMA train "${common[@]}" "${joint[@]}" --init $INIT --out $RUNS/world-model-hear --steps $steps "$@"
done
$KINEMA train "${common[@]}" "${joint[@]}" --init $RUNS/world-model-hear/final --out $RUNS/world-model-hear-timing \
  --reason-task-weights timing=4 --steps 900 "$@"
$KINEMA train "${common[@]}" --init $RUNS/world-model-hear-timing/final --out $RUNS/world-model-hear-gen \
  --reason-weight 0 --freeze-reasoner --mode-weights text2video=2 --steps 900 "$@"
