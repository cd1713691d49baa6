#!/usr/bin/env bash
# Inverse dynamics' own adapter (BENCHMARKS.md, "Inverse dynamics' own adapter"; benchmarks/prereg/inverse-adapter.md):
# a rank-16 LoRA on the generator that only inverse-dynamics samples take, trained alone on inverse dynamics from
# the shipped world model; every other mode and the reasoner stay bit for bit as they were. Stages (each resumable):
#   bash recipes/inverse_adapter.sh data     # the world model's tabletop and camera episodes + new ones (seed 5), ~6 min
#   bash recipes/inverse_adapter.sh train    # 3,000 steps of 16 (~25 min on this CPU)
#   bash recipes/inverse_adapter.sh export   # the run as a checkpoint folder beside the tokenizers
#   bash recipes/inverse_adapter.sh calib    # 16 draws on the calibration episodes, then the line (~13 min)
#   bash recipes/inverse_adapter.sh score A:B  # draws on held-out episodes A..B-1 and the ratios, beside the shipped model's
#   bash recipes/inverse_adapter.sh high     # (tried, not shipped) the shipped adapter trained on at the one-step estimate's noise
#   bash recipes/inverse_adapter.sh context  # the shipped adapter trained on with a reasoner adapter for its given frames
#                                            # (--inverse-context 16; RUN=outputs/runs/world-model-inverse-context for export/calib/score)
#   bash recipes/inverse_adapter.sh own      # the arm's own adapters (--inverse-own single_arm) trained on from the shipped ones on
#                                            # the tabletop alone; the camera's stay bit for bit
#                                            # (RUN=outputs/runs/world-model-inverse-own for export/calib/score);
#                                            # INIT=that candidate STEPS=2000 LR=2e-4 SEED=46 SUFFIX=-more46 trains on (shipped)
set -euo pipefail
KINEMA=${KINEMA:-kinema}
DATA=${DATA:-outputs/data} RUN=${RUN:-outputs/runs/world-model-inverse} RANK=${RANK:-16}
CAND=${CAND:-outputs/inverse-adapter/ckpt/world-model-small} SHIPPED=checkpoints/world-model-small
DRAWS=${DRAWS:-outputs/inverse-adapter/draws}  # a new model needs a new folder: draws found there are kept
case "${1:-}" in
  data)
    for w in push pick_place stack; do
      $KINEMA worlds generate --scenario $w --episodes 16 --seed 0 --out $DATA/train/$w --workers 2
      $KINEMA worlds generate --scenario $w --episodes 120 --seed 2 --out $DATA/idtrain/$w-expert --workers 2
      $KINEMA worlds generate --scenario $w --episodes 48 --seed 3 --policy random --out $DATA/idtrain/$w-random --workers 2
      $KINEMA worlds generate --scenario $w --episodes 400 --seed 5 --out $DATA/idtrain/$w-extra --workers 2
    done
    $KINEMA worlds generate --scenario camera_motion --episodes 48 --seed 0 --out $DATA/train/camera_motion --workers 2
    $KINEMA worlds generate --scenario camera_motion --episodes 480 --seed 2 --out $DATA/idtrain/camera_motion-paths --workers 2
    $KINEMA worlds generate --scenario camera_motion --episodes 1000 --seed 5 --out $DATA/idtrain/camera_motion-extra --workers 2 ;;
  train)
    $KINEMA train --preset small --data $DATA/train/{push,pick_place,stack,camera_motion} $DATA/idtrain --init $SHIPPED --inverse-adapter $RANK --mixture actions \
      --reason-weight 0 --steps ${STEPS:-3000} --batch-size 16 --lr 5e-4 --seed 40 --dtype bf16 --out $RUN ;;
  high)  # (tried, not shipped: the turn still not read) 1,500 more steps, half the noise levels in t = [0.9, 1]
    $KINEMA train --preset small --data $DATA/train/{push,pick_place,stack,camera_motion} $DATA/idtrain --init $SHIPPED \
      --inverse-adapter $RANK --mixture actions --reason-weight 0 --steps 1500 --batch-size 16 --lr 2e-4 --seed 41 \
      --dtype bf16 --high-noise-share 0.5 --out $RUN-high ;;
  context)  # benchmarks/prereg/inverse-context.md
    $KINEMA train --preset small --data $DATA/train/{push,pick_place,stack,camera_motion} $DATA/idtrain --init $SHIPPED \
      --inverse-adapter $RANK --inverse-context ${CONTEXT_RANK:-16} --mixture actions --reason-weight 0 \
      --steps ${STEPS:-3000} --batch-size 16 --lr ${LR:-5e-4} --seed ${SEED:-42} --dtype bf16 --out $RUN-context${SUFFIX:-} ;;
  own)  # benchmarks/prereg/inverse-own.md; inverse-own-more.md trains on from that candidate (INIT, SUFFIX=-more)
    $KINEMA train --preset small --data $DATA/train/{push,pick_place,stack} $DATA/idtrain/{push,pick_place,stack}-* \
      --init ${INIT:-$SHIPPED} --inverse-adapter $RANK --inverse-own single_arm --mixture actions --reason-weight 0 \
      --steps ${STEPS:-4000} --batch-size 16 --lr ${LR:-3e-4} --seed ${SEED:-44} --dtype bf16 --out $RUN-own${SUFFIX:-} ;;
  export)
    python scripts/ship_world_model.py --run $RUN --out $CAND
    for t in tokenizer-cv4x8x8 tokenizer-audio; do ln -sfn "$(realpath checkpoints/$t)" "$(dirname $CAND)/$t"; done ;;
  calib)
    python scripts/inverse_draws.py draw --model $CAND --set calibration --episodes 0:300 --draws 16 --out $DRAWS/calibration
    python scripts/inverse_draws.py fit --model $CAND --out $DRAWS/calibration --episodes 0:300 --k 16 \
      --keep-raw single_arm:translation,single_arm:gripper --calibration $CAND/inverse_dynamics_calibration.json ;;
  score)
    R=${2:?episodes A:B}
    for m in shipped candidate; do
      M=$([ $m = shipped ] && echo $SHIPPED || echo $CAND)
      python scripts/inverse_draws.py draw --model $M --episodes $R --draws 16 --out $DRAWS/heldout-$m
      python scripts/inverse_draws.py score --out $DRAWS/heldout-$m --episodes $R --k 16 \
        --calibration $M/inverse_dynamics_calibration.json | tee $DRAWS/score-$m-${R/:/-}.txt
    done ;;
  *) sed -n 2,16p "$0"; exit 2 ;;
esac
