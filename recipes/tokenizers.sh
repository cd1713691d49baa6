#!/usr/bin/env bash
# The recipe of the shipped tokenizers, exactly as they were made: simulate the data, train CV 4x8x8,
# DV 4x8x8 and the audio tokenizer (one thread each, side by side on a 2-core machine), export them
# into checkpoints/ (bf16) and evaluate on held-out seeds. Every step resumes where a killed run stopped.
#   bash recipes/tokenizers.sh     (about 90 min of wall time on the shared 2-core machine; see README)
# The video runs were trained to step 3000 (cosine schedule over 3000 steps) and then resumed to 5500,
# which restarts the cosine over 5500 steps from step 3000 (a warm restart): both commands are below.
# The no-wavelet ablation is recipes/tokenizer_ablation.sh.
set -euo pipefail
KINEMA=${KINEMA:-.venv/bin/kinema}
DATA=${DATA:-outputs/data}
RUNS=${RUNS:-outputs/runs}
KINEMA=$KINEMA bash "$(dirname "$0")/tokenizer_data.sh" "$DATA"
common="--data $DATA/train --heldout $DATA/heldout --lr 0.001 --ckpt-every 250 --log-every 25 --eval-every 250 --dtype bf16"
video() {  # preset, run name, extra flags
  OMP_NUM_THREADS=1 $KINEMA tokenizer train --preset $1 --out $RUNS/$2 --steps 3000 --batch-size 8 --warmup 200 $common ${3:-}
  OMP_NUM_THREADS=1 $KINEMA tokenizer train --preset $1 --out $RUNS/$2 --steps 5500 --batch-size 8 --warmup 200 $common ${3:-}
}
video cv4x8x8-small cv4x8x8 &
video dv4x8x8-small dv4x8x8 &
OMP_NUM_THREADS=1 $KINEMA tokenizer train --preset audio-small --out $RUNS/audio --steps 1500 --batch-size 16 --warmup 100 $common &
wait
.venv/bin/python scripts/ship_tokenizers.py --runs $RUNS --out checkpoints
$KINEMA tokenizer eval --data $DATA/heldout --h264 --episodes 6 --out outputs/tokenizer_eval.json \
  --tokenizer checkpoints/tokenizer-cv4x8x8 checkpoints/tokenizer-dv4x8x8 checkpoints/tokenizer-audio
