#!/usr/bin/env bash
# The wavelet ablation at the shipped CV tokenizer's full schedule: the cv4x8x8-small preset trained twice from
# scratch on the same data, in the same order, with the same seed and the same two commands as the shipped run
# (3,000 steps, then resumed to 5,500: a warm restart of the cosine) -- with Cosmos' Haar patcher, with plain
# space-to-depth patches (--no-wavelet), and with the Haar patcher made orthonormal (--orthonormal-wavelet: without
# Cosmos' 1/(2*sqrt2) per level); equal parameter counts. One thread each, side by side. Then the held-out curves
# at matched steps and `kinema tokenizer eval` of the three final EMA weights on the 270 held-out clips.
#   bash recipes/tokenizer_ablation.sh     (about 90 min on the 2-core machine; resumes where a killed run stopped)
set -euo pipefail
KINEMA=${KINEMA:-.venv/bin/kinema}
PY=${PY:-.venv/bin/python}
DATA=${DATA:-outputs/data}
RUNS=${RUNS:-outputs/runs}
KINEMA=$KINEMA bash "$(dirname "$0")/tokenizer_data.sh" "$DATA"
common="--data $DATA/train --heldout $DATA/heldout --lr 0.001 --ckpt-every 250 --log-every 25 --eval-every 250 --dtype bf16"
arm() {  # run name, extra flags
  for steps in 3000 5500; do
    OMP_NUM_THREADS=1 $KINEMA tokenizer train --preset cv4x8x8-small --out $RUNS/$1 --steps $steps --batch-size 8 \
      --warmup 200 $common ${2:-} >> $RUNS/$1.out 2>&1
  done
}
mkdir -p $RUNS
arm ablation-wavelet &
arm ablation-nowavelet --no-wavelet &
arm ablation-orthonormal --orthonormal-wavelet &
wait
$PY - $RUNS/ablation-{wavelet,nowavelet,orthonormal} <<'PYEOF'
import json, sys  # held-out PSNR (EMA weights, 8 fixed clips) of the arms at matched steps
curves = [{r["step"]: r["eval/heldout"] for r in map(json.loads, open(f"{run}/log.jsonl")) if "eval/heldout" in r}
          for run in sys.argv[1:]]
print("step  Haar (Cosmos)  space-to-depth  Haar orthonormal   (held-out PSNR, dB)")
for step in sorted(set.intersection(*map(set, curves))):
    print(f"{step:5d}  " + "  ".join(f"{c[step]:13.2f}" for c in curves))
PYEOF
$KINEMA tokenizer eval --data $DATA/heldout --episodes 6 --out outputs/tokenizer_ablation_eval.json \
  --tokenizer $RUNS/ablation-{wavelet,nowavelet,orthonormal}/final
