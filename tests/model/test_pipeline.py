"""Sampling: every mode on the tiny pipeline, long rollouts, cached == uncached sampling, seeds, embodiments,
and checkpoints that load back to the same outputs."""

import json
from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import torch

from kinema.diffusion import sample
from kinema.model.config import WorldModelConfig
from kinema.model.modes import ACTION_MODES, MODES
from kinema.model.pipeline import Pipeline
from kinema.model.sequence import collate
from kinema.model.train import schedule_for
from kinema.train.checkpoint import read_json
from tests.model.helpers import SIZE, TOY, random_frames, tiny_config

T = 17  # frames: 5 latent frames
STEPS = 2
PROMPT = "push the cyan block into the magenta goal"


def _run(pipe, mode, **kw):
    clip = random_frames(T)
    args = dict(num_frames=T, prompt=PROMPT, size=SIZE, num_steps=STEPS, seed=0)
    if mode in ("image2video", "video2video", "forward_dynamics", "policy"):
        args["context"] = clip[:9]
    elif mode == "inverse_dynamics":
        args["context"] = clip
    if mode == "forward_dynamics":
        args["actions"] = np.random.default_rng(0).normal(size=(T, 10)).astype(np.float32)
    elif mode in ACTION_MODES:
        args["domain_name"] = "single_arm"
    args.update(kw)
    return pipe.run(mode, **args)


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_runs(tiny_pipeline, mode):
    out = _run(tiny_pipeline, mode)
    frames = out["frames"]
    n = 1 if mode == "text2image" else T
    assert frames.dtype == np.uint8 and frames.shape == (n, SIZE, SIZE, 3)
    assert out["audio"] is None
    if mode in ACTION_MODES:
        assert out["actions"].shape == (T - 1, 10) and out["actions"].dtype == np.float32
        assert np.isfinite(out["actions"]).all()
    else:
        assert out["actions"] is None
    assert out["context_frames"] == {"image2video": 1, "video2video": 9, "forward_dynamics": 9, "policy": 9,
                                     "inverse_dynamics": T}.get(mode, 0)


def test_forward_dynamics_returns_the_given_actions(tiny_pipeline):
    a = np.random.default_rng(3).normal(size=(T, 10)).astype(np.float32)
    out = _run(tiny_pipeline, "forward_dynamics", actions=a)
    assert np.allclose(out["actions"], a[:-1], atol=1e-5)  # timing "after": rows 0..T-2 shape frames 1..T-1


def test_action_modes_use_the_named_embodiment(tiny_pipeline):
    out = _run(tiny_pipeline, "inverse_dynamics", domain_name=TOY["name"])
    assert out["actions"].shape == (T - 1, TOY["dim"])
    a = np.random.default_rng(0).normal(size=(T, TOY["dim"])).astype(np.float32)
    out = _run(tiny_pipeline, "forward_dynamics", actions=a, domain_name=None, action_names=TOY["action_names"])
    assert np.allclose(out["actions"], a[1:], atol=1e-5)  # timing "at": row r is frame r + 1 itself


@pytest.mark.parametrize("mode", ["text2video", "image2video", "video2video"])
def test_sound(tiny_pipeline, mode):
    out = _run(tiny_pipeline, mode, sound=True)
    sr = tiny_pipeline.audio_tokenizer.cfg.sample_rate
    assert out["audio"].shape == (round(T / 16 * sr),) and out["audio"].dtype == np.float32
    assert np.abs(out["audio"]).max() <= 1 and out["frames"].shape == (T, SIZE, SIZE, 3)


def test_a_model_with_the_pixel_view_reads_its_given_frames_pixels(tiny_pipeline):
    from tests.model.helpers import random_heads, tiny_model

    torch.manual_seed(0)
    model = random_heads(tiny_model(tiny_config(pixel_cell=4)))
    p = tiny_pipeline
    pipe = Pipeline(model, p.text, p.video_tokenizer, p.audio_tokenizer, device="cpu", dtype="fp32")
    asleep = {mode: _run(pipe, mode)["frames"] for mode in ("text2video", "video2video")}
    with torch.no_grad():
        model.pixel_in[2].weight.normal_(0, 0.5)  # the pixel input awake: the output moves where frames are given
    assert np.array_equal(_run(pipe, "text2video")["frames"], asleep["text2video"])
    assert not np.array_equal(_run(pipe, "video2video")["frames"], asleep["video2video"])


def test_with_the_adapter_the_pixel_view_leaves_every_sample_as_it_was(tiny_pipeline):
    """With reason_adapter the pixel view is the questions' alone: the same weights with and without it (trained,
    not at its zero start) sample the same frames and actions in every mode, seed for seed (the noise is drawn no
    wider than what is denoised, though pixel-view tokens are wider)."""
    from tests.model.helpers import random_heads, tiny_model

    torch.manual_seed(0)
    model = random_heads(tiny_model(tiny_config(pixel_cell=4, reason_adapter=4)))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("pixel_in.") or ".lora." in name:
                p.normal_(0, 0.3)
    blind = tiny_model(tiny_config(reason_adapter=4))
    blind.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("pixel_in.")})
    p = tiny_pipeline
    pipes = [Pipeline(m, p.text, p.video_tokenizer, p.audio_tokenizer, device="cpu", dtype="fp32") for m in (model, blind)]
    for mode in ("text2video", "video2video", "forward_dynamics", "inverse_dynamics"):
        a, b = (_run(pipe, mode) for pipe in pipes)
        assert np.array_equal(a["frames"], b["frames"]), mode
        assert (a["actions"] is None and b["actions"] is None) or np.array_equal(a["actions"], b["actions"]), mode


@pytest.mark.parametrize("context", [0, 4])
def test_the_inverse_adapter_moves_inverse_dynamics_alone(tiny_pipeline, context):
    """With inverse_adapter the generator's LoRA (trained: not at its zero start) changes inverse dynamics' actions
    and nothing else: every other mode samples the same frames and actions, seed for seed, as the same weights
    without it, and inverse dynamics too while the adapter is at zero. With inverse_context the same holds with the
    reasoner's LoRA for inverse dynamics' given frames beside it (the pipeline builds that mode's cache through it)."""
    from tests.model.helpers import random_heads, tiny_model

    torch.manual_seed(0)
    plain = random_heads(tiny_model(tiny_config()))
    model = tiny_model(tiny_config(inverse_adapter=4, inverse_context=context))
    model.load_state_dict(plain.state_dict(), strict=False)
    p = tiny_pipeline
    pipes = [Pipeline(m, p.text, p.video_tokenizer, p.audio_tokenizer, device="cpu", dtype="fp32") for m in (model, plain)]
    a, b = (_run(pipe, "inverse_dynamics") for pipe in pipes)
    assert np.array_equal(a["actions"], b["actions"])  # B = 0: it starts as the model without it
    with torch.no_grad():
        for _, w in model.inverse_parameters():
            w.normal_(0, 0.3)
    for mode in ("text2video", "video2video", "forward_dynamics", "policy"):
        a, b = (_run(pipe, mode) for pipe in pipes)
        assert np.array_equal(a["frames"], b["frames"]), mode
        assert (a["actions"] is None and b["actions"] is None) or np.array_equal(a["actions"], b["actions"]), mode
    a, b = (_run(pipe, "inverse_dynamics") for pipe in pipes)
    assert not np.allclose(a["actions"], b["actions"], atol=1e-3)


def test_an_embodiments_own_inverse_adapters_move_its_inverse_dynamics_alone(tiny_pipeline):
    """inverse_own=("camera",): moving the camera's own adapters (site inverse_1) changes the camera's inverse
    dynamics and leaves the arm's, which takes the shared ones, sample for sample as it was."""
    from tests.model.helpers import random_heads, tiny_model

    torch.manual_seed(0)
    model = random_heads(tiny_model(tiny_config(inverse_adapter=4, inverse_context=4, inverse_own=("camera",))))
    with torch.no_grad():
        for _, w in model.inverse_parameters():
            w.normal_(0, 0.3)
        moved = tiny_model(model.config)
        moved.load_state_dict(model.state_dict())
        for _, w in moved.inverse_parameters(("inverse_1",)):
            w.add_(0.2)
    p = tiny_pipeline
    pipes = [Pipeline(m, p.text, p.video_tokenizer, p.audio_tokenizer, device="cpu", dtype="fp32") for m in (model, moved)]
    a, b = (_run(pipe, "inverse_dynamics") for pipe in pipes)
    assert np.array_equal(a["actions"], b["actions"])
    a, b = (_run(pipe, "inverse_dynamics", domain_name="camera") for pipe in pipes)
    assert not np.allclose(a["actions"], b["actions"], atol=1e-3)


def test_64_pixel_frames(tiny_pipeline):
    out = tiny_pipeline.run("image2video", num_frames=9, context=random_frames(1, size=64), num_steps=STEPS)
    assert out["frames"].shape == (9, 64, 64, 3)


@pytest.mark.parametrize("with_actions", [False, True])
def test_rollout_beyond_one_window(tiny_pipeline, monkeypatch, with_actions):
    calls = []
    run = tiny_pipeline.run
    monkeypatch.setattr(tiny_pipeline, "run", lambda mode, **kw: calls.append((mode, kw["num_frames"])) or run(mode, **kw))
    context, future = random_frames(5), 23
    actions = np.random.default_rng(0).normal(size=(5 + future, 10)).astype(np.float32) if with_actions else None
    out = tiny_pipeline.rollout(context, future, actions=actions, window=T, max_context=9, num_steps=STEPS,
                                domain_name="single_arm" if with_actions else None)
    assert out.shape == (future, SIZE, SIZE, 3) and out.dtype == np.uint8
    assert len(calls) >= 2 and all(n <= T for _, n in calls)
    assert {m for m, _ in calls} == {"forward_dynamics" if with_actions else "video2video"}


# ------------------------------------------------------------------ cached == uncached


def _uncached_denoise(pipe, tok, guides, *, num_steps, shift, sampler, seed, progress, strength=1.0):
    """Pipeline._denoise written the slow way: the whole sequence (context included) at every step, no cache."""
    seqs = [tok] + [u for u, _ in guides]
    full = collate(seqs)
    n, Ln, V = len(seqs), int(tok.gen.sum()), tok.value.shape[-1]
    assert all(int(s.gen.sum()) == Ln for s in seqs)
    schedule = schedule_for(pipe.config)
    real = (torch.arange(V) < tok.dims[tok.gen][:, None]).float()
    noise, init = pipe.start(tok, real, seed, strength)

    def denoise(x, t):
        value = full.value.clone()
        value[full.gen] = schedule.model_input(x, t).float().repeat(n, 1)
        level = torch.where(full.gen, schedule.noise_level(t).float(), torch.zeros(()))
        out = pipe.model(replace(full, value=value), level)[full.gen].reshape(n, Ln, V)
        x0 = schedule.to_x0(x, t, out)
        out = x0[0].clone()
        for i, (_, g) in enumerate(guides):  # each guide pulls away from its sequence: x0_u + g (x0_c - x0_u)
            out += (g - 1) * (x0[0] - x0[i + 1])
        return out * real

    values = tok.value.clone()
    values[tok.gen] = sample(denoise, noise, schedule, num_steps=num_steps, sampler=sampler, shift=shift, init=init,
                             strength=strength).float()
    return values


@pytest.mark.parametrize("mode,guidance,action_guidance", [("text2video", 3.0, 1.0), ("video2video", 2.5, 1.0),
                                                            ("policy", 1.0, 1.0), ("forward_dynamics", 2.0, 3.0)])
def test_cached_sampling_equals_uncached(tiny_pipeline, monkeypatch, mode, guidance, action_guidance):
    pipe = tiny_pipeline
    seen = []
    unpack = pipe._unpack
    monkeypatch.setattr(pipe, "_unpack", lambda *a: seen.append(a[2]) or unpack(*a))
    kw = dict(guidance=guidance, num_steps=3, sound=mode in ("text2video", "video2video"))
    if action_guidance != 1.0:
        kw["action_guidance"] = action_guidance
    cached = _run(pipe, mode, **kw)
    monkeypatch.setattr(pipe, "_denoise", partial(_uncached_denoise, pipe))
    uncached = _run(pipe, mode, **kw)
    assert len(seen) == 2
    assert torch.allclose(seen[0], seen[1], atol=1e-4, rtol=1e-4), (seen[0] - seen[1]).abs().max()
    assert np.abs(cached["frames"].astype(int) - uncached["frames"]).max() <= 1
    for key in ("audio", "actions"):
        if cached[key] is not None:
            assert np.allclose(cached[key], uncached[key], atol=1e-4)


@pytest.mark.parametrize("mode", ["forward_dynamics", "video2video", "image2video"])
def test_strength_starts_the_future_from_the_last_given_frame(tiny_pipeline, monkeypatch, mode):
    """A sampler that returns its guess unchanged shows the guess: every generated latent frame is the last given one."""
    import kinema.model.pipeline as pipeline

    calls, latents = [], []
    monkeypatch.setattr(pipeline, "sample", lambda *a, **kw: calls.append(kw) or kw["init"])
    decode = tiny_pipeline.decode_latents
    monkeypatch.setattr(tiny_pipeline, "decode_latents", lambda z, n: latents.append(z) or decode(z, n))
    _run(tiny_pipeline, mode, strength=0.4)
    (kw,), (z,) = calls, latents
    assert kw["strength"] == 0.4
    k = 1 if mode == "image2video" else 3
    assert torch.allclose(z[:, k:], z[:, k - 1 : k].expand_as(z[:, k:]), atol=1e-6)
    assert k == 1 or not torch.allclose(z[:, 0], z[:, k - 1])  # the given frames themselves differ


def test_strength_needs_given_frames_and_a_future(tiny_pipeline):
    for mode in ("text2video", "inverse_dynamics"):
        with pytest.raises(ValueError, match=f"strength: below 1 only where given frames start a future to generate; "
                                             f"{mode}"):
            _run(tiny_pipeline, mode, strength=0.5)
    with pytest.raises(ValueError, match="strength must be a number in"):
        _run(tiny_pipeline, "forward_dynamics", strength=1.5)


def test_guidance_changes_the_sample(tiny_pipeline):
    a, b = (_run(tiny_pipeline, "text2video", guidance=g)["frames"] for g in (1.0, 4.0))
    assert not np.array_equal(a, b)


def test_action_guidance_pulls_away_from_the_actionless_prediction(tiny_pipeline, monkeypatch):
    """g_a = 0 is video2video on the same frames; g_a = 1 is plain forward dynamics; others extrapolate."""
    seen = []
    unpack = tiny_pipeline._unpack
    monkeypatch.setattr(tiny_pipeline, "_unpack", lambda *a: seen.append(a[2][a[1].tok.gen]) or unpack(*a))
    plain = _run(tiny_pipeline, "forward_dynamics")
    assert np.array_equal(plain["frames"], _run(tiny_pipeline, "forward_dynamics", action_guidance=1.0)["frames"])
    _run(tiny_pipeline, "forward_dynamics", action_guidance=0.0)
    _run(tiny_pipeline, "video2video", strength=1.0)  # from pure noise, as forward dynamics starts
    _run(tiny_pipeline, "forward_dynamics", action_guidance=3.0)
    fd, _, no_actions, v2v, guided = seen
    assert torch.allclose(no_actions, v2v, atol=1e-5)  # guidance 0 leaves only the actionless sequence
    assert not torch.allclose(guided, fd, atol=1e-3)
    with pytest.raises(ValueError, match="action_guidance: only forward_dynamics"):
        _run(tiny_pipeline, "video2video", action_guidance=2.0)


# ------------------------------------------------------------------ seeds, embodiments


def test_seeds_reproduce(tiny_pipeline):
    a, b, c = (_run(tiny_pipeline, "text2video", seed=s, sound=True) for s in (7, 7, 8))
    assert np.array_equal(a["frames"], b["frames"]) and np.array_equal(a["audio"], b["audio"])
    assert not np.array_equal(a["frames"], c["frames"]) and not np.array_equal(a["audio"], c["audio"])
    p, q = (_run(tiny_pipeline, "policy", seed=s)["actions"] for s in (1, 2))
    assert not np.allclose(p, q)


def test_actions_of_the_wrong_width_are_refused(tiny_pipeline):
    bad = np.zeros((T, 7), np.float32)
    with pytest.raises(ValueError, match=r"7 numbers per row; embodiment 'single_arm' takes 10"):
        _run(tiny_pipeline, "forward_dynamics", actions=bad, domain_name="single_arm")
    with pytest.raises(ValueError, match=r"10 numbers per row; embodiment 'toy_gripper' takes 3"):
        _run(tiny_pipeline, "forward_dynamics", domain_name=TOY["name"])
    with pytest.raises(ValueError, match="no registered embodiment has actions 7-D"):
        _run(tiny_pipeline, "forward_dynamics", actions=bad)
    with pytest.raises(ValueError, match="unknown embodiment"):
        _run(tiny_pipeline, "inverse_dynamics", domain_name="hexapod")
    with pytest.raises(ValueError, match="a row for each of the 17 frames"):
        _run(tiny_pipeline, "forward_dynamics", actions=np.zeros((5, 10), np.float32))


def test_bad_requests_are_refused(tiny_pipeline):
    with pytest.raises(ValueError, match="model_mode"):
        tiny_pipeline.run("video2audio")
    with pytest.raises(ValueError, match="needs given frames"):
        tiny_pipeline.run("video2video", num_frames=T)
    with pytest.raises(ValueError, match="1 \\+ k·4 frames"):
        tiny_pipeline.run("text2video", num_frames=16)
    with pytest.raises(ValueError, match="multiple of 16"):
        tiny_pipeline.run("text2image", size=40)
    with pytest.raises(ValueError, match="whole clip"):
        _run(tiny_pipeline, "inverse_dynamics", context=random_frames(9))


# ------------------------------------------------------------------ checkpoints


def test_checkpoint_loads_to_the_same_outputs(tiny_pipeline, saved):
    loaded = Pipeline.from_pretrained(saved["model"], device="cpu", dtype="fp32", video_tokenizer=saved["video"],
                                      audio_tokenizer=saved["audio"])
    assert loaded.config == tiny_pipeline.config
    assert loaded.text.vocab_size == tiny_pipeline.text.vocab_size
    for mode, kw in (("text2video", dict(sound=True, guidance=2.0)), ("forward_dynamics", {}), ("policy", {})):
        a, b = _run(tiny_pipeline, mode, seed=3, **kw), _run(loaded, mode, seed=3, **kw)
        for key in ("frames", "actions", "audio"):
            assert (a[key] is None) == (b[key] is None) and (a[key] is None or np.array_equal(a[key], b[key])), key
    # the tokenizers are found beside the model by the names in its config
    beside = Pipeline.from_pretrained(saved["model"], device="cpu", dtype="fp32")
    assert np.array_equal(_run(beside, "text2image")["frames"], _run(tiny_pipeline, "text2image")["frames"])


def test_config_json_round_trips(tiny_pipeline, saved):
    raw = read_json(saved["model"] / "config.json")
    assert raw["kind"] == "world_model"
    cfg = WorldModelConfig.from_dict(raw["model"])
    assert cfg == tiny_pipeline.config
    toy = cfg.embodiments[-1]
    assert (toy.name, toy.dim, toy.timing, toy.action_names) == (TOY["name"], TOY["dim"], TOY["timing"], TOY["action_names"])
    assert toy.mean == [0.1, -0.2, 0.5] and toy.std == [2.0, 1.5, 0.25]
    assert [e.name for e in cfg.embodiments] == ["single_arm", "camera", TOY["name"]]
    assert WorldModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown WorldModelConfig keys"):
        WorldModelConfig.from_dict(dict(raw["model"], colour="blue"))


def test_wrong_kind_of_checkpoint_is_refused(saved):
    with pytest.raises(ValueError, match="expected 'world_model'"):
        Pipeline.from_pretrained(saved["video"], device="cpu")


def test_bf16_sampling_stays_close_to_fp32(tiny_pipeline):
    p = tiny_pipeline
    bf16 = Pipeline(p.model, p.text, p.video_tokenizer, p.audio_tokenizer, device="cpu", dtype="bf16")
    for mode in ("video2video", "policy"):
        a, b = _run(bf16, mode, guidance=2.0, num_steps=3), _run(p, mode, guidance=2.0, num_steps=3)
        assert a["frames"].shape == b["frames"].shape
        assert np.abs(a["frames"].astype(int) - b["frames"]).mean() < 4
        if mode == "policy":
            assert np.abs(a["actions"] - b["actions"]).max() < 0.05
    with pytest.raises(ValueError, match="fp32 or bf16"):
        Pipeline(p.model, p.text, p.video_tokenizer, p.audio_tokenizer, device="cpu", dtype="fp16")


def test_predictor_with_action_guidance_or_strength_through_the_registry(saved):
    """`kinema eval actions --action-guidance G` / `--strength S` load this predictor: own results folders, own
    rollouts (a strength also with no actions: it starts video2video from the last given frame too)."""
    from kinema.eval.predictor import PredictionRequest, get_predictor, predict_checked

    plain = get_predictor(str(saved["model"]), device="cpu", num_steps=2)
    guided = get_predictor(str(saved["model"]), device="cpu", num_steps=2, action_guidance=2.5)
    assert (plain.name, guided.name) == ("world_model", "world_model_ag2.5")
    ctx = random_frames(9)
    acts = np.random.default_rng(1).normal(size=(17, 10)).astype(np.float32)
    req = PredictionRequest(context=ctx, num_frames=8, fps=16.0, camera="front", actions=acts,
                            action_names=plain.pipeline.config.embodiments[0].action_names)
    a, b = predict_checked(plain, req), predict_checked(guided, req)
    assert a.shape == b.shape == (8, SIZE, SIZE, 3) and not np.array_equal(a, b)
    passive = PredictionRequest(context=ctx, num_frames=8, fps=16.0, camera="front")  # no actions: nothing to guide
    assert np.array_equal(predict_checked(plain, passive), predict_checked(guided, passive))
    warm = get_predictor(str(saved["model"]), device="cpu", num_steps=2, strength=0.5, action_guidance=2.5)
    cold = get_predictor(str(saved["model"]), device="cpu", num_steps=2, strength=1.0)
    assert (warm.name, cold.name) == ("world_model_ag2.5_s0.5", "world_model_s1")
    assert not np.array_equal(predict_checked(warm, req), b)
    assert np.array_equal(predict_checked(cold, req), a)  # forward dynamics starts from pure noise by default
    assert not np.array_equal(predict_checked(cold, passive), predict_checked(plain, passive))  # video2video: 0.7


def test_actions_benchmark_scores_the_mean_of_several_samples(saved, tmp_path):
    """`kinema eval actions --samples K`: K seeds per clip and actions, the mean metric scored, the seed restored."""
    from kinema.eval import actions as bench
    from kinema.eval.predictor import get_predictor

    pred = get_predictor(str(saved["model"]), device="cpu", num_steps=2, inverse_samples=1)
    s = bench.run(pred, tmp_path, n=1, scenarios=["push"], size=32, mean_episodes=2, samples=2, progress=False)
    assert pred.seed == 0 and s["samples"] == 2
    folder = tmp_path / "actions" / "world_model_samples2"
    rec = json.loads((folder / "results.jsonl").read_text().splitlines()[0])
    for cam in rec["forward"].values():
        for scores in cam.values():
            draws = scores["psnr_samples"]
            assert len(draws) == 2 and draws[0] != draws[1]  # an untrained model's samples differ by seed
            assert scores["psnr"] == pytest.approx(np.mean(draws))
            assert len(scores["psnr_per_frame"]) == 24
    first = rec["forward"]["front"]["true"]["psnr_samples"][0]  # draw 0 is the one-sample run's prediction
    one = bench.run(pred, tmp_path, n=1, scenarios=["push"], size=32, mean_episodes=2, progress=False)
    assert one["forward"]["push"]["psnr_true"]["value"] != s["forward"]["push"]["psnr_true"]["value"]
    rec1 = json.loads((tmp_path / "actions" / "world_model" / "results.jsonl").read_text().splitlines()[0])
    assert rec1["forward"]["front"]["true"]["psnr"] == pytest.approx(first)
    assert "mean of 2 samples" in (folder / "table.md").read_text()
    with pytest.raises(ValueError, match="--samples 2: predictor 'copy_last' does not sample"):
        bench.run(get_predictor("baseline:copy_last"), tmp_path, n=1, scenarios=["push"], size=32, samples=2)
    pred.strength = 0.5  # sampled otherwise under the same name: not resumed on top of the rollouts made before
    with pytest.raises(ValueError, match="world_model holds results made with other settings \\(predictor\\)"):
        bench.run(pred, tmp_path, n=1, scenarios=["push"], size=32, mean_episodes=2, progress=False)


def test_inverse_dynamics_predictor_returns_the_mean_of_one_step_draws(saved):
    """The evaluation's point estimate of the actions: x0 after one step from noise, averaged over draws."""
    from kinema.eval.predictor import PredictionRequest, get_predictor

    pred = get_predictor(str(saved["model"]), device="cpu", inverse_samples=3)
    clip = random_frames(17)
    names = pred.pipeline.config.embodiments[0].action_names
    got = pred.infer_actions(PredictionRequest(context=clip, num_frames=0, fps=16.0, camera="front",
                                               action_names=names, action_timing="after"))
    draws = [pred.pipeline.run("inverse_dynamics", num_frames=17, context=clip, domain_name="single_arm",
                               num_steps=1, seed=s)["actions"] for s in range(3)]
    # exactly: one encoding and one K/V cache serve every draw, as separate calls would compute them
    assert got.shape == (16, 10) and np.array_equal(got, np.mean(draws, 0))
    assert not np.allclose(draws[0], draws[1])  # the draws differ; their mean is the estimate
    with pytest.raises(ValueError, match="draws: expected at least 1"):
        pred.pipeline.infer_actions(clip, draws=0, domain_name="single_arm")


def test_the_time_shift_follows_the_resolution_and_one_sample_stays_in_one_window(tiny_pipeline):
    """SD3's resolution-dependent shift: base_shift at 16 tokens a latent frame, x sqrt(tokens / 16) otherwise,
    in training (schedule_for's size) and by default in sampling (the request's size); a shift given wins."""
    from kinema.model.train import schedule_for

    c = tiny_pipeline.config
    grid = 64 // c.spatial_compression // c.patch[0]
    assert schedule_for(c).shift == pytest.approx(c.base_shift * grid / 4)
    assert schedule_for(c, size=128).shift == pytest.approx(2 * schedule_for(c).shift)
    small = tiny_pipeline._plan("text2video", num_frames=5, size=32)
    large = tiny_pipeline._plan("text2video", num_frames=5, size=64)
    assert large.shift == pytest.approx(2 * small.shift) and large.shift == pytest.approx(schedule_for(c).shift)
    assert tiny_pipeline._plan("text2video", num_frames=5, size=32, shift=3.0).shift == 3.0
    with pytest.raises(ValueError, match="Pipeline.rollout continues longer clips"):
        tiny_pipeline._plan("text2video", num_frames=c.tokenizer_window + 4)


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m"])
def test_edm_sampling_through_the_pipeline_lands_on_what_the_network_predicts(tiny_pipeline, sampler):
    """With --schedule edm the pipeline samples through EDM's preconditioning: a network whose denoised guess is
    always X0 (it reads sigma back from the noise level and x_t from the scaled input) must end exactly on X0."""
    import copy

    from kinema.diffusion.schedules import EDM

    model = copy.deepcopy(tiny_pipeline.model)
    model.config = replace(model.config, schedule="edm")
    pipe = Pipeline(model, tiny_pipeline.text, tiny_pipeline.video_tokenizer, tiny_pipeline.audio_tokenizer,
                    device="cpu", dtype="fp32")
    edm, X0, seen = EDM(), 0.3, []

    def oracle(tok, level, cache=None, text_at=None):
        sigma = (4 * level.float()).exp()[..., None]  # noise_level = ln(sigma) / 4
        x_t = tok.value * (sigma**2 + edm.sigma_data**2).sqrt()  # model_input = x_t / sqrt(sigma^2 + sd^2)
        c_skip, c_out, _, _ = edm.preconditioning(sigma)
        seen.append(float(sigma.max()))
        return (X0 - c_skip * x_t) / c_out

    model.forward = oracle
    p = pipe._plan("text2video", num_frames=5, num_steps=6, sampler=sampler)
    assert p.shift is None  # EDM moves its noise through sigma_max and rho, not a shift
    values = pipe._denoise(p.tok, p.guides, num_steps=6, shift=p.shift, sampler=sampler, seed=0, progress=False)
    gen = values[p.tok.gen]
    real = torch.arange(gen.shape[1]) < p.tok.dims[p.tok.gen][:, None]
    assert torch.allclose(gen[real], torch.full_like(gen[real], X0), atol=1e-4)
    assert max(seen) == pytest.approx(edm.sigma_max, rel=1e-3)  # it started at EDM's sigma_max
