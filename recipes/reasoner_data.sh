#!/usr/bin/env bash
# Episodes with physically implausible twins for the reasoner's plausibility task (the other reasoner
# tasks read the QA of the world-model data). Seed 4 is disjoint from training (0, 2, 3) and held-out (1); seed 6
# (reason2/) is the second set `recipes/reasoner_post.sh targets` adds, seed 7 (reason3/, 150 a world: about
# 16 min) the larger set the adapter round adds, seed 5 the held-out set. Resumable.
set -euo pipefail
OUT=${1:-outputs/data}
N=${N_TWINS:-24}
KINEMA=${KINEMA:-kinema}
for w in dominoes free_fall gyroscope seesaw stable_stack tilted_slope u_slope unstable_stack; do
  $KINEMA worlds generate --scenario $w --episodes $N --seed 4 --twins --out $OUT/reason/$w-twins
done
# held-out twins for `kinema eval reason` (seed 5: no training run uses it)
for w in dominoes free_fall gyroscope seesaw stable_stack tilted_slope u_slope unstable_stack; do
  $KINEMA worlds generate --scenario $w --episodes ${N_HELDOUT:-6} --seed 5 --twins --out $OUT/heldout-reason/$w-twins
done
for w in dominoes free_fall gyroscope seesaw stable_stack tilted_slope u_slope unstable_stack; do
  $KINEMA worlds generate --scenario $w --episodes $N --seed 6 --twins --out $OUT/reason2/$w-twins
done
for w in dominoes free_fall gyroscope seesaw stable_stack tilted_slope u_slope unstable_stack; do
  $KINEMA worlds generate --scenario $w --episodes ${N_REASON3:-150} --seed 7 --twins --out $OUT/reason3/$w-twins
done
