#!/usr/bin/env bash
# The given frame's own action row added to the conditioning (config.cond_rows = 3): for pose actions (the
# camera's, the arm's orientation) "where it is now minus where it was" becomes one linear map of the input
# instead of a lookup by attention. Post-trained from the conditioned checkpoint (recipes/world_model_cond.sh,
# same command: --frame-condition widens its action input, the new row's weights starting at zero, so step 0
# is that model). The data includes the 480 extra camera paths of recipes/world_model_data.sh (camera clips:
# 1% of the mixture before, 10% now). Resumable: rerun after a kill.
set -euo pipefail
INIT=${INIT:-outputs/runs/world-model-cond/final} OUT=${OUT:-outputs/runs/world-model-pose} STEPS=${STEPS:-3000} \
  LR=${LR:-2e-4} exec bash "$(dirname "$0")/world_model_cond.sh" "$@"
