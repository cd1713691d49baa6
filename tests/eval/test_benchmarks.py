"""A quick mode of every benchmark through the `kinema eval` command, on the tiny preset (1 rollout, 32x32).

Checks the figures that must hold whatever the seed: the second take beats copy-last-frame, baselines that
ignore actions score the same with shuffled ones while the simulator does not, the simulator used as its own
world model ranks policies exactly as reality does, the ground-truth judge separates the twins.
"""

import json

import numpy as np
import pytest

from kinema.cli import main
from kinema.eval.predictor import get_predictor


def _run(args: list[str]) -> None:
    assert main(["eval", *args, "--no-progress"]) == 0


def _summary(out, bench, name) -> dict:
    return json.loads((out / bench / name / "summary.json").read_text())


def _conventions(d, path="") -> list[str]:
    """Every figure (a dict with "value") in a summary must say how it was computed."""
    missing = []
    if isinstance(d, dict):
        if "value" in d and not d.get("convention"):
            missing.append(path)
        for k, v in d.items():
            missing += _conventions(v, f"{path}/{k}")
    return missing


def _copy_last_and_second_take(out, bench) -> tuple[dict, dict]:
    """Run `bench` with both baselines -> their summaries."""
    for b in ("copy_last", "second_take"):
        _run([bench, "--baseline", b, "--quick", "--out", str(out)])
    return _summary(out, bench, "copy_last"), _summary(out, bench, "second_take")


def test_physics_alignment_second_take_beats_copy_last(eval_out):
    copy, take = _copy_last_and_second_take(eval_out, "physics")
    assert not _conventions(copy)
    for c in ("1", "9"):
        assert take["overall"][c]["iou"]["value"] > copy["overall"][c]["iou"]["value"]
        assert take["overall"][c]["ssim"]["value"] > copy["overall"][c]["ssim"]["value"]
        assert copy["overall"][c]["segmenter_gt_iou"]["value"] >= 0.9
    folder = eval_out / "physics" / "copy_last"
    for f in ("results.jsonl", "table.md", "psnr_per_frame.png", "iou_per_frame.png", "best_worst.png"):
        assert (folder / f).stat().st_size > 0
    # resumable: a second run finds every clip done and adds nothing
    lines = (folder / "results.jsonl").read_text().count("\n")
    _run(["physics", "--baseline", "copy_last", "--quick", "--out", str(eval_out)])
    assert (folder / "results.jsonl").read_text().count("\n") == lines == 8 * 2 * 4


def test_tokenizer_round_trip_is_an_oracle_with_a_lossy_ceiling(eval_out):
    """The simulator's own future through the shipped tokenizer: marked as an oracle, never exact, never noise.

    (At 32x32 the 64x64-trained tokenizer is weak, so --quick checks only the range; BENCHMARKS.md has the
    64x64 figures, where its object IoU beats copy_last with one given frame.)"""
    _run(["physics", "--baseline", "tokenizer", "--quick", "--out", str(eval_out)])
    tok = _summary(eval_out, "physics", "tokenizer")
    assert tok["predictor"]["oracle"] and not _conventions(tok)
    for c in ("1", "9"):
        assert 15 < tok["overall"][c]["psnr"]["value"] < 45
    with pytest.raises(ValueError, match="no tokenizer folder"):
        get_predictor("baseline:tokenizer", tokenizer="/nonexistent")


def test_tokenizer_carry_is_the_round_trip_with_the_given_frames_detail(eval_out):
    from kinema.eval.simulator import TokenizerCarry
    from kinema.model.carry import carry_detail

    _run(["physics", "--baseline", "tokenizer_carry", "--quick", "--out", str(eval_out)])
    assert _summary(eval_out, "physics", "tokenizer_carry")["predictor"]["oracle"]
    rng = np.random.default_rng(0)
    decoded = rng.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    given = rng.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    assert np.array_equal(TokenizerCarry._future(decoded, given), carry_detail(decoded[2:], given[-1], decoded[1]))


def test_physics_iq_second_take_beats_copy_last(eval_out):
    copy, take = _copy_last_and_second_take(eval_out, "physics-iq")
    assert not _conventions(copy)
    for c in ("1", "9"):
        assert take["overall"][c]["score"]["value"] > copy["overall"][c]["score"]["value"]


def test_actions_steer_the_simulator_not_the_baselines(eval_out):
    for b in ("copy_last", "simulator", "state_diff"):
        _run(["actions", "--baseline", b, "--quick", "--out", str(eval_out)])
    copy, sim = _summary(eval_out, "actions", "copy_last"), _summary(eval_out, "actions", "simulator")
    assert not _conventions(sim)
    for world in ("push", "pick_place", "stack", "camera_motion"):
        assert copy["forward"][world]["psnr_gap"]["value"] == 0.0  # ignores its actions
        assert sim["forward"][world]["psnr_true"]["value"] > 80  # replays them exactly
        assert sim["forward"][world]["psnr_gap"]["value"] > 10
        gap = sim["forward"][world]["psnr_gap"]  # paired per episode: true beats shuffled on every one
        assert gap["true_wins"] == 1.0 and gap["episodes"] >= 1
        assert copy["forward"][world]["psnr_gap"]["true_wins"] == 0.0
    oracle = _summary(eval_out, "actions", "state_diff")
    for world in ("push", "camera_motion"):  # reading the recorded state beats the mean-action reference by far
        d = oracle["inverse"][world]["translation"]
        assert d["mean_action_mse"]["value"] > 0 and d["ratio"]["value"] < 0.1
    assert "latent L2 skipped" in (eval_out / "actions" / "simulator" / "table.md").read_text()


def test_closed_loop_simulator_as_world_model_agrees_with_reality(eval_out):
    _run(["closed-loop", "--baseline", "simulator", "--quick", "--out", str(eval_out)])
    s = _summary(eval_out, "closed-loop", "simulator")
    assert not _conventions(s)
    rates = s["rates"]["push"]
    assert rates["expert"]["real"]["value"] == 1.0 and rates["random"]["real"]["value"] == 0.0
    assert rates["expert"]["moved"]["value"] == 1.0  # success needs the block moved
    for d in rates.values():
        assert d["imagined"]["value"] == d["real"]["value"]
    assert rates["random"]["imagined"]["mode"] == "closed loop"  # it only looks, so it acts inside the model
    assert rates["expert"]["imagined"]["mode"] == "open-loop replay"
    assert s["pearson_r"]["value"] == pytest.approx(1.0)


class _Judge:
    """A success judge (reward model) that reads frames: log-odds from how much the first camera's last frame
    differs from its first, minus a threshold, so an arm that moved things scores high."""

    name = "frame_change"

    def __init__(self):
        self.calls = 0

    def success(self, frames, fps):
        self.calls += 1
        f = next(iter(frames.values())).astype(float)
        return float(abs(f[-1] - f[0]).mean() - 1.0)


def test_closed_loop_scores_a_success_judge_against_the_simulator(eval_out, tmp_path):
    from kinema.eval import closed_loop

    sim, judge = get_predictor("baseline:simulator"), _Judge()
    s = closed_loop.run(sim, tmp_path, n=1, size=32, tasks=["push"], policies=["expert", "random"], judge=judge,
                        progress=False)
    assert judge.calls == 4  # each of the 2 episodes, real and imagined
    assert not _conventions(s)
    j = s["judge"]
    assert j["name"] == "frame_change" and j["majority_accuracy"]["value"] == 0.5  # one success, one failure
    rates = s["rates"]["push"]
    called = {p: rates[p]["judge_real"]["value"] for p in rates}
    assert j["accuracy"]["value"] == (called["expert"] + 1 - called["random"]) / 2
    assert j["roc_auc"]["value"] in (0.0, 0.5, 1.0)
    for d in rates.values():  # the simulator imagines what happened, so the judge sees the same frames twice
        assert d["judge_imagined"]["value"] == d["judge_real"]["value"]
    table = (tmp_path / "closed-loop" / "simulator" / "table.md").read_text()
    assert "frame_change on real" in table and "Success judge frame_change" in table
    with pytest.raises(ValueError, match="judge: expected a success judge"):
        closed_loop.run(sim, tmp_path / "other", n=1, size=32, tasks=["push"], judge=object(), progress=False)
    with pytest.raises(ValueError, match="other settings"):  # a run made with a judge is not resumed without one
        closed_loop.run(sim, tmp_path, n=1, size=32, tasks=["push"], policies=["expert", "random"], progress=False)


def test_plausibility_state_checker_separates_twins(eval_out):
    _run(["plausibility", "--quick", "--out", str(eval_out)])
    s = _summary(eval_out, "plausibility", "state_checker")
    assert not _conventions(s)
    assert s["auc"]["value"] >= 0.9


def _ensure_every_benchmark(out) -> None:
    """Runs are resumable, so this is instant where an earlier test (on the same xdist worker) already ran them."""
    for args in (["physics", "--baseline", "copy_last"], ["physics-iq", "--baseline", "copy_last"],
                 ["actions", "--baseline", "simulator"], ["closed-loop", "--baseline", "simulator"], ["plausibility"]):
        _run([*args, "--quick", "--out", str(out)])


def test_report_gathers_every_benchmark(eval_out):
    _ensure_every_benchmark(eval_out)
    assert main(["eval", "report", "--out", str(eval_out)]) == 0
    text = (eval_out / "report.md").read_text()
    for section in ("Physics alignment", "Physics-IQ", "Action-conditioned", "Closed loop", "Plausibility"):
        assert section in text
    assert "other data" in text and "Cosmos-1 Diffusion-7B (published)" in text


def test_bad_inputs_are_clear_errors(eval_out, capsys, tmp_path):
    _run(["physics", "--baseline", "copy_last", "--quick", "--out", str(eval_out)])
    assert main(["eval", "physics", "--baseline", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown baseline 'nope'" in capsys.readouterr().err
    assert main(["eval", "physics", "--baseline", "copy_last", "--n", "0", "--out", str(tmp_path)]) == 2
    assert "--n: expected a whole number >= 1, got 0" in capsys.readouterr().err
    assert main(["eval", "closed-loop", "--policies", "teleoperator", "--out", str(tmp_path)]) == 2
    assert "unknown policy 'teleoperator'" in capsys.readouterr().err
    # the quick physics run above used conditions 1,9: other settings in the same folder are refused
    assert main(["eval", "physics", "--baseline", "copy_last", "--quick", "--conditions", "1", "--out",
                 str(eval_out)]) == 2
    assert "holds results made with other settings (conditions)" in capsys.readouterr().err
