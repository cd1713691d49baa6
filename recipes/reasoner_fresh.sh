#!/usr/bin/env bash
# The reasoner's fresh-episode rounds: new episodes, simulated and encoded in memory by
# scripts/simulate_latents.py (no datasets on disk, no video codec: all a GPU machine with MuJoCo needs),
# then the adapter of the checkpoint before it trained on their questions alone, so every generator output stays
# as it was (the same --reason-adapter 64 --reason-pixels 2 as recipes/reasoner_post.sh adapter-pixels).
#
#   bash recipes/reasoner_fresh.sh gpu   # on a CUDA machine, from the weights of git bc0c687 (shipped in 4320155)
#   bash recipes/reasoner_fresh.sh cpu   # on this CPU, from the gpu round's weights (git 4320155)
#   bash recipes/reasoner_fresh.sh cpu2  # again, from the cpu round's weights (git e9ca376; tried, not shipped)
#   bash recipes/reasoner_fresh.sh cpu3  # again from e9ca376, questions a clip can answer only (tried, not shipped)
#   bash recipes/reasoner_fresh.sh cpu4  # from the cpu3 round's weights (run cpu3 first), on seesaws that tip
#   bash recipes/reasoner_fresh.sh cpu5  # from the cpu4 round's weights (run cpu4 first), its shards + more seesaws
#   bash recipes/reasoner_fresh.sh cpu6  # from the cpu5 round's weights (git 4fd533d), new episodes + more seesaws
#   bash recipes/reasoner_fresh.sh cpu7  # from the cpu6 round's weights (run cpu6 first), the same again on new seeds
#   bash recipes/reasoner_fresh.sh cpu8  # from the cpu7 round's weights (run cpu7 first), new seeds, five seesaw seeds
#   bash recipes/reasoner_fresh.sh cpu9  # from the cpu8 round's weights (run cpu8 first), the same again on new seeds
#   then ship the mean of cpu9's and cpu7's weights (shipped in f6ae244): python scripts/ship_world_model.py \
#     --run outputs/runs/world-model-fresh-cpu9 --average outputs/runs/world-model-fresh-cpu7
#   bash recipes/reasoner_fresh.sh drill  # from f6ae244's weights: "Which end of the seesaw ends up lower?" alone
#   bash recipes/reasoner_fresh.sh back   # from the drill's weights (run drill first): the whole mixture again
#     (drill and back: tried, not shipped; which end 31 -> 51 of 72 and outcome 0.904, but count 0.849)
#   bash recipes/reasoner_fresh.sh inside  # from f6ae244's weights: the drill inside the mixture, 60% of the draws
#   bash recipes/reasoner_fresh.sh mend    # from the inside round's weights (run inside first): count drawn 8x
#     (inside and mend alone: not shipped; which end 50 then 45 of 72, outcome 0.913 then 0.902, count 0.836 then 0.861)
#   bash recipes/reasoner_fresh.sh fine    # from the mean of mend's, cpu9's and cpu7's weights (run mend first)
#     (fine: tried, not shipped; all four targets on the held-out seeds its init was chosen on, worse than the
#     shipped mean on fresh seed 80: BENCHMARKS.md, "The drill inside the mixture")
#   bash recipes/reasoner_fresh.sh gentle  # from f6ae244's weights: the drill inside the mixture at 30%, lr 2e-4
#   bash recipes/reasoner_fresh.sh wide    # the same with the adapter widened from rank 64 to 128
#     (gentle and wide: tried, not shipped; count for "which end" at either rank: BENCHMARKS.md, "A gentler drill")
#   bash recipes/reasoner_fresh.sh renew   # gentle's draws on new episodes only (seeds 90-99), from f6ae244's weights
#   bash recipes/reasoner_fresh.sh early   # inside's draws on renew's shards, only the first 3 layers' adapters training
#     (BENCHMARKS.md, "Where in the adapter")
#     (renew, and the products mean of its weights with f6ae244's: tried, not shipped; count fell again:
#     BENCHMARKS.md, "Adapter means")
#   bash recipes/reasoner_fresh.sh keep    # gentle's draws on renew's shards from 7196a39's (shipped) weights, keeping
#     what they answer right (--reason-keep 4: KL to them where they were right; tried, not shipped: count 61 / 94
#     on five seed sets, p 0.01, held-out outcome 0.890; BENCHMARKS.md, "Keeping what it knew")
#   bash recipes/reasoner_fresh.sh balanced  # gentle's draws from 7196a39's (shipped) weights, renew's extra seesaw
#     episodes (seeds 95-99) asked "which end" only (--reason-question-data), so the rest of the mixture keeps the
#     worlds' balance (in renew's shards the seesaw gave 44% of the count questions, all answered 3)
#
# gpu: seeds 8-12, made on one H200 with 16 cores: 120 s to simulate and encode the sets below (stack:16:12 was
#   cut by the deadline the round ran under, so it is left out here): 1,984 episodes, 7,936 clips, 64,396
#   questions; then 2,341 steps of 128 questions at lr 4e-4 in 230 s (0.089 s a step). DEVICE=cpu runs it here in
#   about 7 hours, nearly all training.
# cpu: seeds 13-17 on this 2-core CPU: 407 s to simulate and encode 2,016 episodes (2 workers), then 1,300 steps of
#   32 questions at lr 1.5e-4 (41 min at 1.6-2.4 s a step).
# cpu2: seeds 18-22 (tabletop at 18, 20, 22), then 1,000 steps the same way, seed 7 (33 min). Not shipped: colour and
#   the judge rose, count, forecast and eval-reason plausibility fell (BENCHMARKS.md).
# cpu3: seeds 23-27 (tabletop at 24, 26) from the shipped weights, the first round whose questions are only those
#   a clip can answer (reason_data.answerable): 1,968 episodes in 510 s, then 1,300 steps, seed 8 (46 min). Not
#   shipped alone (count level, forecast and timing fell: BENCHMARKS.md, "Questions a clip can answer"); cpu4
#   starts from it. Rounds before it were trained under the first question rules; run again from this tree
#   they get the current ones.
# cpu4: seeds 28-32 (tabletop at 28, 30), from the cpu3 round's final weights, the first round whose seesaws
#   tip (the pivot no longer holds the plank level; every earlier seesaw episode ended at 0 degrees): 2,016
#   episodes in 402 s, then 1,300 steps, seed 9 (48 min; shipped). Rounds before it saw only level seesaws;
#   run again from this tree they see tipping ones.
# cpu5: from the cpu4 round's final weights, on its shards again plus 576 new seesaw episodes (seeds 33-35, 96
#   pairs each: 106 s to simulate and encode), so a third of the episodes are seesaws; 1,000 steps at lr 1e-4,
#   seed 13 (27 min, restarted once from its checkpoint at 400).
#   The cpu4 and cpu5 rounds were simulated before rollout re-ran unstable simulations: run again from this tree,
#   two gyroscope twins of cpu4's (seeds 28 and 30, a top thrown upward) keep rising instead of jumping back.
# cpu6: seeds 36-40 (tabletop at 36, 38) plus 768 more seesaw episodes (seeds 41-44, 96 pairs each), all new,
#   from the shipped cpu5 weights; 1,300 steps at lr 1e-4, seed 14 (493 s to simulate and encode, 33 min of
#   steps). Not shipped alone (count and the AUC fell a little); cpu7 starts from it.
# cpu7: as cpu6 on seeds 45-49 (tabletop at 45, 47) and seesaw seeds 50-53, from the cpu6 round's final weights,
#   seed 15 (499 s, then 30 min; shipped until the mean below).
# cpu8: seeds 54-58 (tabletop at 54, 56) plus 960 seesaw episodes (seeds 59-63), from the cpu7 round's final
#   weights, seed 16: 2,976 episodes, 11,712 clips, 92,540 questions (541 s), then 31 min of steps. Not shipped.
# cpu9: as cpu8 on seeds 64-68 (tabletop at 64, 66) and seesaw seeds 69-73, from cpu8's, seed 17 (499 s, then
#   29 min). Not shipped alone (count fell); the mean of its weights and cpu7's is (BENCHMARKS.md, "Two more rounds").
# drill: no new episodes: the seesaw shards of rounds cpu6-cpu9 (17,488 questions of which end ends lower, 4,416
#   episodes x 4 cameras, less flat planks), that question alone, 2,000 steps at lr 5e-4, seed 22 (31 min).
# back: cpu9's shards and cpu6-cpu8's seesaw shards, every question, 600 steps at lr 1e-4,
#   seed 23, so the other tasks return (BENCHMARKS.md, "Which end of the seesaw").
# inside: back's shards, "which end" drawn 60% of the time and the rest of the mixture 40%, by task weight,
#   2,000 steps at lr 5e-4, seed 25 (43 min).
# mend: the same shards, "which end" 25% of the draws, count 8x among the rest, 600 steps at lr 1e-4, seed 26
#   (13 min).
# fine: the same shards from the mean of the mend, cpu9 and cpu7 rounds' final weights, "which end" 30% of the
#   draws, count 8x among the rest, 400 steps at lr 1e-4, seed 27 (9 min).
# renew: seeds 90-94 (tabletop at 90, 92) plus 960 seesaw episodes (seeds 95-99), from f6ae244's weights, gentle's
#   draws and lr, seed 31: 2,976 episodes, 11,712 clips, 92,560 questions (527 s), then 2,000 steps (60 min).
# early: inside's draws, lr and seed on renew's shards, from f6ae244's weights, but only the adapter of layers 0-2
#   trains (--reason-adapter-layers 3): does the drill inside the mixture cost count when the later layers keep
#   the shipped adapter? (2,000 steps, about 60 min)
# keep: gentle's draws, lr and shards (renew's) from the shipped products mean (git 7196a39), seed 32, with the
#   starting weights as a frozen teacher: every answer token they get right adds their KL (weight 4), so drilling
#   "which end" may not cost count (learning without forgetting; 2,000 steps, 95 min at 2.5-3.3 s a step)
# balanced: renew's shards, split: seeds 90-94 of every world (and tabletop) as the mixture, the 960 extra seesaw
#   episodes (seeds 95-99) for the drilled question alone; gentle's draws and lr, seed 33, 1,200 steps (the
#   length a 180-minute sitting could train and judge).
# Seeds 8-73 are new to the model: the tokenizer and world model trained on 0, 2 and 3, the earlier reasoner
# rounds on 4, 6 and 7; 1 and 5 are held out. Then: python scripts/ship_world_model.py --run $RUN
set -euo pipefail
ROUND=${1:?usage: reasoner_fresh.sh gpu|cpu|cpu2|...|keep|balanced [kinema train flags...]}
shift
KINEMA=${KINEMA:-kinema}
PYTHON=${PYTHON:-python}
more=() again=()  # cpu5: sets beyond the seeds' own, and shards of an earlier round trained on again
reuse=() ask=()  # drill, back: earlier rounds' shards (ROUND:GLOB) linked into $RUN/shards; one question only
only=()  # balanced: shards (ROUND:GLOB) linked into $RUN/question-shards, asked the drilled question only
avg=()  # fine: rounds whose final weights are averaged with base's to make the init
# Every question alike: the rounds gpu-cpu9 and back were run with --reason-task-weights (count=4,outcome=5,
# attribute=2,timing=2,plausibility=4; back: outcome=8), which kinema train ignored for runs of questions alone
# until the change that added the inside round, so uniform draws are what trained them and what runs here.
weights=""
case $ROUND in
  gpu) seeds="8 9 10 11 12" table="8 10 12" base=bc0c687 DEVICE=${DEVICE:-cuda} WORKERS=${WORKERS:-15} LOADERS=${LOADERS:-14}
       train=(--batch-size 128 --lr 4e-4 --warmup 100 --seed 5 --steps 2341) ;;
  cpu) seeds="13 14 15 16 17" table="14 16" base=4320155 DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0}
       train=(--batch-size 32 --lr 1.5e-4 --warmup 50 --seed 6 --steps 1300) ;;
  cpu2) seeds="18 19 20 21 22" table="18 20 22" base=e9ca376 DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0}
       train=(--batch-size 32 --lr 1.5e-4 --warmup 50 --seed 7 --steps 1000) ;;
  cpu3) seeds="23 24 25 26 27" table="24 26" base=e9ca376 DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0}
       train=(--batch-size 32 --lr 1.5e-4 --warmup 50 --seed 8 --steps 1300) ;;
  cpu4) seeds="28 29 30 31 32" table="28 30" base=run:cpu3 DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0}
       train=(--batch-size 32 --lr 1.5e-4 --warmup 50 --seed 9 --steps 1300) ;;
  cpu5) seeds="" table="" base=run:cpu4 DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0}
       more=(seesaw:96:33:twins seesaw:96:34:twins seesaw:96:35:twins) again=(outputs/runs/world-model-fresh-cpu4/shards)
       train=(--batch-size 32 --lr 1e-4 --warmup 30 --seed 13 --steps 1000) ;;
  cpu6) seeds="36 37 38 39 40" table="36 38" base=4fd533d DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0}
       more=(seesaw:96:41:twins seesaw:96:42:twins seesaw:96:43:twins seesaw:96:44:twins)
       train=(--batch-size 32 --lr 1e-4 --warmup 30 --seed 14 --steps 1300) ;;
  cpu7) seeds="45 46 47 48 49" table="45 47" base=run:cpu6 DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0}
       more=(seesaw:96:50:twins seesaw:96:51:twins seesaw:96:52:twins seesaw:96:53:twins)
       train=(--batch-size 32 --lr 1e-4 --warmup 30 --seed 15 --steps 1300) ;;
  cpu8) seeds="54 55 56 57 58" table="54 56" base=run:cpu7 DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0}
       more=(seesaw:96:59:twins seesaw:96:60:twins seesaw:96:61:twins seesaw:96:62:twins seesaw:96:63:twins)
       train=(--batch-size 32 --lr 1e-4 --warmup 30 --seed 16 --steps 1300) ;;
  cpu9) seeds="64 65 66 67 68" table="64 66" base=run:cpu8 DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0}
       more=(seesaw:96:69:twins seesaw:96:70:twins seesaw:96:71:twins seesaw:96:72:twins seesaw:96:73:twins)
       train=(--batch-size 32 --lr 1e-4 --warmup 30 --seed 17 --steps 1300) ;;
  drill) seeds="" table="" base=f6ae244 DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0}
       reuse=(cpu6:seesaw cpu7:seesaw cpu8:seesaw cpu9:seesaw)
       ask=(--reason-question "Which end of the seesaw ends up lower?")
       train=(--batch-size 32 --lr 5e-4 --warmup 40 --seed 22 --steps 2000) ;;
  back) seeds="" table="" base=run:drill DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0}
       reuse=(cpu6:seesaw cpu7:seesaw cpu8:seesaw cpu9:)
       train=(--batch-size 32 --lr 1e-4 --warmup 20 --seed 23 --steps 600) ;;
  inside) seeds="" table="" base=f6ae244 DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0}
       reuse=(cpu6:seesaw cpu7:seesaw cpu8:seesaw cpu9:) weights=count=4,outcome=5,attribute=2,timing=2,plausibility=4
       ask=(--reason-question "Which end of the seesaw ends up lower?" --reason-question-share 0.6)
       train=(--batch-size 32 --lr 5e-4 --warmup 40 --seed 25 --steps 2000) ;;
  mend) seeds="" table="" base=run:inside DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0}
       reuse=(cpu6:seesaw cpu7:seesaw cpu8:seesaw cpu9:) weights=count=8,outcome=5,attribute=2,timing=2,plausibility=4
       ask=(--reason-question "Which end of the seesaw ends up lower?" --reason-question-share 0.25)
       train=(--batch-size 32 --lr 1e-4 --warmup 20 --seed 26 --steps 600) ;;
  fine) seeds="" table="" base=run:mend avg=(cpu9 cpu7) DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0}
       reuse=(cpu6:seesaw cpu7:seesaw cpu8:seesaw cpu9:) weights=count=8,outcome=5,attribute=2,timing=2,plausibility=4
       ask=(--reason-question "Which end of the seesaw ends up lower?" --reason-question-share 0.3)
       train=(--batch-size 32 --lr 1e-4 --warmup 20 --seed 27 --steps 400) ;;
  gentle) seeds="" table="" base=f6ae244 DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0}
       reuse=(cpu6:seesaw cpu7:seesaw cpu8:seesaw cpu9:) weights=count=8,outcome=5,attribute=2,timing=2,plausibility=4
       ask=(--reason-question "Which end of the seesaw ends up lower?" --reason-question-share 0.3)
       train=(--batch-size 32 --lr 2e-4 --warmup 40 --seed 28 --steps 2000) ;;
  wide) seeds="" table="" base=f6ae244 DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0} rank=128
       reuse=(cpu6:seesaw cpu7:seesaw cpu8:seesaw cpu9:) weights=count=8,outcome=5,attribute=2,timing=2,plausibility=4
       ask=(--reason-question "Which end of the seesaw ends up lower?" --reason-question-share 0.3)
       train=(--batch-size 32 --lr 2e-4 --warmup 40 --seed 28 --steps 2000) ;;
  renew) seeds="90 91 92 93 94" table="90 92" base=f6ae244 DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0}
       more=(seesaw:96:95:twins seesaw:96:96:twins seesaw:96:97:twins seesaw:96:98:twins seesaw:96:99:twins)
       weights=count=8,outcome=5,attribute=2,timing=2,plausibility=4
       ask=(--reason-question "Which end of the seesaw ends up lower?" --reason-question-share 0.3)
       train=(--batch-size 32 --lr 2e-4 --warmup 40 --seed 31 --steps 2000) ;;
  early) seeds="" table="" base=f6ae244 DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0}
       reuse=(renew:) weights=count=4,outcome=5,attribute=2,timing=2,plausibility=4
       ask=(--reason-question "Which end of the seesaw ends up lower?" --reason-question-share 0.6)
       train=(--batch-size 32 --lr 5e-4 --warmup 40 --seed 25 --steps 2000 --reason-adapter-layers 3) ;;
  keep) seeds="" table="" base=7196a39 DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0} rank=128
       reuse=(renew:) weights=count=8,outcome=5,attribute=2,timing=2,plausibility=4
       ask=(--reason-question "Which end of the seesaw ends up lower?" --reason-question-share 0.3)
       train=(--batch-size 32 --lr 2e-4 --warmup 40 --seed 32 --steps 2000 --reason-keep 4) ;;
  balanced) seeds="" table="" base=7196a39 DEVICE=${DEVICE:-cpu} WORKERS=${WORKERS:-2} LOADERS=${LOADERS:-0} rank=128
       for w in dominoes free_fall gyroscope pick_place push stable_stack stack tilted_slope u_slope unstable_stack; do
         reuse+=(renew:$w-)
       done
       for s in 90 91 92 93 94; do reuse+=(renew:seesaw-twins-s$s.); done
       for s in 95 96 97 98 99; do only+=(renew:seesaw-twins-s$s.); done
       weights=count=8,outcome=5,attribute=2,timing=2,plausibility=4
       ask=(--reason-question "Which end of the seesaw ends up lower?" --reason-question-share 0.3)
       train=(--batch-size 32 --lr 2e-4 --warmup 40 --seed 33 --steps 1200) ;;
  *) echo "reasoner_fresh.sh: unknown round '$ROUND' (expected gpu, cpu, cpu2, cpu3, cpu4, cpu5, cpu6, cpu7, cpu8, cpu9, drill, back, inside, mend, fine, gentle, wide, renew, early, keep or balanced)" >&2; exit 2 ;;
esac
RUN=${RUN:-outputs/runs/world-model-fresh-$ROUND}
INIT=${INIT:-$RUN/init}
sets=("${more[@]}")
for seed in $seeds; do
  for w in dominoes free_fall gyroscope seesaw stable_stack tilted_slope u_slope unstable_stack; do
    sets+=("$w:24:$seed:twins")  # each episode and its implausible twin
  done
  for t in $table; do
    [ $t = $seed ] && for w in push pick_place stack; do
      [ "$ROUND:$seed:$w" = gpu:12:stack ] || sets+=("$w:16:$seed")
    done
  done
done
if [ ! -s $INIT/model.safetensors ]; then  # the checkpoint the round started from: from git, or an earlier round's run
  mkdir -p $INIT
  if [ "${base#run:}" != "$base" ]; then
    for t in checkpoints/tokenizer-*; do  # a run's config names its tokenizers beside it, as in checkpoints/
      [ -e $RUN/${t#checkpoints/} ] || ln -s "$PWD/$t" $RUN/
    done
    $PYTHON scripts/ship_world_model.py --run outputs/runs/world-model-fresh-${base#run:} --out $INIT \
      ${avg[@]:+--average} "${avg[@]/#/outputs/runs/world-model-fresh-}"
  else
    for f in model.safetensors config.json tokenizer.json; do
      git show $base:checkpoints/world-model-small/$f > $INIT/$f
    done
  fi
fi
mkdir -p $RUN/shards
link() {  # folder, ROUND:PREFIX... -> that round's shards whose names start with PREFIX, linked into folder
  local to=$1; shift; mkdir -p $to
  for r in "$@"; do
    for f in outputs/runs/world-model-fresh-${r%%:*}/shards/${r#*:}*; do ln -sf "$PWD/$f" $to/${r%%:*}-${f##*/}; done
  done
}
link $RUN/shards "${reuse[@]}"
[ ${#only[@]} = 0 ] || { link $RUN/question-shards "${only[@]}"; ask+=(--reason-question-data $RUN/question-shards); }
[ ${#sets[@]} = 0 ] || $PYTHON scripts/simulate_latents.py --out $RUN/shards --workers $WORKERS --device $DEVICE "${sets[@]}"
$KINEMA train --preset small --reason-data $RUN/shards "${again[@]}" --reason-weight 1 --reason-audio --reason-adapter ${rank:-64} \
  --reason-pixels 2 --init $INIT --out $RUN --device $DEVICE --dtype bf16 --workers $LOADERS \
  "${train[@]}" --log-every 10 --ckpt-every 100 \
  ${weights:+--reason-task-weights $weights} "${ask[@]}" "$@"
