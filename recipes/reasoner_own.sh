#!/usr/bin/env bash
# The seesaw's own reasoner adapter (BENCHMARKS.md, "The seesaw's own question adapter";
# benchmarks/prereg/reason-own-seesaw.md): a rank-64 update on top of the shipped question adapter that only
# questions about seesaw clips take, trained alone on the seesaw's questions; every other world's answers and every
# generator output stay bit for bit as they were. Stages (each resumable):
#   bash recipes/reasoner_own.sh data     # 3,200 new seesaw episodes (seeds 100-116; 100-101 with twins), ~4 min
#   bash recipes/reasoner_own.sh train    # encode their questions (~10 min), then 1,000 steps of 32 (~47 min on this CPU)
#   bash recipes/reasoner_own.sh export   # the run as a checkpoint folder beside the tokenizers
#     (candidate 1: tried, not shipped: seesaw plausibility 0.0303 lower against the 0.03 allowed)
#   bash recipes/reasoner_own.sh more     # candidate 2: 800 more seesaws with twins (seeds 117-120), then 300 steps
#                                         # on from candidate 1 with plausibility drawn 3x (~20 min)
#   RUN=outputs/runs/world-model-reason-own-seesaw-2 CAND=outputs/reason-own-2/ckpt/world-model-small bash recipes/reasoner_own.sh export
#     (candidate 2: tried, not shipped: the same 16 plausibility answers lost)
#   bash recipes/reasoner_own.sh keep     # candidate 3 (benchmarks/prereg/reason-own-seesaw-3.md): 300 steps on from
#                                         # candidate 2, keeping the shared adapter's plausibility answers (~20 min)
#   RUN=outputs/runs/world-model-reason-own-seesaw-3 CAND=outputs/reason-own-3/ckpt/world-model-small bash recipes/reasoner_own.sh export
#   bash recipes/reasoner_own.sh sets     # the evaluation's seesaw sets (seeds 81-90 with twins) and held-out seeds 1, 5
#   bash recipes/reasoner_own.sh eval MODEL NAME   # every answerable question of each set -> outputs/cand/NAME-SET/reason
set -euo pipefail
KINEMA=${KINEMA:-kinema}
DATA=${DATA:-outputs/data} RUN=${RUN:-outputs/runs/world-model-reason-own-seesaw}
CAND=${CAND:-outputs/reason-own/ckpt/world-model-small} SHIPPED=checkpoints/world-model-small
WORLDS="dominoes free_fall gyroscope seesaw stable_stack tilted_slope u_slope unstable_stack"
case "${1:-}" in
  data)
    for seed in 100 101; do
      $KINEMA worlds generate --scenario seesaw --episodes 100 --seed $seed --twins --out $DATA/own/seesaw-$seed-twins --workers 2
    done
    for seed in $(seq 102 116); do
      $KINEMA worlds generate --scenario seesaw --episodes 200 --seed $seed --out $DATA/own/seesaw-$seed --workers 2
    done ;;
  train)
    $KINEMA train --preset small --init $SHIPPED --reason-own seesaw --reason-weight 1 --reason-data $DATA/own \
      --reason-question "Which end of the seesaw ends up lower?" --reason-question-share 0.5 --reason-own-rank ${OWN_RANK:-64} \
      --reason-task-weights count=4,outcome=5,attribute=2,timing=2,plausibility=4 \
      --steps ${STEPS:-1000} --batch-size 32 --lr ${LR:-5e-4} --warmup 40 --seed ${SEED:-50} --dtype bf16 \
      --ckpt-every 250 --out $RUN ;;
  more)  # benchmarks/prereg/reason-own-seesaw-2.md
    for seed in 117 118 119 120; do
      $KINEMA worlds generate --scenario seesaw --episodes 200 --seed $seed --twins --out $DATA/own2/seesaw-$seed-twins --workers 2
    done
    $KINEMA train --preset small --init $CAND --reason-own seesaw --reason-weight 1 \
      --reason-data $RUN/reason_latents $DATA/own2 \
      --reason-question "Which end of the seesaw ends up lower?" --reason-question-share 0.35 \
      --reason-task-weights count=4,outcome=5,attribute=2,timing=2,plausibility=12 \
      --steps 300 --batch-size 32 --lr 2e-4 --warmup 20 --seed 51 --dtype bf16 --ckpt-every 100 --out $RUN-2 ;;
  keep)  # benchmarks/prereg/reason-own-seesaw-3.md
    $KINEMA train --preset small --init ${FROM:-outputs/reason-own-2/ckpt/world-model-small} --reason-own seesaw \
      --reason-weight 1 --reason-data $RUN/reason_latents $RUN-2/reason_latents \
      --reason-question "Which end of the seesaw ends up lower?" --reason-question-share 0.35 \
      --reason-task-weights count=4,outcome=5,attribute=2,timing=2,plausibility=12 \
      --reason-keep 4 --reason-keep-tasks plausibility \
      --steps 300 --batch-size 32 --lr 2e-4 --warmup 20 --seed 52 --dtype bf16 --ckpt-every 100 --out $RUN-3 ;;
  export)
    python scripts/ship_world_model.py --run $RUN --out $CAND
    for t in tokenizer-cv4x8x8 tokenizer-audio; do ln -sfn "$(realpath checkpoints/$t)" "$(dirname $CAND)/$t"; done ;;
  sets)
    for w in free_fall tilted_slope u_slope stable_stack unstable_stack dominoes seesaw gyroscope camera_motion push pick_place stack; do
      $KINEMA worlds generate --scenario $w --episodes 6 --seed 1 --out $DATA/heldout/$w --workers 2
    done
    for w in $WORLDS; do
      $KINEMA worlds generate --scenario $w --episodes 6 --seed 5 --twins --out $DATA/heldout-reason/$w-twins --workers 2
    done
    for seed in 81 82 83 84 85 86 87 88 89 90; do
      n=$([ $seed -ge 84 ] && echo 24 || echo 12)
      $KINEMA worlds generate --scenario seesaw --episodes $n --seed $seed --twins --out $DATA/confirm$seed/seesaw-twins --workers 2
    done ;;
  eval)
    model=${2:?model folder} name=${3:?a name for its results}
    for s in ${SETS:-co s81 s82 s83 s84 s85 s86 s87 s88 s89 s90}; do
      case $s in
        co) data="$DATA/heldout $DATA/heldout-reason" ;;
        s*) data=$DATA/confirm${s#s}/seesaw-twins ;;
      esac
      out=outputs/cand/$name-$s/reason
      mkdir -p $out outputs/data/confirm-latents/$s
      [ -e $out/latents ] || ln -s "$PWD/outputs/data/confirm-latents/$s" $out/latents
      $KINEMA eval reason --model $model --data $data --tasks ${TASKS:-count,outcome,timing,plausibility} \
        --max-per-task 5000 --out $out --no-progress ${EVAL_FLAGS:-}
    done ;;
  *) sed -n 2,19p "$0"; exit 2 ;;
esac
