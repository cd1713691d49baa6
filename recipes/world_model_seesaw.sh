#!/usr/bin/env bash
# The generator relearns the seesaw: until the world was fixed (BENCHMARKS.md "The seesaw tips") every seesaw
# episode ended level, so the generator drew a seesaw that never moves. 2,000 generator-only steps on the world
# model's training data, simulated again since the fix (recipes/world_model_data.sh), the seesaw's clips drawn
# twice as often (its dataset is given twice); the reasoner and every input it reads stay fixed
# (--freeze-reasoner), so its answers are exactly those of the checkpoint it starts from. About 35 min of steps
# on this 2-core CPU, after 2 min of latents. Resumable: rerun after a kill. Then:
#   python scripts/ship_world_model.py --run outputs/runs/world-model-seesaw-gen
set -euo pipefail
KINEMA=${KINEMA:-kinema}
INIT=${INIT:-checkpoints/world-model-small}
OUT=${OUT:-outputs/runs/world-model-seesaw-gen}
$KINEMA train --preset small --data outputs/data/train outputs/data/train/seesaw --batch-size 16 --warmup 50 \
  --dtype bf16 --lr 1e-4 --init $INIT --out $OUT --reason-weight 0 --freeze-reasoner --steps ${STEPS:-2000} \
  --seed 12 --ckpt-every 250 --log-every 25 "$@"
