#!/usr/bin/env bash
# The wavelet ablations at the shipped tokenizers' schedule: a preset trained from scratch once per patcher, on the
# same data, in the same order, with the same seed and the same two commands as the shipped run (3,000 steps, then
# resumed to 5,500: a warm restart of the cosine) -- with Cosmos' Haar patcher, with plain space-to-depth patches
# (--no-wavelet), and with the Haar packet made orthonormal (--orthonormal-wavelet: without Cosmos' 1/(2*sqrt2)
# per level); equal parameter counts. One thread each, side by side. Then the held-out curves at matched steps and
# `kinema tokenizer eval` of the final EMA weights on the 270 held-out clips.
#   bash recipes/tokenizer_ablation.sh     (CV, three arms: about 80 min on the 2-core machine)
#   PRESET=dv4x8x8-small STEPS=3000 ARMS="wavelet nowavelet" bash recipes/tokenizer_ablation.sh   (DV, 35 min)
#   ARMS="whiten whitenboth" bash recipes/tokenizer_ablation.sh   (Cosmos' patcher with each band divided by its RMS
#   on training clips: before the encoder only, or the decoder's output too; --whiten)
# Every run resumes where a killed one stopped.
set -euo pipefail
KINEMA=${KINEMA:-.venv/bin/kinema}
PY=${PY:-.venv/bin/python}
DATA=${DATA:-outputs/data}
RUNS=${RUNS:-outputs/runs}
PRESET=${PRESET:-cv4x8x8-small}
STEPS=${STEPS:-3000 5500}
ARMS=${ARMS:-wavelet nowavelet orthonormal}
KINEMA=$KINEMA bash "$(dirname "$0")/tokenizer_data.sh" "$DATA"
common="--data $DATA/train --heldout $DATA/heldout --lr 0.001 --ckpt-every 250 --log-every 25 --eval-every 250 --dtype bf16"
declare -A flag=([wavelet]="" [nowavelet]="--no-wavelet" [orthonormal]="--orthonormal-wavelet"
                [whiten]="--whiten encoder" [whitenboth]="--whiten both")
mkdir -p $RUNS
runs=()
for arm in $ARMS; do
  run=$RUNS/ablation-$PRESET-$arm
  runs+=($run)
  (for steps in $STEPS; do
    OMP_NUM_THREADS=1 $KINEMA tokenizer train --preset $PRESET --out $run --steps $steps --batch-size 8 \
      --warmup 200 $common ${flag[$arm]} >> $run.out 2>&1
  done) &
done
wait
$PY - "${runs[@]}" <<'PYEOF'
import json, sys  # held-out PSNR (EMA weights, 8 fixed clips) of the arms at matched steps
curves = [{r["step"]: r["eval/heldout"] for r in map(json.loads, open(f"{run}/log.jsonl")) if "eval/heldout" in r}
          for run in sys.argv[1:]]
print("step  " + "  ".join(run.rsplit("-", 1)[1].rjust(12) for run in sys.argv[1:]) + "   (held-out PSNR, dB)")
for step in sorted(set.intersection(*map(set, curves))):
    print(f"{step:5d}  " + "  ".join(f"{c[step]:12.2f}" for c in curves))
PYEOF
$KINEMA tokenizer eval --data $DATA/heldout --episodes 6 --out outputs/tokenizer_ablation_$PRESET.json \
  --tokenizer "${runs[@]/%//final}"
