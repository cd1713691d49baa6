#!/usr/bin/env bash
# The generator on fresh episodes, simulated and encoded in memory by scripts/simulate_latents.py --kind world (no
# datasets on disk, no video codec: all a GPU machine with MuJoCo needs), then trained from the shipped weights with
# the reasoner frozen (--freeze-reasoner --reason-weight 0: its answers stay exactly as they are):
#   bash recipes/world_model_fresh.sh gpu    # on a CUDA machine with ~16 cores (DEVICE, WORKERS, STEPS to change)
#   bash recipes/world_model_fresh.sh cpu    # the same path at this CPU's scale: 704 episodes in ~3 min, 3,000 steps of 16
# Not run at the GPU scale yet; the cpu round was (2026-12-07: 63 min, not better at n = 10; BENCHMARKS.md). The mixture is recipes/world_model_data.sh's: per tabletop task the expert and, at
# about a third as many, the random arm (forward and inverse dynamics, policy on the expert's clips only), camera
# paths, and the physics worlds for the generator's other modes. Seeds 200-221 are new: no dataset made so far used
# them (training 0-73, held-out and confirmation sets 1, 5, 80, 81, calibration 101). Resumable: a set whose
# shard is complete is skipped, and the training resumes from its newest checkpoint. Measure before shipping
# (recipes/world_model_eval.sh with MODEL=$RUN/final), then: python scripts/ship_world_model.py --run $RUN
set -euo pipefail
ROUND=${1:?usage: world_model_fresh.sh gpu|cpu [kinema train flags...]}
shift
KINEMA=${KINEMA:-kinema}
PYTHON=${PYTHON:-python}
case $ROUND in
  gpu) seed=200 expert=240 random=80 camera=480 physics=48 DEVICE=${DEVICE:-cuda} WORKERS=${WORKERS:-15} LOADERS=${LOADERS:-8}
       train=(--batch-size 128 --lr 2e-4 --warmup 100 --seed 30 --steps ${STEPS:-3000}) ;;
  cpu) seed=210 expert=96 random=32 camera=192 physics=16 DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0}
       train=(--batch-size 16 --lr 1e-4 --warmup 50 --seed 31 --steps ${STEPS:-3000}) ;;
  *) echo "unknown round $ROUND: expected gpu or cpu" >&2; exit 2 ;;
esac
RUN=${RUN:-outputs/runs/world-model-fresh-gen-$ROUND}
sets=(camera_motion:$camera:$seed)
for task in push pick_place stack; do
  sets+=($task:$expert:$seed $task:$random:$((seed + 1)):random)
done
for w in dominoes free_fall gyroscope seesaw stable_stack tilted_slope u_slope unstable_stack; do
  sets+=($w:$physics:$seed)
done
# one thread a simulation worker: 15 workers' torch and numpy thread pools otherwise fight over the cores
OMP_NUM_THREADS=1 $PYTHON scripts/simulate_latents.py --kind world --out $RUN/fresh --workers $WORKERS \
  --device $DEVICE ${DEADLINE:+--deadline $DEADLINE} "${sets[@]}"
$KINEMA train --preset small --data $RUN/fresh --init ${INIT:-checkpoints/world-model-small} --freeze-reasoner \
  --reason-weight 0 --out $RUN --device $DEVICE --dtype bf16 --workers $LOADERS "${train[@]}" --log-every 10 \
  --ckpt-every 100 "$@"
