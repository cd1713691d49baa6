"""`kinema eval reason`: the reasoner's accuracy per task on held-out episodes, next to two baselines.

Legend: N questions.

Questions come from held-out datasets exactly as in training (reason_data.py), so
only where the clip shows their answer (reason_data.answerable), answered greedily. A question is right when the answer matches the ground truth
after normalising case, spaces and a final full stop. Reported per task
(reason_data.TASK_OF):

  accuracy       of the model, of `majority` (the most common answer of that task
                 in the evaluation set itself) and of `blind` (the most common answer
                 to each exact question string in the evaluation set: the best any
                 text-only model could do here). Both baselines see the test answers,
                 so they are upper bounds of their kind.
  timing         first-collision time: mean absolute error in seconds over questions
                 whose truth is a time, next to the blind MAE (the median time);
                 unparsable answers count as errors of UNPARSED_ERROR seconds. Both the
                 greedy answer and the minimum-risk one (Reasoner.min_risk over
                 TIMING_CHOICES under absolute error: the posterior median) are scored.
                 Apart: the MAE where the answer is a time, and whether it said
                 collision or none rightly (the two parts of the scored MAE).
  plausibility   ROC AUC of log P("yes") - log P("no") (the ReasonerJudge score).
  caption        word-level F1 against the simulator's caption (no accuracy), and its
                 colour words apart: precision (colours named that are in the true
                 caption) and recall (true colours named), pooled over captions, next
                 to the precision of naming palette colours at random. Colour is where
                 the reasoner's answers about objects go wrong, so it is shown alone.

With `other_video=True` every question is asked about another episode of the same
world and camera (never its twin): what is left of the accuracy is recognising the
world, not reading the episode. With `mute=True` a model that hears
(config.reason_audio) is asked about the silent film: what the sound adds.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from kinema.model.decoding import SamplingParams
from kinema.model.reason_data import TASK_OF, build_reason_latents, load_reason_shards, question_tokens

UNPARSED_ERROR = 2.0  # s: an episode's length, the largest error an answer in range could make
NO_COLLISION = "there is no collision"  # the answer when nothing collides (kinema.worlds.language)
# every answer a timing question can have, as the worlds write them: 0.05 s apart over the longest episode
TIMING_CHOICES = [NO_COLLISION] + [f"{t / 20:.2f} s" for t in range(0, 121)]


def normalise(s: str) -> str:
    return " ".join(s.strip().lower().rstrip(".").split())


def seconds(s: str) -> float | None:
    m = re.search(r"-?\d+(?:\.\d+)?", s)
    return float(m.group()) if m else None


def time_loss(a: str, b: str) -> float:
    """Absolute error in seconds between two timing answers; a time against no collision costs UNPARSED_ERROR."""
    ta, tb = seconds(a), seconds(b)
    if ta is None or tb is None:
        return 0.0 if (ta is None) == (tb is None) else UNPARSED_ERROR
    return abs(ta - tb)


def colour_words(s: str) -> set[str]:
    """The scene colours a text names (the worlds' palette and grey)."""
    from kinema.worlds.scene import PALETTE

    return set(normalise(s).replace(",", " ").split()) & (set(PALETTE) | {"grey"})


def word_f1(pred: str, ref: str) -> float:
    p, r = Counter(normalise(pred).split()), Counter(normalise(ref).split())
    common = sum((p & r).values())
    if not common:
        return 0.0
    prec, rec = common / sum(p.values()), common / sum(r.values())
    return 2 * prec * rec / (prec + rec)


def other_episodes(clips: list[dict], seed: int = 0) -> list[int]:
    """For each clip, a clip of another episode (other seed: not its twin) of the same world and camera."""
    rng = np.random.default_rng([seed, 1])
    by_kind = defaultdict(list)
    for j, c in enumerate(clips):
        by_kind[c["world"], c["camera"]].append(j)
    out = []
    for c in clips:
        pool = [j for j in by_kind[c["world"], c["camera"]] if clips[j]["seed"] != c["seed"]]
        if not pool:
            raise ValueError(f"other_video: world {c['world']!r} camera {c['camera']!r} has one episode; need two or more")
        out.append(int(pool[rng.integers(len(pool))]))
    return out


def evaluate(reasoner, data, out, *, max_per_task: int = 120, seed: int = 0, tasks=None, other_video: bool = False,
             mute: bool = False, progress: bool = True, by_world: bool = True) -> dict:
    """by_world: each question names the world its clip shows, so a world with an adapter of its own
    (config.reason_own) is asked through it; False: every question through the shared adapter (a user who does
    not say which world)."""
    out = Path(out)
    vt = reasoner.pipeline.video_tokenizer
    cfg = reasoner.config
    hear = cfg.reason_audio and not mute
    shards = build_reason_latents(data, out / "latents", vt, reasoner.pipeline.audio_tokenizer if hear else None,
                                  progress=progress)
    vision, clips, audio, keys = load_reason_shards(shards)
    mean = torch.tensor(cfg.latent_mean).view(-1, 1, 1, 1)
    std = torch.tensor(cfg.latent_std).view(-1, 1, 1, 1)
    audio_stats = (torch.tensor(cfg.audio_mean).view(-1, 1), torch.tensor(cfg.audio_std).view(-1, 1))
    by_task = defaultdict(list)
    for i, c in enumerate(clips):
        for q in c["questions"]:
            by_task[TASK_OF.get(q["type"], q["type"])].append((i, q))
    rng = np.random.default_rng(seed)
    for task, items in by_task.items():  # a fixed random subset per task bounds the time
        if len(items) > max_per_task:
            keep = rng.choice(len(items), max_per_task, replace=False)
            by_task[task] = [items[k] for k in sorted(keep)]
    if tasks is not None:  # after the draw above, so a subset asks exactly the questions a full run asks
        unknown = set(tasks) - set(by_task)
        if unknown:
            raise ValueError(f"--tasks: unknown or absent here: {sorted(unknown)}; expected some of {sorted(by_task)}")
        by_task = {t: by_task[t] for t in tasks}
    params = SamplingParams(temperature=0.0, max_new_tokens=96)
    source = other_episodes(clips, seed) if other_video else list(range(len(clips)))
    rows = []
    jobs = [(task, i, q) for task, items in by_task.items() for i, q in items]
    for task, i, q in tqdm(jobs, desc="reason", disable=not progress):
        c = clips[i]
        tok = question_tokens(cfg, reasoner.text, vision[source[i]], c["fps"], q, answer=False, latent_mean=mean,
                              latent_std=std, audio=audio[source[i]] if hear else None, audio_stats=audio_stats,
                              keys=keys[source[i]], world=c["world"] if by_world else None)
        row = dict(task=task, type=q["type"], world=c["world"], seed=c["seed"], camera=c["camera"],
                   question=q["question"], truth=q["answer"], value=q.get("value"))
        if task == "plausibility":
            yes, no = reasoner.score_tokens(tok, ["yes", "no"])
            row.update(score=yes - no, answer="yes" if yes >= no else "no")
        else:
            row["answer"] = reasoner.text.decode(list(reasoner.generate_ids(tok, params)))
        if task == "timing":
            row["min_risk"] = TIMING_CHOICES[reasoner.min_risk(tok, TIMING_CHOICES, time_loss)[0]]
        rows.append(row)
    return dict(rows=rows, summary=summarise(rows), settings=dict(max_per_task=max_per_task, seed=seed, tasks=tasks,
                                                                   other_video=other_video, mute=mute, by_world=by_world,
                                                                   data=[str(d) for d in data]))


def summarise(rows: list[dict]) -> dict:
    from kinema.eval.metrics import roc_auc

    tasks = defaultdict(list)
    for r in rows:
        tasks[r["task"]].append(r)
    out = {}
    for task, rs in sorted(tasks.items()):
        s = dict(n=len(rs))
        if task == "caption":
            s["word_f1"] = float(np.mean([word_f1(r["answer"], r["truth"]) for r in rs]))
            common = Counter(r["truth"] for r in rs).most_common(1)[0][0]
            s["blind_word_f1"] = float(np.mean([word_f1(common, r["truth"]) for r in rs]))
            named, true = [colour_words(r["answer"]) for r in rs], [colour_words(r["truth"]) for r in rs]
            hits = sum(len(n & t) for n, t in zip(named, true))
            s["colour_precision"] = hits / max(1, sum(map(len, named)))
            s["colour_recall"] = hits / max(1, sum(map(len, true)))
            from kinema.worlds.scene import PALETTE

            s["colour_precision_chance"] = float(np.mean([len(t) for t in true])) / (len(PALETTE) + 1)
            out[task] = s
            continue
        truth = [normalise(r["truth"]) for r in rs]
        s["accuracy"] = float(np.mean([normalise(r["answer"]) == t for r, t in zip(rs, truth)]))
        top = Counter(truth).most_common(1)[0][0]
        s["majority"] = float(np.mean([t == top for t in truth]))
        per_q = defaultdict(Counter)
        for r, t in zip(rs, truth):
            per_q[r["question"]][t] += 1
        s["blind"] = float(sum(c.most_common(1)[0][1] for c in per_q.values()) / len(rs))
        if task == "timing":
            # The MAE reads only questions with a collision; whether there was one at all is scored apart.
            has = [isinstance(r["value"], (int, float)) for r in rs]
            s["detection"] = float(np.mean([(seconds(r["answer"]) is not None) == h for r, h in zip(rs, has)]))
            s["blind_detection"] = max(float(np.mean(has)), 1 - float(np.mean(has)))
            timed = [r for r, h in zip(rs, has) if h]
            if timed:
                def mae(key):
                    return float(np.mean([abs(seconds(r[key]) - r["value"]) if seconds(r[key]) is not None
                                          else UNPARSED_ERROR for r in timed]))

                med = float(np.median([r["value"] for r in timed]))
                given = [abs(seconds(r["answer"]) - r["value"]) for r in timed if seconds(r["answer"]) is not None]
                s.update(mae_s=mae("answer"), blind_mae_s=float(np.mean([abs(med - r["value"]) for r in timed])),
                         n_timed=len(timed), unparsed=sum(seconds(r["answer"]) is None for r in timed),
                         mae_given_s=float(np.mean(given)) if given else None)  # where it does give a time
                if all("min_risk" in r for r in rs):
                    s["mae_min_risk_s"] = mae("min_risk")
                    s["accuracy_min_risk"] = float(np.mean([normalise(r["min_risk"]) == t for r, t in zip(rs, truth)]))
        if task == "plausibility":
            labels = np.array([t == "yes" for t in truth])
            if labels.all() or not labels.any():
                s["auc"] = None
            else:
                s["auc"] = float(roc_auc(np.array([r["score"] for r in rs]), labels.astype(int)).value)
        out[task] = s
    return out


def sign_test(gained: int, lost: int) -> float:
    """Two-sided exact sign test: the probability of a split of the changed answers at least this uneven if
    each change were a fair coin (what two models that differ only by noise would give)."""
    from math import comb

    n = gained + lost
    return min(1.0, 2 * sum(comb(n, k) for k in range(min(gained, lost) + 1)) / 2 ** n) if n else 1.0


def paired(base: list[dict], model: list[dict], by: str = "task") -> dict:
    """Two models' answers to the same questions (eval reason rows of the same data and settings), per task (or
    per question, by="question"): each accuracy, the answers only the model gets right (gained) and only the
    base does (lost), and the sign test of that split; tasks only one of them was asked are left out. Two close
    rounds' accuracies move by more from one seed set to the next than they differ; the changed answers are the
    fair comparison."""
    key = lambda r: (r["world"], r["seed"], r["camera"], r["question"], r["truth"])  # noqa: E731
    tasks = defaultdict(lambda: ([], []))
    for i, rows in enumerate((base, model)):
        for r in rows:
            if r["task"] != "caption":  # no right answer to count
                tasks[r["task"]][i].append(r)
    out: dict[str, dict] = {}
    for task, (a, b) in tasks.items():
        if not a or not b:  # a task only one of them was asked (eval reason --tasks)
            continue
        if len(a) != len(b) or any(key(x) != key(y) for x, y in zip(a, b)):  # each task's questions in a fixed order
            raise ValueError(f"paired: the two evaluations asked different {task} questions ({len(a)} against "
                             f"{len(b)}): compare runs of the same --data, --max-per-task and --seed")
        for r, m in zip(a, b):
            right = normalise(r["answer"]) == normalise(r["truth"]), normalise(m["answer"]) == normalise(m["truth"])
            s = out.setdefault(r[by], dict(n=0, base=0, model=0, gained=0, lost=0))
            s["n"] += 1
            s["base"] += right[0]
            s["model"] += right[1]
            s["gained"] += right[1] and not right[0]
            s["lost"] += right[0] and not right[1]
    for s in out.values():
        s["p"] = sign_test(s["gained"], s["lost"])
    return out


def table(summary: dict) -> str:
    lines = ["| task | n | model | majority | blind | other |", "|---|---|---|---|---|---|"]
    for task, s in summary.items():
        if task == "caption":
            lines.append(f"| caption | {s['n']} | word F1 {s['word_f1']:.3f} | | most common caption {s['blind_word_f1']:.3f} | "
                         f"colour words: precision {s['colour_precision']:.3f} (at random {s['colour_precision_chance']:.3f}), "
                         f"recall {s['colour_recall']:.3f} |")
            continue
        other = ""
        if "mae_s" in s:
            other = f"MAE {s['mae_s']:.3f} s (blind median {s['blind_mae_s']:.3f} s, n={s['n_timed']}, unparsed {s['unparsed']})"
            if s.get("mae_given_s") is not None:
                other += f"; where it gives a time {s['mae_given_s']:.3f} s"
            if "mae_min_risk_s" in s:
                other += f"; minimum-risk answer: MAE {s['mae_min_risk_s']:.3f} s"
        if "detection" in s:
            other += f"; collision or none right {s['detection']:.3f} (majority {s['blind_detection']:.3f})"
        if s.get("auc") is not None:
            other = f"ROC AUC {s['auc']:.3f}"
        lines.append(f"| {task} | {s['n']} | {s['accuracy']:.3f} | {s['majority']:.3f} | {s['blind']:.3f} | {other} |")
    return "\n".join(lines)
