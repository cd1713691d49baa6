#!/usr/bin/env bash
# The policy mode learns to read where to go: a generator-only fine-tune of the shipped world model in which
# the policy is half of the expert tabletop draws (--mode-weights policy=4; ClipTasks draws the policy only on
# expert clips, never on the random arm's), on the world model's own training data (recipes/tokenizer_data.sh +
# recipes/world_model_data.sh) plus 200 new expert episodes a task (seed 5). The reasoner and every input it
# reads stay fixed (--freeze-reasoner), so its answers are exactly those of the checkpoint it starts from.
# About 45 min of steps on this 2-core CPU after the latents. Resumable: rerun after a kill. Then:
#   python scripts/ship_world_model.py --run outputs/runs/world-model-policy
set -euo pipefail
KINEMA=${KINEMA:-kinema}
INIT=${INIT:-checkpoints/world-model-small}
OUT=${OUT:-outputs/runs/world-model-policy}
for w in push pick_place stack; do
  $KINEMA worlds generate --scenario $w --episodes ${N_EXTRA:-200} --seed 5 --out outputs/data/policy/$w-expert5
done
$KINEMA train --preset small --data outputs/data/train outputs/data/policy --batch-size 16 --warmup 50 \
  --dtype bf16 --lr 1e-4 --init $INIT --out $OUT --reason-weight 0 --freeze-reasoner --mode-weights policy=4 \
  --steps ${STEPS:-2500} --seed 13 --ckpt-every 250 --log-every 25 "$@"
