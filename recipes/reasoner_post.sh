#!/usr/bin/env bash
# The reasoner's post-training rounds after recipes/reasoner_hear.sh, in the order they shipped:
#   bash recipes/reasoner_post.sh count     # from the weights of git commit ce4adb6
#   bash recipes/reasoner_post.sh targets   # from those of 6d4edb5
#   bash recipes/reasoner_post.sh timing    # from those of 549b991
#   bash recipes/reasoner_post.sh pixels    # from those of f80a39b (tried, not shipped)
#   bash recipes/reasoner_post.sh colour    # from those of f80a39b (tried, not shipped: the generator lost)
#   bash recipes/reasoner_post.sh questions # from those of f80a39b
#   bash recipes/reasoner_post.sh adapter   # from those of f80a39b (read from git unless INIT is given)
#   bash recipes/reasoner_post.sh adapter-pixels  # from those of 61b1fd9 (the adapter round's; read from git likewise)
# Each round is two stages from the shipped checkpoint before it (INIT):
#  1. joint steps (half generator tasks, half reasoner questions; the model hears) with some questions drawn
#     more often (--reason-task-weights); the colour and questions rounds ask questions only (the generator's
#     weights rest);
#  2. 900 generator-only steps with the reasoner frozen (--freeze-reasoner: its answers stay exactly those of
#     stage 1), text-to-video drawn 2x as often, so the generator reads the prompt as the reasoner now encodes it.
#     (The timing round: 800.)
# The colour round then has a third: joint steps again (JOINT_STEPS), all weights free, so the reasoner weights
# that encode the generator's context and prompt learn from the generator's loss too.
# The adapter round is one stage: questions only through the reasoner's adapter (--reason-adapter), every other
# weight still, so the generator needs no repair stage (its outputs are those of INIT, bit for bit).
# Data: recipes/tokenizer_data.sh, recipes/world_model_data.sh, recipes/reasoner_data.sh. Each stage is resumable:
# rerun after a kill. Then: python scripts/ship_world_model.py --run outputs/runs/world-model-ROUND-gen (colour: -joint;
# adapter: outputs/runs/world-model-adapter2; adapter-pixels: outputs/runs/world-model-adapter-pixels3)
set -euo pipefail
ROUND=${1:?usage: reasoner_post.sh count|targets|timing|pixels|colour|questions|adapter [kinema train flags...]}
shift
KINEMA=${KINEMA:-kinema}
INIT=${INIT:-checkpoints/world-model-small}
RUNS=${RUNS:-outputs/runs}
gen_steps=900
extra=()
case $ROUND in
  # 900 joint steps, count and outcome questions drawn 3x. 4 min of latents + 30-40 min; then 16 min.
  count) steps=900 reason=(outputs/data/reason) weights=count=3,outcome=3 ;;
  # 1,200 joint steps on twice the reasoner's episodes (seeds 4 and 6), the four questions with a target in the
  # reasoner issue drawn more often. 6 min of latents + 63 min; then 31 min.
  targets) steps=1200 reason=(outputs/data/reason outputs/data/reason2) weights=count=3,outcome=3,timing=2,plausibility=2 ;;
  # 1,000 joint steps, timing and plausibility (the two that moved last round) drawn 3x. 52 min; then 27 min.
  timing) steps=1000 gen_steps=800 reason=(outputs/data/reason outputs/data/reason2)
          weights=count=2,outcome=2,timing=3,plausibility=3 ;;
  # the reasoner gains its own view of the pixels (--reason-pixels 4: each vision token also reads its 16x16
  # pixels pooled to 4x4 cells; the new input starts at zero), count, outcome and attribute (colour) questions
  # drawn more often, lr 2e-4 for the new input (the generator stage 1e-4 as always). 1,000 joint steps; then 700.
  pixels) steps=1000 gen_steps=700 reason=(outputs/data/reason outputs/data/reason2) lr=2e-4
          weights=count=3,outcome=3,attribute=2,timing=2,plausibility=2 extra=(--reason-pixels 4) ;;
  # the pixel view at the resolution the colour probe names 84% of objects from (--reason-pixels 2: 2x2-pixel
  # cells, 192 numbers a token), trained on questions only (twice the questions a step buys in the joint mixture),
  # the questions whose answers are colours drawn more often. 1,800 steps (60 min); then 1,200 generator-only
  # steps, whose given frames now carry their pixels too (30 min); then 1,000 joint steps (38 min).
  colour) steps=1800 gen_steps=1200 joint_steps=1000 reason=(outputs/data/reason outputs/data/reason2) lr=2e-4
          p_reason=1 weights=count=3,outcome=3,attribute=3,timing=2,plausibility=2 extra=(--reason-pixels 2) ;;
  # the colour round without the pixel view (its control, which answered as well): 1,800 questions-only steps
  # (about 40 min); then 400 generator-only steps (10 min; BENCHMARKS.md "Questions only, without the pixel view").
  questions) steps=1800 gen_steps=400 reason=(outputs/data/reason outputs/data/reason2) lr=2e-4
          p_reason=1 weights=count=3,outcome=3,attribute=3,timing=2,plausibility=2 ;;
  # a rank-64 adapter (3.2 MB) learns the questions on the three reasoner sets (reason3: 7x the episodes of a
  # world), lr 5e-4, 3,000 steps (62 min), then 1,500 more (33 min); nothing else trains (BENCHMARKS.md "The reasoner's adapter").
  adapter) steps=3000 gen_steps=0 reason=(outputs/data/reason outputs/data/reason2 outputs/data/reason3) lr=5e-4
           p_reason=1 weights=count=3,outcome=3,attribute=3,timing=2,plausibility=2 extra=(--reason-adapter 64) ;;
  # the adapter gains the pixel view at 2x2-pixel cells (--reason-pixels 2), read by questions only, so the generator
  # still stays as it was: 2,500 steps at lr 4e-4, data order seed 2 (49 min), then 1,500 at 2e-4, seed 3 (41 min),
  # then 1,000 at 1e-4 (24 min, below)
  # (BENCHMARKS.md "The adapter reads pixels").
  adapter-pixels) steps=2500 gen_steps=0 reason=(outputs/data/reason outputs/data/reason2 outputs/data/reason3)
           lr=4e-4 seed=2 p_reason=1 weights=count=3,outcome=3,attribute=3,timing=2,plausibility=2
           extra=(--reason-adapter 64 --reason-pixels 2) ;;
  *) echo "reasoner_post.sh: unknown round '$ROUND' (expected count, targets, timing, pixels, colour, questions, adapter or adapter-pixels)" >&2
     exit 2 ;;
esac
base=""
case $ROUND in  # the adapter rounds start from weights shipped before them, read from git
  adapter) base=f80a39b INIT_DIR=$RUNS/world-model-timing-shipped ;;  # the generator the adapter keeps
  adapter-pixels) base=61b1fd9 INIT_DIR=$RUNS/world-model-adapter-shipped  # (bf16) unless the adapter round's run is here
                  [ -d $RUNS/world-model-adapter2/final ] && [ "$INIT" = checkpoints/world-model-small ] && INIT=$RUNS/world-model-adapter2/final ;;
esac
if [ -n "$base" ] && [ "$INIT" = checkpoints/world-model-small ]; then
  INIT=$INIT_DIR
  mkdir -p $INIT
  for f in model.safetensors config.json tokenizer.json; do
    [ -s $INIT/$f ] || git show $base:checkpoints/world-model-small/$f > $INIT/$f
  done
fi
common=(--preset small --data outputs/data/train --batch-size 16 --warmup 50 --dtype bf16)
$KINEMA train "${common[@]}" --lr ${lr:-1e-4} --reason-data "${reason[@]}" --reason-weight ${p_reason:-0.5} --reason-audio "${extra[@]}" \
  --reason-task-weights $weights --init $INIT --out $RUNS/world-model-$ROUND --steps $steps --seed ${seed:-0} "$@"
if [ -n "$base" ]; then  # the loss still fell: 1,500 more steps at half the rate, a new data order
  $KINEMA train "${common[@]}" --lr $(python3 -c "print($lr / 2)") --reason-data "${reason[@]}" --reason-weight 1 \
    --reason-audio "${extra[@]}" --reason-task-weights $weights --init $RUNS/world-model-$ROUND/final \
    --out $RUNS/world-model-${ROUND}2 --steps 1500 --seed $(( ${seed:-0} + 1 )) "$@"
fi
if [ "$ROUND" = adapter-pixels ]; then  # a third stage at lr 1e-4, counting and plausibility drawn 4x (24 min)
  $KINEMA train "${common[@]}" --lr 1e-4 --reason-data "${reason[@]}" --reason-weight 1 --reason-audio "${extra[@]}" \
    --reason-task-weights count=4,outcome=3,attribute=2,timing=2,plausibility=4 \
    --init $RUNS/world-model-adapter-pixels2/final --out $RUNS/world-model-adapter-pixels3 --steps 1000 --seed 4 "$@"
fi
[ "$gen_steps" = 0 ] && exit 0
$KINEMA train "${common[@]}" --lr 1e-4 --init $RUNS/world-model-$ROUND/final --out $RUNS/world-model-$ROUND-gen \
  --reason-weight 0 --freeze-reasoner --mode-weights text2video=2 --steps $gen_steps "$@"
if [ -n "${joint_steps:-}" ]; then
  $KINEMA train "${common[@]}" --lr 1e-4 --reason-data "${reason[@]}" --reason-weight 0.5 --reason-audio \
    --reason-task-weights $weights --mode-weights text2video=2 --init $RUNS/world-model-$ROUND-gen/final \
    --out $RUNS/world-model-$ROUND-joint --steps $joint_steps "$@"
fi
