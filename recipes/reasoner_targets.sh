#!/usr/bin/env bash
# The shipped world model since "Twice the reasoner's episodes": two post-trainings from the checkpoint before it
# (the one recipes/reasoner_count.sh made; git commit 6d4edb5 holds it).
#  1. 1,200 joint steps (half generator tasks, half reasoner questions; the model hears) on twice the reasoner's
#     episodes (reason/ and reason2/, seeds 4 and 6), with the four questions that have a target in the
#     reasoner issue drawn more often: count and outcome 3x, timing and plausibility 2x.
#     About 6 min of latents + 40 min at 2 s per step.
#  2. 900 generator-only steps with the reasoner frozen (--freeze-reasoner: its answers stay exactly those of
#     step 1), text-to-video drawn 2x as often, so the generator reads the prompt as the reasoner now encodes it.
#     16 min.
# Data: recipes/tokenizer_data.sh, recipes/world_model_data.sh, recipes/reasoner_data.sh. Each stage is resumable:
# rerun after a kill. Then: python scripts/ship_world_model.py --run outputs/runs/world-model-targets-gen
set -euo pipefail
KINEMA=${KINEMA:-kinema}
INIT=${INIT:-checkpoints/world-model-small}
RUNS=${RUNS:-outputs/runs}
common=(--preset small --data outputs/data/train --batch-size 16 --lr 1e-4 --warmup 50 --dtype bf16)
$KINEMA train "${common[@]}" --reason-data outputs/data/reason outputs/data/reason2 --reason-weight 0.5 --reason-audio \
  --reason-task-weights count=3,outcome=3,timing=2,plausibility=2 --init $INIT --out $RUNS/world-model-targets \
  --steps 1200 "$@"
$KINEMA train "${common[@]}" --init $RUNS/world-model-targets/final --out $RUNS/world-model-targets-gen \
  --reason-weight 0 --freeze-reasoner --mode-weights text2video=2 --steps 900 "$@"
