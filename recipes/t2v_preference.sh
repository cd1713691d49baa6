#!/usr/bin/env bash
# Text-to-video preference tuning on the reasoner critic's choices (Diffusion-DPO; BENCHMARKS.md "Preference
# tuning on the critic's choices"; not shipped: its text-to-video rose, its physics alignment fell in all eight
# worlds). From the shipped weights, on this CPU:
#   pairs   240 training captions of the passive worlds x 4 draws, each scored by the critic (11 min)
#   train   candidate B: 400 steps of 8 pairs, lr 3e-5, beta 500, generator only (6.5 min)
#   dev     held-out episodes 40-59 (the set settings were chosen on), one draw (40 s)
#   test    held-out episodes 0-39, one draw, as BENCHMARKS' text-to-video figures (100 s)
#   ship    every evaluation of the world model's generator on the candidate (recipes/world_model_eval.sh; hours)
set -euo pipefail
PYTHON=${PYTHON:-python}
KINEMA=${KINEMA:-kinema}
PAIRS=${PAIRS:-outputs/t2v-dpo/pairs}
RUN=${RUN:-outputs/runs/t2v-dpo-b}
case "${1:-all}" in
  pairs) PYTHONPATH=. $PYTHON scripts/t2v_preference.py pairs --out $PAIRS --episodes 60 --draws 4 ;;
  train) PYTHONPATH=. $PYTHON scripts/t2v_preference.py train --pairs $PAIRS --out $RUN --steps 400 --lr 3e-5 --beta 500 ;;
  dev) $KINEMA eval text2video --model $RUN/final --first 40 --n 20 --out $RUN/eval-dev --no-progress ;;
  test) $KINEMA eval text2video --model $RUN/final --n 40 --out $RUN/eval --no-progress ;;
  ship) MODEL=$RUN/final OUT=outputs/eval-wm-dpo N=5 bash recipes/world_model_eval.sh ;;
  all) for step in pairs train dev test; do bash "$0" $step; done ;;
  *) echo "usage: $0 [pairs|train|dev|test|ship|all]" >&2; exit 2 ;;
esac
