#!/usr/bin/env bash
# The large world model (1.58B parameters; PRESET=base for 229M) on one GPU node with FSDP (`kinema train --sharding fsdp`):
# each of the GPUS ranks holds 1/GPUS of the weights, gradients and AdamW state (FSDP2, one unit per MoT layer),
# computes in bf16 autocast on fp32 weights, and checkpoints gather into the usual full safetensors, so a run
# resumes on another GPU count, under DDP or in one process. Same data and mixture as recipes/world_model.sh.
# Resumable: rerun after a kill.
#
# Shape-tested only, never run at scale: PRESET=tiny GPUS=2 DATA=<6 episodes> STEPS=2 BATCH=4 with `--device cpu`
# (2 gloo processes) trained, checkpointed and exported. Batch size, LR, warmup and steps are starting points.
# Rank 0 prepares the run folder (latents, text tokenizer, statistics) while the other ranks wait.
set -euo pipefail
PRESET=${PRESET:-large}
OUT=${OUT:-outputs/runs/world-model-$PRESET}
torchrun --standalone --nproc_per_node ${GPUS:-8} -m kinema.cli train --preset $PRESET --sharding fsdp \
  --data ${DATA:-outputs/data/train} --out $OUT --steps ${STEPS:-20000} --batch-size ${BATCH:-256} \
  --lr ${LR:-3e-4} --warmup ${WARMUP:-1000} --dtype bf16 --ckpt-every 500 "$@"
