#!/usr/bin/env bash
# The reasoner's GPU round (shipped since it was made): fresh episodes, simulated and encoded in memory by
# scripts/simulate_reason_latents.py (no datasets on disk, no video codec: what a GPU machine with only MuJoCo
# needs), then the adapter of the checkpoint before it (git bc0c687) trained on their questions alone, so every
# generator output stays as it was.
#
#   bash recipes/reasoner_gpu.sh                # on a CUDA machine (DEVICE=cuda, 15 simulation workers)
#   DEVICE=cpu WORKERS=2 bash recipes/reasoner_gpu.sh   # the same on this CPU: about 7 hours, nearly all training
#
# Made on one H200 with 16 cores: 120 s to simulate and encode the 49 sets below but one (stack:16:12 was cut by
# the deadline the round ran under, so it is left out here): 1,984 episodes, 7,936 clips, 64,396 questions; then
# 2,341 steps of 128 questions at lr 4e-4 in 230 s (0.096 s a step). Seeds 8-12 are new: the tokenizer and world
# model trained on 0, 2 and 3, the earlier reasoner rounds on 4, 6 and 7; 1 and 5 are held out.
# Then: python scripts/ship_world_model.py --run outputs/runs/world-model-gpu
set -euo pipefail
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-15}
RUN=${RUN:-outputs/runs/world-model-gpu}
INIT=${INIT:-$RUN/init}
KINEMA=${KINEMA:-kinema}
PYTHON=${PYTHON:-python}
physics="dominoes free_fall gyroscope seesaw stable_stack tilted_slope u_slope unstable_stack"
sets=()
for seed in 8 9 10 11 12; do
  for w in $physics; do sets+=("$w:24:$seed:twins"); done  # each episode and its implausible twin
  case $seed in 8|10) sets+=("push:16:$seed" "pick_place:16:$seed" "stack:16:$seed") ;;
                12) sets+=("push:16:$seed" "pick_place:16:$seed") ;;
  esac
done
if [ ! -s $INIT/model.safetensors ]; then  # the checkpoint this round started from, read from git
  mkdir -p $INIT
  for f in model.safetensors config.json tokenizer.json; do
    git show bc0c687:checkpoints/world-model-small/$f > $INIT/$f
  done
fi
$PYTHON scripts/simulate_reason_latents.py --out $RUN/shards --workers $WORKERS --device $DEVICE "${sets[@]}"
$KINEMA train --preset small --reason-data $RUN/shards --reason-weight 1 --reason-audio --reason-adapter 64 \
  --reason-pixels 2 --init $INIT --out $RUN --device $DEVICE --dtype bf16 --workers $(( WORKERS - 1 )) \
  --batch-size 128 --lr 4e-4 --warmup 100 --seed 5 --steps 2341 --log-every 10 --ckpt-every 250 \
  --reason-task-weights count=4,outcome=5,attribute=2,timing=2,plausibility=4 "$@"
