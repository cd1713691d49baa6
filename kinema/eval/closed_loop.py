"""Benchmark 4, closed loop: policies act in the real simulator, and the same policies inside a world model.

Legend: T = 97 episode frames, Tc context frames, k chunk frames, C cameras, H height, W width, A = 10.

Real: each policy (kinema.eval.policy) acts in the simulator on N held-out
seeds of each task; success is the simulator's own test on object states
(kinema.worlds.tabletop `outcome`).

Imagined: the same policies and seeds, with the world model (any predictor)
in place of the simulator. It starts from the real first Tc frames of every
camera and imagines the rest k frames at a time, each chunk conditioned on
everything imagined so far and on the actions:
- a policy that only looks (not `privileged`) acts inside the imagination:
  at each step it sees the newest imagined frame (within a chunk, the frame
  before the chunk: action chunking), and its actions drive the next chunk;
- a privileged policy (the scripted experts read the simulator's state, which
  an imagination does not have) is replayed: its actions from the real run
  drive the imagination open loop.
Success on an imagined episode is judged from its frames
(kinema.eval.success: segment the blocks by colour, locate them from both
cameras, apply the task's test). The same frame judge run on the *real*
frames is reported too: its agreement with the simulator's test is the
ceiling of what imagination can be held to.

Report: success rates per task and policy, real vs imagined, and Pearson's r
and Spearman's rank correlation between imagined and real rates across all
(task, policy) pairs, as IRASim does (it reports r = 0.99).

A learned success judge (a reward model: anything with `success(frames, fps) ->
float`, higher = more likely success, 0 the threshold; the reasoner's is
kinema.model.reasoner.ReasonerJudge, loaded with `--success-judge PATH`) can be
given as well: it scores every real and every imagined episode from its frames,
and the report adds its ROC AUC and accuracy against the simulator's test on the
real episodes (the frame judge's agreement is that of a fixed rule) and the
success rates it gives real and imagined episodes.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from kinema.eval.data import EpisodeCache, heldout_seed
from kinema.eval.harness import check_positive, check_size, check_subset, describe_predictor, run_dir
from kinema.eval.metrics import roc_auc
from kinema.eval.plots import comparison_sheet
from kinema.eval.policy import Observation, get_policy
from kinema.eval.predictor import OracleInfo, PredictionRequest, predict_checked
from kinema.eval.results import ResultLog, check_run, figure, fmt, markdown_table, write_json
from kinema.eval.success import TASKS, judge_episode

BENCHMARK = "closed-loop"
MOVED_M = 0.02  # a block counts as moved once it has been 2 cm from where it started
POLICIES = ("expert", "noisy_expert:0.3", "noisy_expert:0.45", "noisy_expert:0.6", "random")
CONTEXT = 1
CHUNK = 32


def imagine(predictor, policy, real, *, context: int = CONTEXT, chunk: int = CHUNK) -> tuple[dict, str]:
    """Imagine the episode `real` (the policy's real run, for its start, task and camera poses) with `predictor`.

    Returns (camera -> uint8 [T, H, W, 3] imagined frames including the real context, mode) where mode is
    "closed loop" or "open-loop replay".
    """
    T, cams = real.length, real.cameras
    if not 1 <= context < T or chunk < 1:
        raise ValueError(f"context and chunk: expected 1 <= context < {T} and chunk >= 1, got {context} and {chunk}")
    frames = {c: real.frames[c][:context].copy() for c in cams}
    instruction = real.task
    replay = policy.privileged
    acts: list[np.ndarray] = []
    if not replay:
        policy.reset(real.seed, instruction)
    t = context
    while t < T:
        k = min(chunk, T - t)
        if replay:
            actions = real.action[: t + k]
        else:
            # rows 0..t+k-2 shape frames 1..t+k-1; step j sees the newest frame it can (at most t-1)
            while len(acts) < t + k - 1:
                j = len(acts)
                seen = {c: frames[c][min(j, t - 1)] for c in cams}
                acts.append(np.asarray(policy.act(Observation(j, instruction, seen, None, None)), np.float32))
            actions = np.stack(acts + acts[-1:])  # the last row acts after the last frame: shapes nothing here
        for c in cams:
            req = PredictionRequest(
                context=frames[c], given=context, num_frames=k, fps=real.fps, camera=c, actions=actions,
                action_names=tuple(real.info.get("action_names", ())), action_timing="after", prompt=instruction,
                intrinsics=real.intrinsics[c][: t + k], extrinsics=real.extrinsics[c][: t + k],
                oracle=OracleInfo(scenario=real.scenario, seed=real.seed, size=real.frames[c].shape[1], policy=None,
                                  context_masks=real.masks[c][:t], context_objects=real.objects[:t],
                                  objects_info=real.objects_info, context_state=real.state[:t]),
            )
            frames[c] = np.concatenate([frames[c], predict_checked(predictor, req)])
        t += k
    return frames, ("open-loop replay" if replay else "closed loop")


def moved_a_block(ep) -> bool:
    """Did anything move a block (a dynamic object) at least MOVED_M from its start? A rung below success that tells a
    policy that never touches a block from one that reaches it and fails (from the simulator's object states)."""
    ids = [o["id"] - 1 for o in ep.objects_info if o.get("kind") == "dynamic"]
    pos = ep.objects[:, ids, :3]  # [T, blocks, xyz]
    return bool(len(ids) and np.linalg.norm(pos - pos[:1], axis=-1).max() >= MOVED_M)


def run(predictor, out, *, n: int = 10, tasks=TASKS, policies=POLICIES, size: int = 64, context: int = CONTEXT,
        chunk: int = CHUNK, judge=None, progress: bool = True) -> dict:
    """Real and imagined success of `policies`; results go to <out>/closed-loop/<predictor.name>/.
    judge: an optional learned success judge (module docstring), scored against the simulator."""
    n, size = check_positive("--n", n), check_size(size)
    tasks = check_subset("--tasks", tasks, TASKS)
    pols = [get_policy(p) if isinstance(p, str) else p for p in policies]  # names, or policies made with options
    if not pols:
        raise ValueError("policies: expected at least one policy")
    if judge is not None and not callable(getattr(judge, "success", None)):
        raise ValueError(f"judge: expected a success judge with success(frames, fps) -> float, got {type(judge).__name__}")
    folder = run_dir(out, BENCHMARK, predictor.name)
    config = dict(benchmark=BENCHMARK, predictor=describe_predictor(predictor), n=n, tasks=tasks,
                  policies=[p.name for p in pols], size=size, context=context, chunk=chunk)
    if judge is not None:  # only then, so runs made before judges existed still resume
        config["judge"] = judge.name
    check_run(folder, config)
    log = ResultLog(folder / "results.jsonl")
    cache = EpisodeCache(folder.parent.parent / "cache")
    units = [(task, p, i) for task in tasks for p in pols for i in range(n)]
    for task, pol, i in tqdm(units, desc=f"closed-loop {predictor.name}", unit="episode", disable=not progress):
        key = f"{task}/{pol.name}/{i}"
        if key in log:
            continue
        real = cache.get_closed_loop(task, heldout_seed(i), pol, size=size)
        imagined, mode = imagine(predictor, pol, real, context=context, chunk=chunk)
        record = dict(key=key, task=task, policy=pol.name, index=i, seed=real.seed, mode=mode,
                      real=bool(real.info["outcome"]["success"]), moved=moved_a_block(real),
                      real_frames=judge_episode(real), imagined=judge_episode(real, imagined))
        if judge is not None:
            record["judge"] = dict(real=judge.success(real.frames, real.fps), imagined=judge.success(imagined, real.fps))
        log.add(record)
    records = [r for r in log.values() if r["task"] in tasks and r["index"] < n
               and r["policy"] in [p.name for p in pols]]
    summary = summarize(records, predictor, tasks, [p.name for p in pols], n, size, context, chunk,
                        judge=None if judge is None else judge.name)
    write_json(folder / "summary.json", summary)
    (folder / "table.md").write_text(table(summary))
    _plot(folder, summary)
    _sheet(folder, predictor, pols, tasks[0], cache, size, context, chunk)
    return summary


def _rank(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (for Spearman's rho)."""
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x), dtype=float)
    for v in np.unique(x):
        r[x == v] = r[x == v].mean()
    return r


def _pearson(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")  # undefined when either side does not vary
    return float(np.corrcoef(a, b)[0, 1])


def summarize(records, predictor, tasks, policies, n, size, context, chunk, judge: str | None = None) -> dict:
    rate_conv = "fraction of the N held-out seeds on which the task succeeded"
    rates, pairs = {}, []
    for task in tasks:
        rates[task] = {}
        for pol in policies:
            rs = [r for r in records if r["task"] == task and r["policy"] == pol]
            if not rs:
                continue
            real = float(np.mean([r["real"] for r in rs]))
            check = float(np.mean([r["real_frames"]["success"] for r in rs]))
            imag = float(np.mean([r["imagined"]["success"] for r in rs]))
            agree = float(np.mean([r["real"] == r["real_frames"]["success"] for r in rs]))
            # records written before "moved" was recorded leave it undefined rather than guessed
            moved = float(np.mean([r["moved"] for r in rs])) if all("moved" in r for r in rs) else float("nan")
            rates[task][pol] = dict(
                real=figure(real, rate_conv + ", judged by the simulator on object states", episodes=len(rs)),
                moved=figure(moved, f"fraction of the N real episodes in which a block moved at least {MOVED_M} m from "
                             "its start (simulator object states): a rung below success"),
                imagined=figure(imag, rate_conv + ", judged from the imagined frames (kinema.eval.success)",
                                mode=rs[0]["mode"]),
                real_frames=figure(check, rate_conv + ", the frame judge applied to the real frames"),
                judge_agreement=figure(agree, "fraction of real episodes where the frame judge agrees with the "
                                               "simulator's test"),
            )
            if judge is not None:
                for side in ("real", "imagined"):
                    rates[task][pol][f"judge_{side}"] = figure(
                        float(np.mean([r["judge"][side] > 0 for r in rs])),
                        f"fraction of the N {side} episodes the success judge {judge} calls a success (log-odds > 0)")
            pairs.append((real, imag))
    real_v, imag_v = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    per_task_rho = {}
    for task in tasks:
        pts = [(d["real"]["value"], d["imagined"]["value"]) for d in rates[task].values()]
        per_task_rho[task] = _pearson(_rank(np.array([p[0] for p in pts])), _rank(np.array([p[1] for p in pts])))
    return dict(
        benchmark=BENCHMARK, predictor=describe_predictor(predictor), n=n, size=size, context=context, chunk=chunk,
        tasks=list(tasks), policies=list(policies), rates=rates,
        pearson_r=figure(_pearson(real_v, imag_v), "Pearson's r between imagined and real success rates over all "
                         "(task, policy) pairs; NaN if either does not vary", pairs=len(pairs)),
        spearman_rho=figure(_pearson(_rank(real_v), _rank(imag_v)), "Spearman's rank correlation (ties averaged) "
                            "between imagined and real success rates over all (task, policy) pairs"),
        spearman_rho_per_task={t: figure(v, "Spearman's rho across policies within the task") for t, v in
                               per_task_rho.items()},
        published=dict(irasim_pearson_r=0.99, note="IRASim's correlation is on its own robot data: the data differ"),
        **({} if judge is None else dict(judge=judge_figures(records, judge))),
    )


def judge_figures(records, judge: str) -> dict:
    """How well the learned success judge tells the real episodes that succeeded (simulator's test) from the rest."""
    scores = np.array([r["judge"]["real"] for r in records], float)
    labels = np.array([r["real"] for r in records], int)
    frame = np.array([r["real_frames"]["success"] for r in records], int)
    conv = f"over the {len(records)} real episodes, against the simulator's test ({int(labels.sum())} successes)"
    pairs = sorted({(r["task"], r["policy"]) for r in records})
    real = np.array([np.mean([r["real"] for r in records if (r["task"], r["policy"]) == k]) for k in pairs])
    said = np.array([np.mean([r["judge"]["real"] > 0 for r in records if (r["task"], r["policy"]) == k]) for k in pairs])
    per = f"between the success rates the judge gives the real episodes and the simulator's, over {len(pairs)} " \
          "(task, policy) pairs: how well it would rank policies as a reward model"
    return dict(
        name=judge,
        pearson_r=figure(_pearson(real, said), "Pearson's r " + per),
        spearman_rho=figure(_pearson(_rank(real), _rank(said)), "Spearman's rank correlation (ties averaged) " + per),
        roc_auc=figure(roc_auc(scores, labels).value, "ROC AUC of the judge's log-odds " + conv),
        accuracy=figure(float(np.mean((scores > 0) == labels)), "fraction the judge gets right at log-odds 0, " + conv),
        frame_judge_accuracy=figure(float(np.mean(frame == labels)), "the frame judge's agreement, " + conv),
        majority_accuracy=figure(float(max(labels.mean(), 1 - labels.mean())), "always the commoner answer, " + conv),
    )


def table(summary: dict) -> str:
    p = summary["predictor"]
    rows = []
    for task, pols in summary["rates"].items():
        for pol, d in pols.items():
            moved = d["moved"]["value"] if "moved" in d else float("nan")
            rows.append([task, pol, fmt(d["real"]["value"], 2), fmt(moved, 2), fmt(d["imagined"]["value"], 2),
                         d["imagined"]["mode"], fmt(d["real_frames"]["value"], 2), fmt(d["judge_agreement"]["value"], 2)])
    head = (f"### Closed loop: world model {p['name']}{' (oracle)' if p['oracle'] else ''}, N={summary['n']} seeds "
            f"per task and policy\n\n")
    foot = (f"\nImagined vs real success rate over {summary['pearson_r']['pairs']} (task, policy) pairs: "
            f"Pearson r = {fmt(summary['pearson_r']['value'])}, Spearman rho = {fmt(summary['spearman_rho']['value'])} "
            "(IRASim reports r = 0.99 on its own data).\n")
    cols = ["task", "policy", "real success", "real: moved a block", "imagined success", "imagination",
            "frame judge on real", "judge agreement"]
    if (j := summary.get("judge")) is not None:
        cols += [f"{j['name']} on real", f"{j['name']} on imagined"]
        rows = [r + [fmt(d["judge_real"]["value"], 2), fmt(d["judge_imagined"]["value"], 2)]
                for r, d in zip(rows, (d for pols in summary["rates"].values() for d in pols.values()))]
        foot += (f"\nSuccess judge {j['name']} on the real episodes, against the simulator's test: ROC AUC "
                 f"{fmt(j['roc_auc']['value'])}, accuracy {fmt(j['accuracy']['value'])} (frame judge "
                 f"{fmt(j['frame_judge_accuracy']['value'])}, always the commoner answer "
                 f"{fmt(j['majority_accuracy']['value'])}); its success rates against the real ones over the "
                 f"(task, policy) pairs: Pearson r = {fmt(j['pearson_r']['value'])}, Spearman rho = "
                 f"{fmt(j['spearman_rho']['value'])}.\n")
    return head + markdown_table(cols, rows) + foot


def _plot(folder, summary):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    # distinct markers and sizes: tasks often land on the same point (both at 1.0, or both at 0.0)
    for (task, pols), marker, size in zip(summary["rates"].items(), "osD^v", (90, 50, 22, 14, 10)):
        xs = [d["real"]["value"] for d in pols.values()]
        ys = [d["imagined"]["value"] for d in pols.values()]
        ax.scatter(xs, ys, label=task, s=size, marker=marker, alpha=0.75)
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("real success rate (simulator)")
    ax.set_ylabel("imagined success rate (world model)")
    ax.set_title(f"{summary['predictor']['name']}: r = {fmt(summary['pearson_r']['value'])}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / "imagined_vs_real.png", dpi=110)
    plt.close(fig)


def _sheet(folder, predictor, pols, task, cache, size, context, chunk):
    """Real vs imagined first seed of each policy on the first task, first camera."""
    items = []
    for pol in pols:
        real = cache.get_closed_loop(task, heldout_seed(0), pol, size=size)
        imagined, _ = imagine(predictor, pol, real, context=context, chunk=chunk)
        cam = real.cameras[0]
        items.append((pol.name.replace("noisy_expert", "noisy"), real.frames[cam], imagined[cam]))
    comparison_sheet(folder / "imagined_vs_real_episodes.png", items, names=("real", "imag"))
