#!/usr/bin/env bash
# The shipped world model since "Counting and outcome questions drawn 3x": two post-trainings from the checkpoint
# before it (the one recipes/reasoner_hear.sh made; git commit ce4adb6 holds it).
#  1. 900 joint steps (half generator tasks, half reasoner questions; the model hears), count and outcome
#     questions drawn 3x as often. About 4 min of latents + 30-40 min at 2 s per step.
#  2. 900 generator-only steps with the reasoner frozen (--freeze-reasoner: its answers stay exactly those of
#     step 1), text-to-video drawn 2x as often, so the generator reads the prompt as the reasoner now encodes it.
#     16 min.
# Data: recipes/tokenizer_data.sh, recipes/world_model_data.sh, recipes/reasoner_data.sh. Each stage is resumable:
# rerun after a kill. Then: python scripts/ship_world_model.py --run outputs/runs/world-model-count-gen
set -euo pipefail
KINEMA=${KINEMA:-kinema}
INIT=${INIT:-checkpoints/world-model-small}
RUNS=${RUNS:-outputs/runs}
common=(--preset small --data outputs/data/train --batch-size 16 --lr 1e-4 --warmup 50 --dtype bf16)
$KINEMA train "${common[@]}" --reason-data outputs/data/reason --reason-weight 0.5 --reason-audio \
  --reason-task-weights count=3,outcome=3 --init $INIT --out $RUNS/world-model-count --steps 900 "$@"
$KINEMA train "${common[@]}" --init $RUNS/world-model-count/final --out $RUNS/world-model-count-gen \
  --reason-weight 0 --freeze-reasoner --mode-weights text2video=2 --steps 900 "$@"
