"""`kinema generate`: requests are checked against the config before any model loads; one tiny run end to end."""

import json

import cv2
import numpy as np
import pytest

from kinema.data.video_io import decode_audio, decode_video, encode_video_with_audio, probe_video
from kinema.model.carry import DEFAULT_CARRY
from kinema.model.generate import GenerateRequest, generate, validate
from kinema.train.checkpoint import read_json, write_json
from tests.model.helpers import SIZE, random_frames, tiny_config

CFG = tiny_config()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("requests")
    clip = d / "clip.mp4"
    encode_video_with_audio(clip, random_frames(17), 16.0, None)
    write_json(d / "actions.json", {"actions": np.random.default_rng(0).normal(size=(17, 10)).round(4).tolist()})
    write_json(d / "narrow.json", np.zeros((17, 7)).tolist())
    write_json(d / "long_actions.json", np.random.default_rng(1).normal(size=(65, 10)).round(4).tolist())
    encode_video_with_audio(d / "slow.mp4", random_frames(9, seed=2), 8.0, None)  # plays at 8 fps
    cv2.imwrite(str(d / "frame.png"), random_frames(1)[0])
    return d


def _req(files, **kw):
    base = dict(model_mode="forward_dynamics", vision_path=str(files / "clip.mp4"),
                action_path=str(files / "actions.json"), num_frames=17)
    return GenerateRequest(**{**base, **kw})


def test_a_good_request_validates(files):
    need = validate(_req(files), CFG)
    assert need["context_frames"] == 9 and need["domain_name"] == "single_arm" and need["actions"].shape == (17, 10)


@pytest.mark.parametrize("kw,error,match", [
    (dict(model_mode="video2sound"), ValueError, "model_mode: expected one of text2image"),
    (dict(num_frames=32), ValueError, "num_frames: expected 1 \\+ 4k frames"),
    (dict(action_path="narrow.json"), ValueError, "no registered embodiment has actions 7-D"),
    (dict(action_path="narrow.json", domain_name="single_arm"), ValueError,
     "rows have 7 numbers; embodiment 'single_arm' takes 10"),
    (dict(domain_name="hexapod"), ValueError, "unknown embodiment"),
    (dict(vision_path="missing.mp4"), FileNotFoundError, "vision_path: .*missing.mp4 does not exist"),
    (dict(action_path="missing.json"), FileNotFoundError, "action_path: .*missing.json does not exist"),
    (dict(action_path=None), ValueError, "action_path: expected a JSON file of actions"),
    (dict(vision_path=None), ValueError, "vision_path: expected a video"),
    (dict(context_frames=8), ValueError, "context_frames: expected 1 \\+ 4j"),
    (dict(model_mode="text2video", action_path="actions.json", vision_path=None), ValueError, "takes no actions"),
    (dict(enable_sound=True), ValueError, "enable_sound"),
    (dict(sampler="heun"), ValueError, "sampler"),
    (dict(action_guidance=-1.0), ValueError, "action_guidance: expected a number in \\[0, 30\\]"),
    (dict(model_mode="video2video", action_path=None, action_guidance=2.0), ValueError,
     "action_guidance: expected 1 in video2video"),
    (dict(resolution=40), ValueError, "resolution: expected a multiple of 16"),
    (dict(strength=0.0), ValueError, "strength: expected a number in \\(0, 1\\]"),
    (dict(draws=16), ValueError, "draws: expected none in forward_dynamics \\(only inverse_dynamics and policy"),
    (dict(model_mode="inverse_dynamics", action_path=None, domain_name="single_arm", context_frames=17, draws=0),
     ValueError, "draws: expected an integer in \\[1, 256\\]"),
    (dict(model_mode="text2video", action_path=None, vision_path=None, strength=0.5), ValueError,
     "strength: expected 1 in text2video"),
    (dict(carry=1), ValueError, "carry: expected true or false"),
    (dict(model_mode="text2video", action_path=None, vision_path=None, carry=True), ValueError,
     "carry: expected false in text2video"),
    (dict(fps=0.5), ValueError, "fps: expected a number of frames per second in \\[1, 120\\]"),
    (dict(best_of=3), ValueError, "best_of: expected 1 in forward_dynamics \\(the critic reads captions"),
    (dict(model_mode="text2video", action_path=None, vision_path=None, prompt="", best_of=2), ValueError,
     "best_of: expected 1 without a prompt"),
    (dict(model_mode="text2video", action_path=None, vision_path=None, prompt="a box", best_of=17), ValueError,
     "best_of: expected an integer in \\[1, 16\\]"),
    (dict(model_mode="video2video", action_path=None, prompt="a box", num_frames=37, best_of=2), ValueError,
     "best_of: expected 1 when num_frames > 33"),
    # past the tokenizer's 33-frame window only the modes Pipeline.rollout continues (chunk by chunk)
    (dict(model_mode="text2video", action_path=None, vision_path=None, num_frames=37), ValueError,
     "num_frames: expected at most 33 in text2video .*forward_dynamics, video2video"),
    (dict(model_mode="image2video", action_path=None, num_frames=37), ValueError, "num_frames: expected at most 33"),
    (dict(model_mode="policy", action_path="long_actions.json", context_frames=5, num_frames=37), ValueError,
     "num_frames: expected at most 33 in policy"),
    (dict(model_mode="video2video", action_path=None, num_frames=37, enable_sound=True), ValueError,
     "enable_sound: expected false when num_frames > 33"),
    (dict(action_path="long_actions.json", num_frames=65, context_frames=33), ValueError,
     "context_frames: expected 1 \\+ 4j given frames, fewer than the tokenizer's window of 33"),
    # policy conditions on the actions between its given frames: made-up zeros are not history
    (dict(model_mode="policy", action_path=None, domain_name="single_arm", context_frames=5), ValueError,
     "action_path: expected a JSON file of the 4 actions taken between the 5 given frames"),
    # an image is one given frame: not the 9 the request asks for
    (dict(model_mode="video2video", action_path=None, vision_path="frame.png"), ValueError,
     "vision_path: expected a video of at least 9 frames .*context_frames=9.*an image is 1 frame"),
    (dict(vision_path="frame.png"), ValueError, "vision_path: expected a video of at least 9 frames"),
])
def test_bad_requests_fail_with_the_field_named(files, kw, error, match):
    for key in ("vision_path", "action_path"):
        if kw.get(key) and "/" not in kw[key]:
            kw[key] = str(files / kw[key])
    with pytest.raises(error, match=match):
        validate(_req(files, **kw), CFG)


@pytest.mark.parametrize("kw", [
    dict(model_mode="image2video", action_path=None, vision_path="frame.png"),
    dict(model_mode="video2video", action_path=None, vision_path="frame.png", context_frames=1),
    dict(model_mode="policy", action_path=None, domain_name="single_arm", context_frames=1),
    dict(model_mode="video2video", action_path=None, num_frames=37),
    dict(action_path="long_actions.json", num_frames=401 - 4 * 84),
])
def test_good_requests_at_the_edges_validate(files, kw):
    for key in ("vision_path", "action_path"):
        if kw.get(key):
            kw[key] = str(files / kw[key])
    validate(_req(files, **kw), CFG)


def test_validation_runs_before_any_model_is_loaded(files, tmp_path):
    """A folder with a config but no weights: a bad request fails on the request, not on the missing weights."""
    write_json(tmp_path / "config.json", {"kind": "world_model", "model": CFG.to_dict()})
    with pytest.raises(ValueError, match="num_frames"):
        generate(_req(files, num_frames=32), tmp_path, tmp_path / "out", device="cpu", progress=False)
    with pytest.raises(FileNotFoundError, match="action_path"):
        generate(_req(files, action_path=str(files / "missing.json")), tmp_path, tmp_path / "out", device="cpu",
                 progress=False)
    wide = tmp_path / "wide.mp4"
    encode_video_with_audio(wide, np.zeros((17, SIZE, 2 * SIZE, 3), np.uint8), 16.0, None)
    with pytest.raises(ValueError, match=f"vision_path: the generator takes square frames.*{2 * SIZE}x{SIZE}"):
        generate(_req(files, vision_path=str(wide)), tmp_path, tmp_path / "out", device="cpu", progress=False)
    # the given video's fps is the clip's: a request that says otherwise is refused (clip.mp4 plays at 16 fps)
    with pytest.raises(ValueError, match="fps: expected 16 \\(the given video's; or leave fps out\\), got 10.0: "
                                         ".*clip.mp4 plays at 16 fps"):
        generate(_req(files, fps=10.0), tmp_path, tmp_path / "out", device="cpu", progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):  # a good request does reach the loading
        generate(_req(files), tmp_path, tmp_path / "out", device="cpu", progress=False)



@pytest.mark.parametrize("mode", ["inverse_dynamics", "policy"])
def test_generated_actions_need_an_embodiment(files, tmp_path, mode):
    """Without actions nothing tells the action width: the embodiment must be named, and that is checked up front."""
    context_frames = 17 if mode == "inverse_dynamics" else 1  # policy from one frame: no past actions to give
    req = _req(files, model_mode=mode, action_path=None, context_frames=context_frames)
    with pytest.raises(ValueError, match="domain_name: expected one of single_arm, camera, toy_gripper"):
        validate(req, CFG)
    write_json(tmp_path / "config.json", {"kind": "world_model", "model": CFG.to_dict()})
    with pytest.raises(ValueError, match="domain_name"):
        generate(req, tmp_path, tmp_path / "out", device="cpu", progress=False)
    named = validate(_req(files, model_mode=mode, action_path=None, domain_name="camera",
                          context_frames=context_frames), CFG)
    assert named["domain_name"] == "camera"


def test_request_json_rejects_unknown_fields(tmp_path):
    path = tmp_path / "req.json"
    path.write_text(json.dumps({"model_mode": "text2video", "num_frame": 17}))
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['num_frame'\]"):
        GenerateRequest.from_json(path)
    path.write_text(json.dumps({"model_mode": "text2video", "num_frames": 17, "prompt": "a ball"}))
    req = GenerateRequest.from_json(path)
    assert (req.model_mode, req.num_frames, req.prompt) == ("text2video", 17, "a ball")
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        GenerateRequest.from_json(path)


def test_generate_end_to_end(files, saved, tmp_path):
    out = tmp_path / "gen"
    res = generate(_req(files, num_steps=2, seed=1), saved["model"], out, device="cpu", dtype="fp32", progress=False)
    for name in ("video.mp4", "contact.png", "actions.json", "request.json"):
        assert (out / name).is_file(), name
    video = decode_video(out / "video.mp4")
    assert video.shape == (17, SIZE, SIZE, 3)
    actions = read_json(out / "actions.json")
    assert actions["model_mode"] == "forward_dynamics" and np.array(actions["actions"]).shape == (16, 10)
    given = np.array(read_json(files / "actions.json")["actions"])[:16]
    assert np.allclose(actions["actions"], given, atol=1e-4)  # forward dynamics hands the given actions back
    assert read_json(out / "request.json")["num_steps"] == 2
    assert res["seconds"] >= 0 and res["video"].endswith("video.mp4")
    guided = tmp_path / "guided"  # the request's action_guidance reaches the sampler
    generate(_req(files, num_steps=2, seed=1, action_guidance=3.0), saved["model"], guided, device="cpu", dtype="fp32",
             progress=False)
    assert read_json(guided / "request.json")["action_guidance"] == 3.0
    assert not np.array_equal(decode_video(guided / "video.mp4"), video)
    warm = tmp_path / "warm"  # and its strength
    generate(_req(files, num_steps=2, seed=1, strength=0.5), saved["model"], warm, device="cpu", dtype="fp32",
             progress=False)
    assert read_json(warm / "request.json")["strength"] == 0.5
    assert not np.array_equal(decode_video(warm / "video.mp4"), video)
    flip = tmp_path / "carry"  # and its carry, either way from the default
    generate(_req(files, num_steps=2, seed=1, carry=not DEFAULT_CARRY), saved["model"], flip, device="cpu",
             dtype="fp32", progress=False)
    assert read_json(flip / "request.json")["carry"] is (not DEFAULT_CARRY)
    assert not np.array_equal(decode_video(flip / "video.mp4"), video)


def test_best_of_keeps_the_draw_the_critic_scores_highest(files, saved, tmp_path):
    out = tmp_path / "best"
    req = dict(model_mode="text2video", action_path=None, vision_path=None, prompt="a red box falls", num_frames=9,
               num_steps=1, seed=3)
    res = generate(_req(files, best_of=3, **req), saved["model"], out, device="cpu", dtype="fp32", progress=False)
    c = read_json(out / "critic.json")
    assert res["critic"].endswith("critic.json") and [d["seed"] for d in c["draws"]] == [3, 100_006, 200_009]
    assert c["kept"] == int(np.argmax([d["score"] for d in c["draws"]]))
    assert read_json(out / "request.json")["best_of"] == 3
    sheet = cv2.imread(res["candidates"])  # one row a draw, for a person to judge the choice
    assert sheet.shape[0] == 3 * cv2.imread(res["contact_sheet"]).shape[0]
    kept = tmp_path / "kept"  # the video written is the kept draw's, as a plain request with its seed makes it
    generate(_req(files, **{**req, "seed": c["draws"][c["kept"]]["seed"]}), saved["model"], kept, device="cpu",
             dtype="fp32", progress=False)
    np.testing.assert_array_equal(decode_video(out / "video.mp4"), decode_video(kept / "video.mp4"))
    assert not (kept / "critic.json").exists()


def test_longer_than_the_window_rolls_out_to_exactly_num_frames(files, saved, tmp_path):
    """65 frames (two 33-frame windows and then some): chunks of Pipeline.rollout, the given frames first, one
    action row per frame 1..64 as forward dynamics hands them back."""
    out = tmp_path / "long"
    generate(_req(files, action_path=str(files / "long_actions.json"), num_frames=65, num_steps=1), saved["model"],
             out, device="cpu", dtype="fp32", progress=False)
    video = decode_video(out / "video.mp4")
    assert video.shape == (65, SIZE, SIZE, 3)
    actions = np.array(read_json(out / "actions.json")["actions"])
    given = np.array(read_json(files / "long_actions.json"))
    assert actions.shape == (64, 10) and np.allclose(actions, given[:64], atol=1e-4)  # single_arm: row t after frame t


def test_video2video_rollout_at_the_given_videos_fps(files, saved, tmp_path):
    """No fps in the request: the given video's own (slow.mp4: 8 fps, 9 frames) is the clip's, written back."""
    out = tmp_path / "slow"
    generate(_req(files, model_mode="video2video", vision_path=str(files / "slow.mp4"), action_path=None,
                  num_frames=37, num_steps=1), saved["model"], out, device="cpu", dtype="fp32", progress=False)
    assert decode_video(out / "video.mp4").shape == (37, SIZE, SIZE, 3)
    assert probe_video(out / "video.mp4")["fps"] == 8 and read_json(out / "request.json")["fps"] == 8.0


def test_sound_is_muxed_into_the_video(files, saved, tmp_path):
    """image2video from an image, with sound: the mp4 carries an audio stream."""
    out = tmp_path / "sound"
    generate(_req(files, model_mode="image2video", vision_path=str(files / "frame.png"), action_path=None,
                  num_frames=9, num_steps=1, enable_sound=True), saved["model"], out, device="cpu", dtype="fp32",
             progress=False)
    assert decode_video(out / "video.mp4").shape == (9, SIZE, SIZE, 3)
    sound = decode_audio(out / "video.mp4", 16000)
    assert sound is not None and len(sound) > 0


def test_inverse_dynamics_answers_with_the_mean_of_draws(files, saved, tmp_path):
    """draws: the evaluation's point estimate (Pipeline.infer_actions), with the given clip as the video."""
    from kinema.model.pipeline import Pipeline

    out = tmp_path / "inv"
    req = _req(files, model_mode="inverse_dynamics", action_path=None, domain_name="single_arm", draws=3, seed=2)
    generate(req, saved["model"], out, device="cpu", dtype="fp32", progress=False)
    got = np.array(read_json(out / "actions.json")["actions"])
    clip = decode_video(files / "clip.mp4")
    want = Pipeline.from_pretrained(saved["model"], device="cpu", dtype="fp32").infer_actions(
        clip, draws=3, seed=2, domain_name="single_arm")
    assert got.shape == (16, 10) and np.allclose(got, want, atol=1e-6)  # actions.json rounds to 6 decimals
    assert decode_video(out / "video.mp4").shape == clip.shape
    # a checkpoint that ships an action calibration answers through it, as `kinema eval actions` scores it
    import shutil

    from kinema.model.calibration import CALIBRATION_FILE, ActionCalibration

    for key in ("model", "video", "audio"):
        shutil.copytree(saved[key], tmp_path / "ckpt" / saved[key].name)
    model = tmp_path / "ckpt" / saved["model"].name
    cal = ActionCalibration({"single_arm": [0.5] * 10}, {"single_arm": [0.1] * 10})
    cal.save(model / CALIBRATION_FILE.format(mode="inverse_dynamics"))
    generate(req, model, tmp_path / "inv-cal", device="cpu", dtype="fp32", progress=False)
    written = read_json(tmp_path / "inv-cal" / "actions.json")
    assert written["calibrated"] and not read_json(out / "actions.json")["calibrated"]
    assert np.allclose(np.array(written["actions"]), want * 0.5 + 0.1, atol=1e-6)


def test_policy_answers_with_the_mean_of_draws(files, saved, tmp_path):
    """draws in policy mode: the chunk the closed-loop policy acts (Pipeline.infer_actions(mode="policy"))."""
    from kinema.model.pipeline import Pipeline

    out = tmp_path / "pol"
    req = _req(files, model_mode="policy", context_frames=5, draws=2, seed=1, prompt="push the red block")
    need = validate(req, CFG)
    generate(req, saved["model"], out, device="cpu", dtype="fp32", progress=False)
    got = np.array(read_json(out / "actions.json")["actions"])
    clip = decode_video(files / "clip.mp4")[:5]
    want = Pipeline.from_pretrained(saved["model"], device="cpu", dtype="fp32").infer_actions(
        clip, draws=2, seed=1, mode="policy", num_frames=17, actions=need["actions"], domain_name="single_arm",
        prompt="push the red block")
    assert got.shape == (16, 10) and np.allclose(got, want, atol=1e-6)
    assert np.allclose(got[:4], need["actions"][:4], atol=1e-4)  # the history rows come back as given


def test_every_request_field_is_a_flag_of_its_type():
    from dataclasses import fields

    from kinema.cli import build_parser

    args = build_parser().parse_args(["generate", "--num-frames", "17", "--fps", "8", "--model_mode",
                                      "inverse_dynamics", "--sound", "--guidance", "2"])
    assert (args.num_frames, args.fps, args.model_mode, args.enable_sound, args.guidance) == (
        17, 8.0, "inverse_dynamics", True, 2.0)
    assert args.seed is None  # unset flags leave the request file's (or the default) value
    assert all(hasattr(args, f.name) for f in fields(GenerateRequest))


def test_an_import_error_in_generate_surfaces(monkeypatch):
    """A broken import must fail loudly, not silently drop the `kinema generate` command."""
    import sys

    import kinema.model
    from kinema.cli import build_parser

    monkeypatch.delattr(kinema.model, "generate", raising=False)
    monkeypatch.setitem(sys.modules, "kinema.model.generate", None)  # importing it now raises ImportError
    with pytest.raises(ImportError):
        build_parser()
