#!/usr/bin/env bash
# The decoders of the shipped video tokenizers, fine-tuned with their encoders frozen: every latent stays
# bit-identical, so the world models trained on them (and their cached latents) stay valid while
# reconstruction improves. Trains on every episode under outputs/data/train (recipes/tokenizer_data.sh +
# recipes/world_model_data.sh). Resumable: rerun after a kill.
#   bash recipes/tokenizer_decoders.sh     (about 50 + 67 + 35 min on the 2-core machine; see README)
# CV_BASE / DV_BASE / AUDIO_BASE: the runs of recipes/tokenizers.sh. The DV round started from the shipped folder
# (checkpoints/tokenizer-dv4x8x8 as of commit b860e8b): the same weights, stored in bf16 (for exactly those, set
# DV_BASE to that folder: git archive b860e8b checkpoints/tokenizer-dv4x8x8 | tar -x -C DIR). The audio round (2026-12-06) started from the shipped audio folder of commit
# cd3cada (the same weights as the run of recipes/tokenizers.sh, stored in bf16), with outputs/data/train holding
# the episodes of recipes/tokenizer_data.sh alone (the sound tracks the audio tokenizer itself was trained on).
set -euo pipefail
KINEMA=${KINEMA:-.venv/bin/kinema}
DATA=${DATA:-outputs/data}
RUNS=${RUNS:-outputs/runs}
decoder() {  # init folder, run name, steps[, batch size]
  OMP_NUM_THREADS=${THREADS:-1} $KINEMA tokenizer train --init $1 --freeze-encoder --out $RUNS/$2 \
    --data $DATA/train --heldout $DATA/heldout --steps $3 --batch-size ${4:-8} --warmup 100 --lr 0.0005 \
    --ckpt-every 250 --log-every 25 --eval-every 500 --dtype bf16
}
THREADS=2 decoder ${CV_BASE:-$RUNS/cv4x8x8/final} cv4x8x8-dec 12000   # shipped as tokenizer-cv4x8x8 (commit c9cc23c)
decoder ${DV_BASE:-$RUNS/dv4x8x8/final} dv4x8x8-dec 7000
# Not shipped: a second CV round from the first, same settings (`decoder $RUNS/cv4x8x8-dec/final cv4x8x8-dec2 7000`,
# run beside the DV round), stayed flat on the held-out curve (26.22, 26.22, 26.21 dB at steps 500, 1,000, 1,500)
# and was stopped (BENCHMARKS.md, Decoder fine-tuning).
decoder ${AUDIO_BASE:-$RUNS/audio/final} audio-dec 8000 16
.venv/bin/python scripts/ship_tokenizers.py --runs $RUNS --out checkpoints --cv cv4x8x8-dec --dv dv4x8x8-dec \
  --audio audio-dec
$KINEMA tokenizer eval --data $DATA/heldout --h264 --episodes 6 --out outputs/tokenizer_eval.json \
  --tokenizer checkpoints/tokenizer-cv4x8x8 checkpoints/tokenizer-dv4x8x8 checkpoints/tokenizer-audio
