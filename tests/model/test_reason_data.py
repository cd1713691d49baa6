"""Reasoner questions from ground truth, joint sampling, and the evaluation's scoring."""

import json

import numpy as np
import pytest
import torch

from kinema.model.reason_data import JointTasks, questions
from kinema.model.reason_eval import colour_words, normalise, other_episodes, paired, seconds, sign_test, summarise, word_f1


def tabletop_row(plausible=True):
    objects = [dict(id=1, name="table", kind="static", shape="plane", colour="grey"),
               dict(id=2, name="robot", kind="robot", shape="compound", colour="dark grey", noun="robot arm"),
               dict(id=3, name="red_block", kind="dynamic", shape="box", colour="red", noun="block"),
               dict(id=4, name="blue_block", kind="dynamic", shape="box", colour="blue", noun="block")]
    info = dict(family="tabletop", scenario="stack", plausible=plausible, params=dict(block="red_block"),
                state_names=["ee.x", "ee.y", "ee.z", "g"])
    qa = [dict(type="count", question="How many movable objects are in the scene?", answer="2", value=2),
          dict(type="final_position", question="Where?", answer="at x=0", value=[0, 0, 0]),
          dict(type="plausibility", question="Is the motion in this video physically plausible?", answer="yes")]
    return {"kinema/info": json.dumps(info), "kinema/objects": json.dumps(objects), "kinema/seed": "7",
            "kinema/caption": json.dumps("The arm stacks the red block."), "kinema/qa": json.dumps(qa)}


def test_questions_from_ground_truth():
    T = 97
    state = np.zeros((T, 4), np.float32)
    state[:, 2] = np.linspace(0, 0.6, T)  # the hand only rises: every "next move" is up
    qs = questions(tabletop_row(), {"state": state}, fps=8.0, stride=2, t=13, plausibility=False)
    by = {}
    for q in qs:
        by.setdefault(q["type"], []).append(q)
    assert "final_position" not in by and "plausibility" not in by  # skipped: regression / one-label data
    assert by["count"][0]["answer"] == "2"
    assert by["caption"][0]["answer"] == "The arm stacks the red block."
    assert sorted(q["answer"] for q in by["attribute"]) == ["no", "yes"]
    yes = next(q for q in by["attribute"] if q["answer"] == "yes")
    assert yes["question"] in ("Is there a red object in the scene?", "Is there a blue object in the scene?")
    no = next(q for q in by["attribute"] if q["answer"] == "no")
    assert all(c not in no["question"] for c in ("red", "blue", "grey"))
    assert by["target_block"][0]["answer"] == "the red block" and by["target_block"][0]["latent_frames"] == 3
    assert len(by["next_move"]) == 2 and all(q["answer"] == "up" for q in by["next_move"])
    # deterministic per episode seed; plausibility asked where the data hold both labels
    assert questions(tabletop_row(), {"state": state}, 8.0, 2, 13, False) == qs
    assert any(q["type"] == "plausibility" for q in questions(tabletop_row(), {"state": state}, 8.0, 2, 13, True))


def test_joint_tasks_draw_questions_with_the_given_probability():
    gen, reason = [("gen", i) for i in range(10)], [("reason", i) for i in range(3)]
    torch.manual_seed(0)
    draws = [JointTasks(gen, reason, 0.3)[i % 13][0] for i in range(2000)]
    assert draws.count("reason") / 2000 == pytest.approx(0.3, abs=0.04)
    with pytest.raises(ValueError, match="probability"):
        JointTasks(gen, reason, 1.5)


def test_answer_scoring_helpers():
    assert normalise("  The Red  block. ") == "the red block"
    assert seconds("0.27 s") == 0.27 and seconds("there is no collision") is None
    assert word_f1("the red block", "the red block") == 1.0
    assert word_f1("red cube", "the red block") == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert colour_words("The Magenta ball, the grey floor and the red, white box.") == {"magenta", "grey", "red", "white"}


def test_summary_against_hand_computed_baselines():
    rows = [dict(task="count", question="How many?", truth="2", answer="2", value=2),
            dict(task="count", question="How many?", truth="2", answer="3", value=2),
            dict(task="count", question="How many fell?", truth="4", answer="4", value=4),
            dict(task="timing", question="When?", truth="0.50 s", answer="0.40 s", value=0.5),
            dict(task="timing", question="When?", truth="1.00 s", answer="soon", value=1.0),
            dict(task="timing", question="When?", truth="there is no collision", answer="0.30 s", value=None),
            dict(task="plausibility", question="P?", truth="yes", answer="yes", score=2.0, value=None),
            dict(task="plausibility", question="P?", truth="no", answer="no", score=-1.0, value=None),
            dict(task="plausibility", question="P?", truth="no", answer="yes", score=3.0, value=None),
            dict(task="caption", question="D?", truth="The red ball hits the blue box.", answer="The red ball and the green box, red."),
            dict(task="caption", question="D?", truth="The grey plank.", answer="A plank.")]
    s = summarise(rows)
    assert s["count"]["accuracy"] == pytest.approx(2 / 3)
    assert s["count"]["majority"] == pytest.approx(2 / 3)  # "2" twice
    assert s["count"]["blind"] == pytest.approx(1.0)      # each question string has one answer
    assert s["timing"]["mae_s"] == pytest.approx((0.1 + 2.0) / 2) and s["timing"]["unparsed"] == 1
    assert s["timing"]["mae_given_s"] == pytest.approx(0.1)  # "soon" gives no time
    assert s["timing"]["blind_mae_s"] == pytest.approx(0.25)  # median 0.75
    assert s["timing"]["detection"] == pytest.approx(1 / 3)   # only the first says a time where there is one
    assert s["timing"]["blind_detection"] == pytest.approx(2 / 3)
    assert s["plausibility"]["auc"] == pytest.approx(0.5)     # yes=2 beats -1, loses to 3
    assert s["caption"]["colour_precision"] == pytest.approx(1 / 2)  # named {red, green}: red is right
    assert s["caption"]["colour_recall"] == pytest.approx(1 / 3)     # true {red, blue} and {grey}: red named
    assert s["caption"]["colour_precision_chance"] == pytest.approx(1.5 / 11)  # 10 palette colours and grey


def test_paired_comparison_counts_changed_answers_and_their_sign_test():
    """paired: per task, answers only the model gets right (gained) and only the base does (lost), with the exact
    two-sided sign test (hand-computed: 3 against 0 is 2 / 8); evaluations of different questions are refused."""
    q = lambda task, truth, ans, seed: dict(task=task, world="w", seed=seed, camera="front", question=task + "?",  # noqa: E731
                                           truth=truth, answer=ans)
    base = [q("count", "2", "3", 0), q("count", "4", "3", 1), q("count", "5", "5", 2), q("count", "1", "2", 3),
            q("outcome", "yes", "yes", 0), q("caption", "a", "b", 0)]
    model = [q("count", "2", "2", 0), q("count", "4", "4", 1), q("count", "5", "5", 2), q("count", "1", "1", 3),
             q("outcome", "yes", "no", 0), q("caption", "a", "a", 0)]
    out = paired(base, model)
    assert set(out) == {"count", "outcome"}  # captions have no right answer to count
    assert out["count"] == dict(n=4, base=1, model=4, gained=3, lost=0, p=pytest.approx(0.25))
    assert out["outcome"]["lost"] == 1 and out["outcome"]["p"] == 1.0
    assert sign_test(0, 0) == 1.0 and sign_test(10, 0) == pytest.approx(2 / 1024)
    assert set(paired(base, model[:4])) == {"count"}  # outcome asked of one only (eval reason --tasks)
    with pytest.raises(ValueError, match="asked different count questions"):
        paired(base, model[1:])
    with pytest.raises(ValueError, match="asked different count questions"):
        paired(base, [dict(r, seed=9) for r in model])


def test_other_video_is_another_episode_of_the_same_world_and_camera_never_a_twin():
    clips = [dict(world=w, camera=c, seed=s) for w in ("free_fall", "seesaw") for c in ("front", "side")
             for s in (1, 1, 2, 3)]  # seed 1 twice: an episode and its implausible twin
    src = other_episodes(clips, seed=0)
    for c, j in zip(clips, src):
        o = clips[j]
        assert (o["world"], o["camera"]) == (c["world"], c["camera"]) and o["seed"] != c["seed"]
    assert other_episodes(clips, seed=0) == src
    with pytest.raises(ValueError, match="'gyroscope' camera 'front' has one episode"):
        other_episodes([dict(world="gyroscope", camera="front", seed=4)] * 2)


def test_questions_cut_to_a_prefix_hear_only_the_sound_up_to_its_last_frame():
    from kinema.model.reason_data import question_tokens
    from kinema.model.sequence import AUDIO
    from kinema.tokenize.text import TextTokenizer
    from tests.model.helpers import tiny_config

    text = TextTokenizer.train(["which way does the hand move next", "up", "down"], vocab_size=300)
    cfg, hears = tiny_config(), tiny_config(reason_audio=True)
    latent, audio = torch.randn(cfg.latent_channels, 7, 4, 4), torch.randn(cfg.audio_channels, 80)  # 25 frames at 8 fps
    q = dict(question="Which way does the hand move next?", answer="up", latent_frames=3)
    n_audio = lambda c, **kw: int((question_tokens(c, text, latent, 8.0, {**q, **kw}, audio=audio).kind == AUDIO).sum())  # noqa: E731
    assert n_audio(cfg) == 0  # a model that does not hear
    assert n_audio(hears) == -(-29 // 2)  # 9 frames at 8 fps = 1.125 s -> 29 audio latent frames -> 15 tokens
    assert n_audio(hears, latent_frames=None) == 80 // 2  # the whole clip: all of its sound
    assert not (question_tokens(hears, text, latent, 8.0, q, audio=None).kind == AUDIO).any()  # a silent film


def test_reason_tasks_mute_a_share_of_the_clips(tmp_path, monkeypatch):
    import kinema.model.reason_data as rd
    from kinema.model.sequence import AUDIO
    from kinema.tokenize.text import TextTokenizer
    from tests.model.helpers import tiny_config

    cfg = tiny_config(reason_audio=True)
    clip = dict(fps=8.0, questions=[dict(type="count", question="How many?", answer="2")])
    monkeypatch.setattr(rd, "load_reason_shards", lambda shards: ([torch.randn(cfg.latent_channels, 3, 4, 4)], [clip],
                                                                  [torch.randn(cfg.audio_channels, 40)], [None]))
    text = TextTokenizer.train(["how many", "2"], vocab_size=300)
    with pytest.raises(ValueError, match="mute"):
        rd.ReasonTasks([], cfg, text, mute=1.5)
    tasks = rd.ReasonTasks([], cfg, text, mute=0.25)
    torch.manual_seed(0)
    heard = [bool((tasks[0].kind == AUDIO).any()) for _ in range(400)]
    assert 0.68 < np.mean(heard) < 0.82


def test_task_weights_draw_a_task_more_often_and_one_question_can_be_drilled_alone_or_inside_the_mixture(monkeypatch):
    import kinema.model.reason_data as rd
    from kinema.model.train import parse_weights
    from kinema.tokenize.text import TextTokenizer
    from tests.model.helpers import tiny_config

    cfg = tiny_config()
    qs = [dict(type="count", question="How many?", answer="2")] * 3 + [
        dict(type="first_collision_time", question="When?", answer="0.50 s", value=0.5)]
    monkeypatch.setattr(rd, "load_reason_shards", lambda shards: ([torch.randn(cfg.latent_channels, 2, 4, 4)],
                                                                  [dict(fps=8.0, questions=qs)], [None], [None]))
    text = TextTokenizer.train(["how many", "when", "0.50 s", "2"], vocab_size=300)
    weights = parse_weights("timing=3")
    assert weights == {"timing": 3.0} and parse_weights(None) is None
    for bad in ("timing", "timing=x", "timing=4,,"):
        with pytest.raises(ValueError, match="TASK=WEIGHT"):
            parse_weights(bad)
    with pytest.raises(ValueError, match="task weights"):
        rd.ReasonTasks([], cfg, text, task_weights={"timeing": 2.0})
    tasks = rd.ReasonTasks([], cfg, text, task_weights=weights)
    assert tasks.weights.tolist() == [1.0, 1.0, 1.0, 3.0]
    when = text.encode("0.50 s")[0]
    joint = rd.draws(None, tasks, p_reason=0.5)  # questions alone, as `kinema train` without generator data
    torch.manual_seed(0)
    timing = np.mean([bool((joint[0].target == when).any()) for _ in range(600)])
    assert 0.44 < timing < 0.56  # 3 / (3 + 3) of the draws, against 1 / 4 unweighted
    drill = rd.ReasonTasks([], cfg, text, question="When?")
    assert drill.items == [(0, 3)] and bool((drill[0].target == when).any())
    assert rd.draws(None, drill, 0.5) is drill  # no weights: the trainer's uniform index draws alike
    with pytest.raises(ValueError, match="no clip in the shards is asked 'Why\\?'"):
        rd.ReasonTasks([], cfg, text, question="Why?")
    inside = rd.ReasonTasks([], cfg, text, task_weights=weights, question="When?", question_share=0.25)
    assert len(inside) == 4 and torch.allclose(inside.weights, torch.tensor([0.25, 0.25, 0.25, 0.25]))
    inside = rd.ReasonTasks([], cfg, text, question="How many?", question_share=0.5)
    assert torch.allclose(inside.weights, torch.tensor([1 / 6, 1 / 6, 1 / 6, 0.5]))
    for q, share in (("When?", 1.0), (None, 0.5), ("When?", 0.0)):
        with pytest.raises(ValueError, match="question share"):
            rd.ReasonTasks([], cfg, text, question=q, question_share=share)
    with pytest.raises(ValueError, match="question share: the task weights"):
        rd.ReasonTasks([], cfg, text, task_weights={"count": 0.0}, question="When?", question_share=0.5)


def test_question_shards_give_only_the_drilled_question(monkeypatch):
    """A drill's extra episodes (--reason-question-data) add that question's clips and nothing else, so the rest
    of the mixture keeps the balance of worlds of the main shards."""
    import kinema.model.reason_data as rd
    from kinema.tokenize.text import TextTokenizer
    from tests.model.helpers import tiny_config

    cfg = tiny_config()
    qs = {"main": [dict(type="count", question="How many?", answer="2"),
                   dict(type="outcome", question="Which end?", answer="left")],
          "extra": [dict(type="count", question="How many?", answer="3"),
                    dict(type="outcome", question="Which end?", answer="right")]}
    monkeypatch.setattr(rd, "load_reason_shards", lambda shards: (
        [torch.randn(cfg.latent_channels, 2, 4, 4) for _ in shards], [dict(fps=8.0, questions=qs[s]) for s in shards],
        [None] * len(shards), [None] * len(shards)))
    text = TextTokenizer.train(["how many", "which end", "left right", "2 3"], vocab_size=300)
    inside = rd.ReasonTasks(["main"], cfg, text, question="Which end?", question_share=0.5, question_shards=["extra"])
    assert inside.items == [(0, 0), (0, 1), (1, 1)]  # the extra clip's count question is left out
    assert torch.allclose(inside.weights, torch.tensor([0.5, 0.25, 0.25]))
    alone = rd.ReasonTasks(["main"], cfg, text, question="Which end?", question_shards=["extra"])
    assert alone.items == [(0, 1), (1, 1)]
    with pytest.raises(ValueError, match="give the question"):
        rd.ReasonTasks(["main"], cfg, text, question_shards=["extra"])


def test_episodes_in_memory_give_the_shard_their_dataset_gives(tmp_path):
    """The GPU data path (scripts/simulate_latents.py: simulate, then encode an EpisodeList) builds the shard
    `kinema train` builds from the same episodes written as a dataset; a folder of built shards is taken as it is."""
    from kinema.data.lerobot import write_dataset
    from kinema.data.reader import EpisodeList
    from kinema.model.reason_data import build_reason_latents, latent_shards
    from kinema.tokenize.load import load_tokenizer
    from kinema.train.checkpoint import load_tensors, read_json, write_json
    from kinema.worlds.generate import make_plan, simulate_item

    plan = make_plan("free_fall", 2, 0, 32, None, 17, True, "expert")
    eps = [simulate_item(item, plan) for item in plan["items"]]
    write_dataset(tmp_path / "data" / "free_fall-twins", eps, progress=False)
    video = load_tokenizer("checkpoints/tokenizer-cv4x8x8", "video_tokenizer")
    audio = load_tokenizer("checkpoints/tokenizer-audio", "audio_tokenizer")
    [disk] = build_reason_latents(tmp_path / "data", tmp_path / "a", video, audio, progress=False)
    [mem] = build_reason_latents([EpisodeList(eps, "free_fall-twins")], tmp_path / "b", video, audio, progress=False)
    want, got = load_tensors(disk), load_tensors(mem)
    assert sorted(got) == sorted(want) == ["audio", "keyframes", "vision"]
    assert all(torch.equal(got[k], want[k]) for k in want)
    a, b = read_json(disk.with_suffix(".json")), read_json(mem.with_suffix(".json"))
    assert {**a, "dataset": None} == {**b, "dataset": None}
    assert any(q["type"] == "plausibility" for c in b["clips"] for q in c["questions"])
    assert latent_shards(tmp_path / "b", audio=True) == [mem] and latent_shards(tmp_path / "data") is None
    assert build_reason_latents([tmp_path / "b"], tmp_path / "c", video, audio, progress=False) == [mem]
    # `kinema eval reason` reads such a folder too; its report goes where told (a folder not made yet), each row
    # naming the clip it asked about
    from kinema.cli import main

    assert main(["eval", "reason", "--model", "checkpoints/world-model-small", "--data", str(tmp_path / "b"),
                 "--max-per-task", "2", "--out", str(tmp_path / "e" / "new"), "--device", "cpu", "--no-progress"]) == 0
    rows = read_json(tmp_path / "e" / "new" / "reason.json")["rows"]
    assert rows and {(r["seed"], r["camera"]) for r in rows} <= {(c["seed"], c["camera"]) for c in b["clips"]}
    # a shard made under older question rules has its questions made again from its dataset, latents kept
    write_json(disk.with_suffix(".json"), {**a, "questions": 1, "clips": [{**c, "questions": []} for c in a["clips"]]})
    with pytest.raises(ValueError, match="older rules"):
        latent_shards(tmp_path / "a")
    assert build_reason_latents(tmp_path / "data", tmp_path / "a", video, audio, progress=False) == [disk]
    assert read_json(disk.with_suffix(".json")) == a and all(torch.equal(load_tensors(disk)[k], want[k]) for k in want)
    (tmp_path / "b" / "free_fall-twins.json").unlink()
    with pytest.raises(ValueError, match="not a complete reasoner shard"):
        latent_shards(tmp_path / "b")


def test_questions_are_asked_only_where_the_clip_shows_their_answer():
    """Counts need every object in the camera's view, which object lands first needs landings frames apart, and a
    seesaw's lower end needs a plank that tips (MIN_PIXELS, GROUND_GAP, MIN_TILT)."""
    from kinema.model.reason_data import GROUND_GAP, MIN_PIXELS, MIN_TILT

    objects = [dict(id=1, name="floor", kind="static", shape="plane", colour="grey"),
               dict(id=2, name="red_box", kind="dynamic", shape="box", colour="red", noun="box"),
               dict(id=3, name="blue_box", kind="dynamic", shape="box", colour="blue", noun="box")]

    def asked(landings=(0.30, 0.50), angle=None, hidden=0):
        contacts = [dict(time=t, a=1, b=k, resting=False) for k, t in zip((2, 3), landings)]
        qa = [dict(type="count", question="How many movable objects are in the scene?", answer="2"),
              dict(type="first_to_ground", question="Which object hits the ground first?", answer="the red box"),
              dict(type="outcome", question="Which end of the seesaw ends up lower?", answer="the end where ...")]
        info = dict(family="physics", plausible=True, outcome={} if angle is None else dict(plank_angle_deg=angle))
        row = {"kinema/info": json.dumps(info), "kinema/objects": json.dumps(objects), "kinema/seed": "3",
               "kinema/caption": json.dumps("Two boxes fall."), "kinema/qa": json.dumps(qa),
               "kinema/contacts": json.dumps(contacts)}
        masks = np.ones((9, 64, 64), np.uint8)
        masks[3, :10, :10], masks[5, 20:30, 20:30] = 2, 3
        masks[5, 20:30, 20:30][: 10 - hidden] = 3  # rows of the blue box left in view
        masks[5, 20:30, 20:30][10 - hidden:] = 1
        return {q["type"] for q in questions(row, {}, 16.0, 1, 3, False, masks=masks)}

    assert {"count", "first_to_ground", "outcome"} <= asked(angle=MIN_TILT + 1)
    assert "outcome" not in asked(angle=MIN_TILT / 2)  # a plank that stays flat shows no lower end
    assert "first_to_ground" not in asked(landings=(0.30, 0.30 + (GROUND_GAP - 0.5) / 16))
    assert "first_to_ground" in asked(landings=(0.30, 0.30 + (GROUND_GAP + 0.5) / 16))
    assert "count" in asked(hidden=10 - MIN_PIXELS // 10 - 1)  # 20 px of the blue box still show
    assert "count" not in asked(hidden=10)  # the blue box never shows: "2" cannot be seen


def test_simulate_latents_script_makes_shards_train_reads(tmp_path):
    """scripts/simulate_latents.py end to end on one tiny set: a complete shard with sound and the world's
    questions, skipped when run again; a bad set is refused before any compute."""
    import subprocess
    import sys

    from kinema.model.data import shard_complete
    from kinema.model.reason_data import latent_shards
    from kinema.train.checkpoint import read_json

    script = ["scripts/simulate_latents.py", "--out", str(tmp_path), "--workers", "1"]
    run = subprocess.run([sys.executable, *script, "free_fall:1:0:twins"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "1 of 1 sets" in run.stdout
    [shard] = latent_shards(tmp_path, audio=True)
    assert shard.name == "free_fall-twins-s0.safetensors" and shard_complete(shard, True)
    clips = read_json(shard.with_suffix(".json"))["clips"]
    assert len(clips) == 2 * 4 and {q["type"] for c in clips for q in c["questions"]} >= {"count", "plausibility"}
    again = subprocess.run([sys.executable, *script, "free_fall:1:0:twins"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "encoded" not in again.stdout  # complete: skipped
    # past the deadline the sets begun are finished and no other starts (one worker takes the jobs in order)
    cut = subprocess.run([sys.executable, *script, "--deadline", "0.001", "tilted_slope:1:0:twins", "u_slope:1:0"],
                         capture_output=True, text=True, timeout=300)
    assert cut.returncode == 0 and "not made (deadline): u_slope-expert-s0" in cut.stdout, cut.stdout
    assert sorted(p.name for p in latent_shards(tmp_path)) == ["free_fall-twins-s0.safetensors",
                                                                "tilted_slope-twins-s0.safetensors"]
    bad = subprocess.run([sys.executable, *script, "free_fall:x:0"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "SCENARIO:EPISODES:SEED" in bad.stderr
