#!/usr/bin/env bash
# The shipped small world model: data (recipes/tokenizer_data.sh + recipes/world_model_data.sh), then
# latents from the shipped tokenizers, then the mixture of every mode. Resumable: rerun after a kill.
# (Action post-training, `--init $OUT/final --mixture actions`, was tried for 250 steps: no gain, not shipped.)
set -euo pipefail
KINEMA=${KINEMA:-kinema}
OUT=${OUT:-outputs/runs/world-model-small}
$KINEMA train --preset small --data outputs/data/train --out $OUT \
  --steps ${STEPS:-4000} --batch-size 16 --lr 5e-4 --warmup 200 --dtype bf16 --ckpt-every 250 "$@"
