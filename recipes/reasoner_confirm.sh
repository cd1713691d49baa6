#!/usr/bin/env bash
# The reasoner's answers on every held-out set, and one model against another answer by answer.
#   bash recipes/reasoner_confirm.sh data                # the fresh sets below (about 2 min; skipped when present)
#   bash recipes/reasoner_confirm.sh eval MODEL NAME     # kinema eval reason on each set -> outputs/cand/NAME-SET/reason
#   bash recipes/reasoner_confirm.sh compare BASE NAME   # scripts/compare_reason.py: per set, then all sets pooled
# Sets (SETS to choose): co = the held-out seeds 1 and 5 (outputs/data/heldout and heldout-reason, from
# recipes/world_model_data.sh and recipes/reasoner_data.sh); c80 (6 episodes a world), c81, c82 and c83 (12 a
# world): the eight physics worlds with their implausible twins on seeds no training run uses. Every answerable
# question of TASKS (default count,outcome,timing). Each set's latents are encoded once
# (outputs/data/confirm-latents/SET) and shared by every model's evaluation.
set -euo pipefail
KINEMA=${KINEMA:-kinema}
PYTHON=${PYTHON:-python}
SETS=${SETS:-co c80 c81 c82 c83}
data_of() {
  case $1 in
    co) echo outputs/data/heldout outputs/data/heldout-reason ;;
    c*) ls -d outputs/data/confirm${1#c}/*-twins ;;
  esac
}
case ${1:?usage: reasoner_confirm.sh data | eval MODEL NAME | compare BASE NAME} in
  data)
    for seed in 80 81 82 83; do
      n=$([ $seed = 80 ] && echo 6 || echo 12)
      for w in dominoes free_fall gyroscope seesaw stable_stack tilted_slope u_slope unstable_stack; do
        [ -d outputs/data/confirm$seed/$w-twins/meta ] || $KINEMA worlds generate --scenario $w --episodes $n \
          --seed $seed --twins --out outputs/data/confirm$seed/$w-twins
      done
    done ;;
  eval)
    model=${2:?model folder} name=${3:?a name for its results}
    for s in $SETS; do
      out=outputs/cand/$name-$s/reason
      mkdir -p $out outputs/data/confirm-latents/$s
      [ -e $out/latents ] || ln -s "$PWD/outputs/data/confirm-latents/$s" $out/latents
      $KINEMA eval reason --model $model --data $(data_of $s) --tasks ${TASKS:-count,outcome,timing} \
        --max-per-task 5000 --out $out --no-progress
    done ;;
  compare)
    base=${2:?base name} name=${3:?model name} all=()
    for s in $SETS; do
      echo "## $s"
      $PYTHON scripts/compare_reason.py outputs/cand/$base-$s/reason outputs/cand/$name-$s/reason
      all+=(outputs/cand/$base-$s/reason outputs/cand/$name-$s/reason)
    done
    echo "## all sets"
    $PYTHON scripts/compare_reason.py "${all[@]}" ;;
  *) echo "reasoner_confirm.sh: unknown step '$1' (expected data, eval or compare)" >&2; exit 2 ;;
esac
