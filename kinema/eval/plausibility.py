"""Benchmark 5, plausibility: can a judge tell physically implausible twins from real episodes?

Legend: T frames, H height, W width.

For every world, N held-out episodes and their implausible twins
(kinema.worlds.twins: the same seed with one violation from a random frame
on). Twin i breaks physics with violation VIOLATIONS[i mod 4], so every type
is equally represented. A judge (kinema.eval.judge) scores all of them,
higher = more plausible; the figure is the ROC AUC of "original" against
"twin" (kinema.eval.metrics.roc_auc), overall, per world and per violation
type (all originals against the twins of that type). A twin whose violation
cannot be seen (an object that turns colour out of every camera's view, an
upward pull weaker than the boxes stacked on it) is still counted: the
labels are the simulator's, not what a viewer could know.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from kinema.eval import metrics as M
from kinema.eval.data import EpisodeCache, heldout_seed
from kinema.eval.harness import check_positive, check_size, check_subset, run_dir
from kinema.eval.plots import comparison_sheet
from kinema.eval.results import ResultLog, check_run, figure, fmt, markdown_table, write_json
from kinema.worlds.registry import WORLDS
from kinema.worlds.twins import VIOLATIONS

BENCHMARK = "plausibility"
SCENARIOS = tuple(WORLDS)


def _score(judge, ep) -> float:
    s = float(judge.score(ep))
    if not np.isfinite(s):
        raise ValueError(f"judge {judge.name!r} returned {s} for {ep.scenario} seed {ep.seed}; expected a finite number")
    return s


def run(judge, out, *, n: int = 10, scenarios=SCENARIOS, size: int = 64, progress: bool = True) -> dict:
    """Score originals and twins with `judge`; results go to <out>/plausibility/<judge.name>/."""
    n, size = check_positive("--n", n), check_size(size)
    scenarios = check_subset("--scenarios", scenarios, SCENARIOS)
    folder = run_dir(out, BENCHMARK, judge.name)
    check_run(folder, dict(benchmark=BENCHMARK, judge=judge.name, n=n, scenarios=scenarios, size=size))
    log = ResultLog(folder / "results.jsonl")
    cache = EpisodeCache(folder.parent.parent / "cache")
    units = [(sc, i) for sc in scenarios for i in range(n)]
    for sc, i in tqdm(units, desc=f"plausibility {judge.name}", unit="pair", disable=not progress):
        key = f"{sc}/{i}"
        if key in log:
            continue
        seed = heldout_seed(i)
        original = cache.get(sc, seed, size=size)
        twin = cache.get(sc, seed, size=size, violation=VIOLATIONS[i % len(VIOLATIONS)])
        log.add(dict(key=key, scenario=sc, index=i, seed=seed, violation=twin.info["violation"],
                     original=_score(judge, original), twin=_score(judge, twin)))
    records = [r for r in log.values() if r["scenario"] in scenarios and r["index"] < n]
    summary = summarize(records, judge, scenarios, n, size)
    write_json(folder / "summary.json", summary)
    (folder / "table.md").write_text(table(summary))
    _plot(folder, records, summary)
    _sheet(folder, records, cache, size)
    return summary


def _auc(originals, twins) -> dict:
    r = M.roc_auc(list(originals) + list(twins), [1] * len(originals) + [0] * len(twins))
    return figure(r.value, r.convention + "; positive = the original (plausible) episode, score = the judge's",
                  originals=len(originals), twins=len(twins))


def summarize(records, judge, scenarios, n, size) -> dict:
    orig = [r["original"] for r in records]
    by_type = {v: _auc(orig, [r["twin"] for r in records if r["violation"]["type"] == v]) for v in VIOLATIONS}
    return dict(
        benchmark=BENCHMARK, predictor={"name": judge.name, "oracle": judge.name == "state_checker",
                                        "class": type(judge).__name__},
        n=n, size=size, scenarios=list(scenarios),
        auc=_auc(orig, [r["twin"] for r in records]),
        per_scenario={sc: _auc([r["original"] for r in records if r["scenario"] == sc],
                               [r["twin"] for r in records if r["scenario"] == sc]) for sc in scenarios},
        per_violation=by_type,
    )


def table(summary: dict) -> str:
    p = summary["predictor"]
    rows = [[sc, fmt(d["value"]), d["originals"]] for sc, d in summary["per_scenario"].items()]
    rows += [[f"twins: {v}", fmt(d["value"]), d["twins"]] for v, d in summary["per_violation"].items()]
    rows.append(["**all**", fmt(summary["auc"]["value"]), summary["auc"]["originals"] + summary["auc"]["twins"]])
    note = " (reads simulator ground truth: proves the harness, not a learned judge)" if p["oracle"] else ""
    return (f"### Plausibility: judge {p['name']}{note}, N={summary['n']} originals + N twins per world\n\n"
            + markdown_table(["world / subset", "ROC AUC", "episodes"], rows))


def _plot(folder, records, summary):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = np.array([r["original"] for r in records] + [r["twin"] for r in records])
    y = np.array([1] * len(records) + [0] * len(records))
    # sweep the threshold from above the highest score down: (false positive rate, true positive rate)
    th = np.concatenate([[np.inf], np.sort(np.unique(s))[::-1]])
    tpr = [(s[y == 1] >= t).mean() for t in th]
    fpr = [(s[y == 0] >= t).mean() for t in th]
    fig, ax = plt.subplots(figsize=(4.0, 4.0))
    ax.plot(fpr, tpr, drawstyle="steps-post", linewidth=1.5)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("twins judged plausible (false positive rate)")
    ax.set_ylabel("originals judged plausible (true positive rate)")
    ax.set_title(f"{summary['predictor']['name']}: ROC AUC {fmt(summary['auc']['value'])}", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / "roc.png", dpi=110)
    plt.close(fig)


def _sheet(folder, records, cache, size, k: int = 3):
    """The k twins the judge found most plausible (its misses), each under its original."""
    missed = sorted(records, key=lambda r: r["twin"], reverse=True)[:k]
    items, legend = [], []
    for j, r in enumerate(missed):
        v = r["violation"]
        original = cache.get(r["scenario"], r["seed"], size=size)
        twin = cache.get(r["scenario"], r["seed"], size=size, violation=v["type"])
        cam = original.cameras[0]
        items.append((f"miss{j + 1}", original.frames[cam], twin.frames[cam]))
        legend.append(f"miss{j + 1}: {r['scenario']} seed {r['seed']}, {v['type']} of {v['object_name']} from frame "
                      f"{v['frame']}; judge scores original {r['original']:.3f}, twin {r['twin']:.3f}")
    comparison_sheet(folder / "most_missed_twins.png", items, names=("orig", "twin"))
    (folder / "most_missed_twins.txt").write_text("Rows of most_missed_twins.png (the original, then its twin, "
                                                  "first camera):\n" + "\n".join(legend) + "\n")
