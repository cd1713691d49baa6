#!/usr/bin/env bash
# The world-model rows of BENCHMARKS.md: every evaluation of the shipped model, next to copy_last on the
# same held-out episodes. Resumable (kinema eval reuses finished rollouts in --out).
set -euo pipefail
KINEMA=${KINEMA:-kinema}
MODEL=${MODEL:-checkpoints/world-model-small}
OUT=${OUT:-outputs/eval-wm}
N=${N:-5}
# the autoregressive world model (recipes/ar_world_model.sh) on the same physics-alignment episodes
$KINEMA eval physics --model ${AR_MODEL:-checkpoints/ar-world-model-small} --n $N --out $OUT --no-progress
for who in "--model $MODEL" "--baseline copy_last"; do
  $KINEMA eval physics $who --n $N --out $OUT --no-progress
  $KINEMA eval actions $who --n $((2 * N)) --out $OUT --no-progress
done
# the action test with the power to tell a gap from zero: 30 episodes a world, 4 samples a clip (about 14 min)
$KINEMA eval actions --model $MODEL --n $((6 * N)) --samples 4 --out $OUT --no-progress
# ... and on 120 of pick_place and stack, whose gaps are smaller (about 19 min; episodes 30-119 are the test)
$KINEMA eval actions --model $MODEL --n $((24 * N)) --samples 4 --scenarios pick_place,stack --out $OUT-fd120 --no-progress
# inverse dynamics: every one-step draw of 90 episodes a world kept, scored for K draws averaged ("Sixteen draws")
${PYTHON:-python} scripts/inverse_draws.py draw --episodes 0:30 --draws 32 --cache $OUT/cache --out $OUT-inverse
${PYTHON:-python} scripts/inverse_draws.py draw --episodes 30:90 --draws 16 --cache $OUT/cache --out $OUT-inverse
${PYTHON:-python} scripts/inverse_draws.py score --episodes 0:30 --out $OUT-inverse
${PYTHON:-python} scripts/inverse_draws.py score --episodes 30:90 --k 4,16 --out $OUT-inverse
${PYTHON:-python} scripts/inverse_draws.py score --episodes 0:90 --k 4,16 --out $OUT-inverse
# ... and 90 more camera paths, the test of "The camera's action head refit"
${PYTHON:-python} scripts/inverse_draws.py draw --episodes 90:180 --scenarios camera_motion --draws 16 --cache $OUT/cache --out $OUT-inverse
${PYTHON:-python} scripts/inverse_draws.py score --episodes 0:180 --scenarios camera_motion --k 16 --out $OUT-inverse
# ... and 90 more episodes of the arm, the test of its refit head ("The world model as a policy")
${PYTHON:-python} scripts/inverse_draws.py draw --episodes 90:180 --scenarios push,pick_place,stack --draws 16 --cache $OUT/cache --out $OUT-inverse
${PYTHON:-python} scripts/inverse_draws.py score --episodes 0:180 --scenarios push,pick_place,stack --k 16 --out $OUT-inverse
# inverse dynamics through the calibration line ("Inverse dynamics recalibrated"): fit on 300 episodes a world of
# seed 101 (12 min), the arm's rotation and the camera only; tested on 90 more held-out episodes (270-359; 180-269
# were the first line's test), then scored on all 360 beside the raw estimate
${PYTHON:-python} scripts/inverse_draws.py draw --set calibration --episodes 0:300 --draws 16 --cache $OUT/cache-calib --out $OUT-inverse-calib
${PYTHON:-python} scripts/inverse_draws.py fit --out $OUT-inverse-calib --episodes 0:300 --k 16 --keep-raw single_arm:translation,single_arm:gripper --calibration $OUT-inverse-calib/inverse_dynamics_calibration.json
${PYTHON:-python} scripts/inverse_draws.py draw --episodes 180:360 --draws 16 --cache $OUT/cache --out $OUT-inverse
${PYTHON:-python} scripts/inverse_draws.py score --episodes 270:360 --k 16 --calibration $OUT-inverse-calib/inverse_dynamics_calibration.json --out $OUT-inverse
${PYTHON:-python} scripts/inverse_draws.py score --episodes 0:360 --k 16 --calibration $OUT-inverse-calib/inverse_dynamics_calibration.json --out $OUT-inverse
# text-to-video on 160 held-out captions (about 100 s): colours and objects ("Text-to-video: objects, not only colours")
$KINEMA eval text2video --model $MODEL --n $((8 * N)) --out $OUT --no-progress
# ... and the best of 4 draws kept by the reasoner critic, with the first draw and the oracle (about 8 min; "A critic that asks about colours")
$KINEMA eval text2video --model $MODEL --n $((8 * N)) --best-of 4 --out $OUT --no-progress
# policies imagined in the world model, from the real first frame and from the first 9 (about 6 min each)
$KINEMA eval closed-loop --model $MODEL --n $((2 * N)) --out $OUT --no-progress
$KINEMA eval closed-loop --model $MODEL --n $((2 * N)) --context 9 --out $OUT-context9 --no-progress
# the world model as a policy in the real simulator (about 11 min), and one chunk of it open loop (4 min)
$KINEMA eval closed-loop --policies $MODEL,expert,random --n $((2 * N)) --chunk 8 --out $OUT-policy --no-progress
${PYTHON:-python} scripts/policy_open_loop.py --model $MODEL --episodes $((6 * N))
# the reasoner: questions on held-out episodes (recipes/reasoner_data.sh makes the held-out twins),
# and the plausibility benchmark with the reasoner as judge on the worlds that have twins
$KINEMA eval reason --model $MODEL --max-per-task ${MAX_PER_TASK:-120} --out $OUT/reason --no-progress
$KINEMA eval plausibility --model $MODEL --n $((2 * N)) --out $OUT --no-progress \
  --scenarios free_fall,tilted_slope,u_slope,stable_stack,unstable_stack,dominoes,seesaw,gyroscope
$KINEMA eval report --out $OUT
