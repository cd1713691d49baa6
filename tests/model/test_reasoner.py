"""The reasoner path: interleaved positions and targets, KV-cache decoding, streaming, scoring, the judge."""

import math

import numpy as np
import pytest
import torch

from kinema.model.decoding import SamplingParams
from kinema.model.reasoner import Reasoner, ReasonerJudge, reasoner_clip
from kinema.model.sequence import TEXT, VISION, build_interleaved, collate
from kinema.model.train import schedule_for, world_model_loss
from tests.model.helpers import random_frames, tiny_config, tiny_model


@pytest.fixture(scope="module")
def reasoner(tiny_pipeline):
    r = Reasoner(tiny_pipeline)
    with torch.no_grad():  # a peaky text head: random logits with clear winners, so greedy has no near-ties
        g = torch.Generator().manual_seed(7)
        r.model.text_out.weight.copy_(torch.randn(r.model.text_out.weight.shape, generator=g))
    return r


def messages(question="push the red block", frames=9):
    return [{"role": "user", "content": [{"type": "video", "video": random_frames(frames), "fps": 16},
                                         {"type": "text", "text": question}]}]


def test_interleaved_positions_groups_and_targets():
    cfg = tiny_config()
    vision = torch.randn(cfg.latent_channels, 3, 4, 4)  # 3 latent frames of 2x2 tokens
    tok = build_interleaved(cfg, [("text", [4, 11, 12]), ("vision", vision, 8.0), ("text", [13, 14]), ("text", [15, 5])],
                            scored={3})
    assert tok.kind.tolist() == [TEXT] * 3 + [VISION] * 12 + [TEXT] * 4
    pos = tok.pos
    assert pos[:3].tolist() == [[p, p, p] for p in (0.0, 1.0, 2.0)]
    # video: time zero text_margin after the text; at 8 fps a latent frame (4 frames) is 0.5 s = 2 positions at 4/s
    t0 = 3 + cfg.text_margin
    assert pos[3:7, 0].tolist() == [t0] * 4 and pos[7, 0] == t0 + 4 / 8.0 * cfg.positions_per_second
    assert pos[3:7, 1:].tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    after = math.ceil(float(pos[3:15, 0].max())) + 1
    assert pos[15:, 0].tolist() == [after, after + 1, after + 2, after + 3]
    assert (pos[15:, 0] == pos[15:, 1]).all()
    g = tok.group.tolist()
    assert g[:3] == [0, 1, 2] and g[3:7] == [3] * 4 and g[11:15] == [5] * 4 and g[15:] == [6, 7, 8, 9]
    # scored: the answer [15, 5] is predicted from the token before each of its ids
    assert tok.target.tolist() == [-1] * 16 + [15, 5, -1]


def test_kv_cache_decoding_equals_full_recomputation(reasoner):
    prompt = reasoner.prompt(messages())
    params = SamplingParams(max_new_tokens=12)
    cached = list(reasoner.generate_ids(prompt, params, use_cache=True))
    full = list(reasoner.generate_ids(prompt, params, use_cache=False))
    assert len(cached) > 3 and cached == full
    sampled = SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=12, seed=3)
    assert list(reasoner.generate_ids(prompt, sampled)) == list(reasoner.generate_ids(prompt, sampled, use_cache=False))


def test_an_adapted_reasoner_decodes_and_scores_through_its_adapter(tiny_pipeline, reasoner):
    """With a (trained-looking) adapter the cached decoding and the batched choice scoring still equal their
    references, and the answers differ from the same weights without the adapter."""
    from kinema.model.pipeline import Pipeline

    p = tiny_pipeline
    model = tiny_model(tiny_config(reason_adapter=4))
    model.load_state_dict(reasoner.model.state_dict(), strict=False)  # the same base weights, the adapter added
    with torch.no_grad():
        for name, w in model.adapter_parameters():
            if name.endswith(".B"):
                w.copy_(torch.randn(w.shape, generator=torch.Generator().manual_seed(len(name))) * 0.5)
    r = Reasoner(Pipeline(model, p.text, p.video_tokenizer, p.audio_tokenizer, device="cpu", dtype="fp32"))
    prompt = r.prompt(messages())
    params = SamplingParams(max_new_tokens=12)
    cached = list(r.generate_ids(prompt, params))
    assert len(cached) > 3 and cached == list(r.generate_ids(prompt, params, use_cache=False))
    assert cached != list(reasoner.generate_ids(prompt, params))
    choices = ["yes", "the red block"]
    lp = r.score_tokens(prompt, choices)
    from kinema.model.reasoner import _cat, _text_token

    pos, group = float(prompt.pos.max()) + 1, int(prompt.group.max()) + 1
    seq, want, ids = prompt, 0.0, r.text.encode(choices[1]) + [r.text.token_id("<|im_end|>")]
    for j, i in enumerate(ids):
        want += float(torch.log_softmax(r._run(seq, None)[0][0], -1)[i])
        seq = _cat(seq, _text_token(r.config, i, pos + j, group + j))
    assert lp[1] == pytest.approx(want, abs=1e-4)


def test_a_named_world_with_an_adapter_of_its_own_is_asked_through_it(tiny_pipeline, reasoner):
    """reason_own: `domain` names the clip's world; the seesaw's questions decode (cached = recomputed) and score
    through its own adapter, any other world's (or an unnamed one's) through the shared one, bit for bit as a model
    without own worlds answers them."""
    from kinema.model.pipeline import Pipeline

    p = tiny_pipeline
    shared = tiny_model(tiny_config(reason_adapter=4))
    own = tiny_model(tiny_config(reason_adapter=4, reason_own=("seesaw",)))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        shared.load_state_dict(reasoner.model.state_dict(), strict=False)
        for name, w in shared.adapter_parameters():
            if name.endswith(".B"):
                w.copy_(torch.randn(w.shape, generator=g) * 0.5)
        own.load_state_dict(shared.state_dict(), strict=False)
        for _, w in own.reason_own_parameters(("seesaw",)):
            w.copy_(torch.randn(w.shape, generator=g) * 0.5)
    rs, ro = (Reasoner(Pipeline(m, p.text, p.video_tokenizer, p.audio_tokenizer, device="cpu", dtype="fp32"))
              for m in (shared, own))
    params = SamplingParams(max_new_tokens=12)
    for domain in (None, "dominoes"):
        assert ro.answer(messages(), params, domain=domain) == rs.answer(messages(), params)
        assert ro.choice_logprobs(messages(), ["yes", "no"], domain=domain) == rs.choice_logprobs(messages(), ["yes", "no"])
    prompt = ro.prompt(messages(), domain="seesaw")
    assert int(prompt.world.max()) == 1
    cached = list(ro.generate_ids(prompt, params))
    assert len(cached) > 3 and cached == list(ro.generate_ids(prompt, params, use_cache=False))
    assert cached != list(rs.generate_ids(rs.prompt(messages()), params))
    assert ro.choice_logprobs(messages(), ["yes", "no"], domain="seesaw") != rs.choice_logprobs(messages(), ["yes", "no"])


def test_seeded_sampling_reproduces_and_seeds_differ(reasoner):
    p = lambda s: SamplingParams(temperature=1.5, top_k=50, max_new_tokens=16, seed=s)  # noqa: E731
    a = reasoner.answer(messages(), p(1))
    assert a == reasoner.answer(messages(), p(1))
    assert any(reasoner.answer(messages(), p(s)) != a for s in (2, 3, 4))


def test_streaming_yields_the_same_text_as_the_whole_answer(reasoner, monkeypatch):
    params = SamplingParams(max_new_tokens=20)
    assert "".join(reasoner.stream(messages(), params)) == reasoner.answer(messages(), params)
    # a random model's text may be one unfinished multi-byte run: script the ids to see pieces and a 2-byte char
    said = "the red block, café, falls"
    monkeypatch.setattr(reasoner, "generate_ids", lambda *a, **k: iter(reasoner.text.encode(said)))
    pieces = list(reasoner.stream(messages(), params))
    assert len(pieces) > 3 and "".join(pieces) == said and all("\ufffd" not in p for p in pieces)


def test_stop_token_ends_the_answer_and_is_not_yielded(reasoner, monkeypatch):
    prompt = reasoner.prompt(messages())
    ids = list(reasoner.generate_ids(prompt, SamplingParams(max_new_tokens=8)))
    k = next((i for i in range(1, len(ids)) if ids[i] not in ids[:i]), 0)  # the first new id (else the first)
    monkeypatch.setattr(reasoner, "stop_ids", {ids[k]})
    assert list(reasoner.generate_ids(prompt, SamplingParams(max_new_tokens=8))) == ids[:k]


def test_choice_logprobs_match_teacher_forced_recomputation(reasoner):
    msgs = messages()
    lp = reasoner.choice_logprobs(msgs, ["yes", "the red block"])
    for choice, got in zip(["yes", "the red block"], lp):
        ids = reasoner.text.encode(choice) + [reasoner.text.token_id("<|im_end|>")]
        prompt = reasoner.prompt(msgs)
        want, seq = 0.0, prompt
        from kinema.model.reasoner import _cat, _text_token

        pos, group = float(prompt.pos.max()) + 1, int(prompt.group.max()) + 1
        for j, i in enumerate(ids):
            logits, _ = reasoner._run(seq, None)
            want += float(torch.log_softmax(logits[0], -1)[i])
            seq = _cat(seq, _text_token(reasoner.config, i, pos + j, group + j))
        assert got == pytest.approx(want, abs=1e-4)


def test_min_risk_is_the_posterior_median_under_absolute_error(reasoner):
    from kinema.model.reason_eval import TIMING_CHOICES, time_loss

    tok = reasoner.prompt(messages("At what second does the first collision happen?"))
    choices = TIMING_CHOICES[:12]
    logp = np.array(reasoner.score_tokens(tok, choices))
    i, post = reasoner.min_risk(tok, choices, lambda a, b: float(a != b))  # 0/1 loss: the most probable choice
    assert i == int(logp.argmax()) and post.sum() == pytest.approx(1.0)
    assert np.allclose(np.log(post) - np.log(post).max(), logp - logp.max(), atol=1e-5)
    times = choices[1:]  # absolute error over times alone: the weighted median of the renormalised posterior
    i, post = reasoner.min_risk(tok, times, time_loss)
    cdf = np.cumsum(post)
    assert i == int(np.searchsorted(cdf, 0.5))
    assert time_loss("0.25 s", "0.40 s") == pytest.approx(0.15) and time_loss("there is no collision", "1.00 s") == 2.0


def test_judge_scores_episodes_and_videos(reasoner):
    judge = ReasonerJudge(reasoner)
    s = judge.score(random_frames(9))
    assert np.isfinite(s)
    yes, no = reasoner.choice_logprobs(messages("Is the motion in this video physically plausible?"), ["yes", "no"])
    assert judge.score(random_frames(9)) == pytest.approx(yes - no, abs=1e-5)


def test_success_judge_averages_the_log_odds_over_cameras(reasoner):
    judge = ReasonerJudge(reasoner)
    front, side = random_frames(9), random_frames(9)[::-1].copy()
    each = []
    for f in (front, side):
        msgs = [{"role": "user", "content": [{"type": "video", "video": f, "fps": 8.0},
                                             {"type": "text", "text": "Did the robot succeed?"}]}]
        yes, no = reasoner.choice_logprobs(msgs, ["yes", "no"])
        each.append(yes - no)
    assert judge.success({"front": front, "side": side}, 8.0) == pytest.approx(np.mean(each), abs=1e-5)
    assert judge.success({"front": front}, 8.0) == pytest.approx(each[0], abs=1e-5)
    with pytest.raises(ValueError, match="at least one camera"):
        judge.success({}, 8.0)


def test_long_videos_are_subsampled_in_time_and_cut_to_1_plus_4k():
    frames = np.zeros((97, 8, 8, 3), np.uint8)
    clip, fps = reasoner_clip(frames, 16.0)
    assert (len(clip), fps) == (49, 8.0)
    clip, fps = reasoner_clip(frames[:31], 16.0)
    assert (len(clip), fps) == (29, 16.0)


def test_reasoner_loss_trains_the_text_head_and_reasoner_weights_only():
    cfg = tiny_config()
    model = tiny_model(cfg).train()
    vision = torch.randn(cfg.latent_channels, 2, 4, 4)
    batch = collate([build_interleaved(cfg, [("text", [4, 20, 21]), ("vision", vision, 16.0), ("text", [22, 23, 5])],
                                       scored={2})])
    loss, metrics = world_model_loss(model, batch, schedule_for(cfg))
    assert "loss/text" in metrics and metrics["loss/text"] == pytest.approx(float(loss.detach()), rel=1e-2)
    loss.backward()
    layer = model.backbone.layers[0]
    assert model.text_out.weight.grad.abs().sum() > 0 and layer.und.qkv.weight.grad.abs().sum() > 0
    assert layer.gen.qkv.weight.grad is None or layer.gen.qkv.weight.grad.abs().sum() == 0


def test_checkpoint_loads_as_a_plausibility_judge(saved):
    from kinema.eval.judge import get_judge

    judge = get_judge(str(saved["model"]), device="cpu")
    assert isinstance(judge, ReasonerJudge)
    assert np.isfinite(judge.score(random_frames(5)))


def test_reason_command_streams_the_answer(saved, tmp_path, capsys):
    from kinema.cli import main
    from kinema.data.video_io import encode_video

    video = encode_video(tmp_path / "clip.mp4", random_frames(9), 16.0)
    main(["reason", "--model", str(saved["model"]), "--video", str(video), "--prompt", "push the red block",
          "--max-new-tokens", "6", "--device", "cpu"])
    streamed = capsys.readouterr().out
    main(["reason", "--model", str(saved["model"]), "--video", str(video), "--prompt", "push the red block",
          "--max-new-tokens", "6", "--device", "cpu", "--no-stream"])
    assert capsys.readouterr().out == streamed and streamed.strip()
    with pytest.raises(SystemExit, match="does not exist"):
        main(["reason", "--model", str(saved["model"]), "--video", str(tmp_path / "missing.mp4"), "--prompt", "x"])
    assert main(["reason", "--model", str(saved["model"]), "--prompt", "x", "--top-p", "0"]) != 0
    assert "top_p: expected in (0, 1]" in capsys.readouterr().err


# ---------------------------------------------------------------- hearing: the video's sound (config.reason_audio)

def clicks(seconds: float, at=(0.2,), sr: int = 16000) -> np.ndarray:
    """Silence with short decaying clicks (contact sounds) at the given times."""
    wav = np.zeros(round(seconds * sr), np.float32)
    for t in at:
        i = round(t * sr)
        n = min(400, len(wav) - i)
        wav[i : i + n] = 0.8 * np.sin(np.arange(n) * 0.7) * np.exp(-np.arange(n) / 80)
    return wav


@pytest.fixture(scope="module")
def hearing(tiny_pipeline):
    from kinema.model.pipeline import Pipeline

    p = tiny_pipeline
    r = Reasoner(Pipeline(tiny_model(tiny_config(reason_audio=True)), p.text, p.video_tokenizer, p.audio_tokenizer,
                          device="cpu", dtype="fp32"))
    with torch.no_grad():
        r.model.text_out.weight.copy_(torch.randn(r.model.text_out.weight.shape, generator=torch.Generator().manual_seed(7)))
    return r


def test_video_sound_joins_the_latent_frame_of_its_time():
    from kinema.model.sequence import AUDIO

    cfg = tiny_config()
    vision = torch.randn(cfg.latent_channels, 3, 4, 4)  # 3 latent frames at 8 fps: frames 0, 1-4, 5-8 (1.125 s)
    audio = torch.randn(cfg.audio_channels, 28)  # 1.12 s at 25 Hz -> 14 tokens of 2 latent frames
    silent = build_interleaved(cfg, [("text", [4, 11]), ("vision", vision, 8.0), ("text", [13, 5])], scored={2})
    tok = build_interleaved(cfg, [("text", [4, 11]), ("vision", vision, 8.0, audio), ("text", [13, 5])], scored={2})
    a = tok.kind == AUDIO
    assert int(a.sum()) == 14 and (tok.dims[a] == cfg.audio_dim).all()
    t0 = 2 + cfg.text_margin
    secs = (torch.arange(14) * 2 + 1) / 25.0  # token centres
    assert torch.allclose(tok.pos[a][:, 0], t0 + secs * cfg.positions_per_second) and (tok.pos[a][:, 1:] == 0).all()
    frame = torch.ceil(secs * 8.0 / 4).clamp(max=2)  # the latent frame holding that time
    assert tok.group[a].tolist() == (2 + frame).long().tolist()
    assert (tok.group[2:-2].diff() >= 0).all()  # sequence order is time order: each frame's patches, then its sound
    assert torch.equal(tok.value[a][:, : cfg.audio_dim].reshape(14, cfg.audio_channels, 2).permute(1, 0, 2).reshape(
        cfg.audio_channels, 28), audio)
    # the text after the video starts after the last sound, and the answer is scored the same
    assert tok.pos[-2, 0] == math.ceil(float(tok.pos[a][:, 0].max())) + 1
    assert tok.target[tok.target >= 0].tolist() == silent.target[silent.target >= 0].tolist() == [5]


def test_a_model_that_hears_reads_the_sound_of_arrays_and_files(hearing, reasoner, tmp_path):
    from kinema.data.video_io import encode_video_with_audio
    from kinema.model.sequence import AUDIO

    frames, wav = random_frames(9), clicks(9 / 16, at=(0.1, 0.4))
    with_sound = [{"role": "user", "content": [{"type": "video", "video": frames, "fps": 16, "audio": wav,
                                                "sample_rate": 16000}, {"type": "text", "text": "push"}]}]
    tok = hearing.prompt(with_sound)
    na = math.ceil(9 / 16 * 25)  # 15 audio latent frames -> 8 tokens
    assert int((tok.kind == AUDIO).sum()) == -(-na // 2)
    assert not (hearing.prompt(messages("push", 9)).kind == AUDIO).any()  # no sound given: a silent film
    assert not (reasoner.prompt(with_sound).kind == AUDIO).any()  # a model that does not hear ignores it
    # the sound changes what it says; the KV cache still equals recomputation
    loud, quiet = (hearing.choice_logprobs(m, ["yes", "no"]) for m in (with_sound, messages("push", 9)))
    assert loud != pytest.approx(quiet, abs=1e-4)
    params = SamplingParams(max_new_tokens=8)
    assert list(hearing.generate_ids(tok, params)) == list(hearing.generate_ids(tok, params, use_cache=False))
    # an mp4 brings its sound track (AAC: close, not exact)
    clip = encode_video_with_audio(tmp_path / "clip.mp4", frames, 16.0, wav)
    from_file = hearing.prompt([{"role": "user", "content": [{"type": "video", "video": str(clip)},
                                                             {"type": "text", "text": "push"}]}])
    a, b = (t.value[t.kind == AUDIO] for t in (from_file, tok))
    assert a.shape == b.shape and float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]) > 0.9
    with pytest.raises(ValueError, match="44100 Hz"):
        hearing.prompt([{"role": "user", "content": [{"type": "video", "video": frames, "audio": wav,
                                                      "sample_rate": 44100}, {"type": "text", "text": "x"}]}])


@pytest.mark.parametrize("part, match", [
    ({"audio": np.zeros(10, np.int16), "sample_rate": 16000}, "mono float array"),
    ({"audio": np.zeros((2, 10), np.float32), "sample_rate": 16000}, "mono float array"),
    ({"audio": np.zeros(10, np.float32)}, "sample_rate"),
    ({"audio": np.zeros(10, np.float32), "sample_rate": 0}, "sample_rate"),
])
def test_chat_rejects_malformed_sound(part, match):
    from kinema.model.chat import validate

    with pytest.raises(ValueError, match=match):
        validate([{"role": "user", "content": [{"type": "video", "video": random_frames(5), **part}]}])


def test_the_judge_hears_an_episode(hearing):
    from types import SimpleNamespace

    frames, wav = random_frames(9), clicks(9 / 16, at=(0.3,))
    ep = SimpleNamespace(frames={"front": frames}, cameras=["front"], fps=16.0, audio=wav, sample_rate=16000)
    q = {"type": "text", "text": "Is the motion in this video physically plausible?"}
    yes, no = hearing.choice_logprobs([{"role": "user", "content": [
        {"type": "video", "video": frames, "fps": 16.0, "audio": wav, "sample_rate": 16000}, q]}], ["yes", "no"])
    assert ReasonerJudge(hearing).score(ep) == pytest.approx(yes - no, abs=1e-5)
    silent = SimpleNamespace(**{**ep.__dict__, "audio": np.zeros(0, np.float32)})
    assert ReasonerJudge(hearing).score(silent) != pytest.approx(yes - no, abs=1e-4)


def test_pixel_patches_follow_the_token_order_and_reject_bad_keyframes():
    from kinema.model.sequence import keyframes, pixel_patches

    cfg = tiny_config(pixel_cell=4)  # a token covers 2x2 latents = 16x16 pixels -> 4x4 cells of 3 colours
    assert cfg.pixel_dim == 48 and cfg.value_dim >= cfg.vision_dim + 48
    keys = torch.zeros(2, 32, 32, 3, dtype=torch.uint8)
    keys[1, :16, 16:] = 255  # frame 1, top-right token: white
    keys[1, 16:, :4, 0] = 255  # frame 1, bottom-left token: its first column of cells red
    p = pixel_patches(cfg, keys)
    assert p.shape == (2 * 4, 48) and (p[:4] == -1).all()
    assert (p[5] == 1).all() and (p[4] == -1).all() and (p[7] == -1).all()
    red = p[6].reshape(3, 4, 4)
    assert (red[0, :, 0] == 1).all() and (red[0, :, 1:] == -1).all() and (red[1:] == -1).all()
    assert keyframes(np.arange(9), 4).tolist() == [0, 4, 8]  # the last frame each causal latent frame has seen
    assert keyframes(np.arange(49), 4, 33).tolist() == [*range(0, 33, 4), 33, 37, 41, 45, 48]  # windows of 33
    # and a latent frame sits at the time of the frame it has seen last: the second window's key latent at 33
    tok = build_interleaved(cfg, [("vision", torch.randn(cfg.latent_channels, 14, 4, 4), 8.0)])
    frame = (tok.pos[::4, 0] - cfg.text_margin) / cfg.positions_per_second * 8.0
    assert torch.allclose(frame, torch.tensor([*range(0, 33, 4), 33, 37, 41, 45, 49], dtype=torch.float))
    for bad in (keys.float(), keys[..., :2], keys[:, :30]):
        with pytest.raises(ValueError, match="keyframes"):
            pixel_patches(cfg, bad)
    with pytest.raises(ValueError, match="pixel_cell"):
        tiny_config(pixel_cell=5)


def test_the_pixel_input_is_read_by_clean_vision_tokens_only_and_starts_at_zero():
    cfg, blind = tiny_config(pixel_cell=4), tiny_config()
    vision = torch.randn(cfg.latent_channels, 2, 4, 4)
    keys = torch.from_numpy(random_frames(5))[::4]
    segs = lambda k: [("text", [4, 20]), ("vision", vision, 16.0, None, k), ("text", [22, 5])]  # noqa: E731
    with_keys = build_interleaved(cfg, segs(keys), scored={2})
    assert torch.equal(build_interleaved(blind, segs(keys)).value, build_interleaved(blind, segs(None)).value)
    v = with_keys.value[with_keys.kind == VISION]
    assert v[:, cfg.vision_dim :].abs().sum() > 0 and (with_keys.dims[with_keys.kind == VISION] == cfg.vision_dim).all()
    with pytest.raises(ValueError, match="one per latent frame"):
        build_interleaved(cfg, [("vision", vision, 16.0, None, keys[:1])])
    model = tiny_model(cfg)
    assert "pixel_in.0.weight" in dict(model.reasoner_parameters())
    b = collate([with_keys])
    level = torch.zeros(b.kind.shape)
    without = collate([build_interleaved(cfg, segs(None), scored={2})])
    assert torch.equal(model.embed(b, level), model.embed(without, level))  # zero output layer: unchanged at start
    with torch.no_grad():
        model.pixel_in[2].weight.normal_(0, 0.1)
    moved = (model.embed(b, level) - model.embed(without, level)).abs().sum(-1)[0]
    assert (moved[b.kind[0] == VISION] > 0).all() and (moved[b.kind[0] != VISION] == 0).all()
    loss, _ = world_model_loss(model.train(), b, schedule_for(cfg))
    loss.backward()
    assert model.pixel_in[0].weight.grad.abs().sum() > 0


@torch.no_grad()
def test_with_the_adapter_only_questions_read_the_pixel_view():
    """With reason_adapter, the pixel view belongs to the adapter's path: a question's answer reads its pixels, a
    generator sample's given frames do not (its outputs and the context K/V stay exactly as without pixels)."""
    from kinema.model.modes import plan_tokens

    cfg = tiny_config(pixel_cell=4, reason_adapter=4)
    model = tiny_model(cfg)
    assert "pixel_in.0.weight" in dict(model.adapter_parameters())
    for name, p in model.named_parameters():  # the adapter and pixel view trained
        if ".lora." in name or name.startswith("pixel_in."):
            p.normal_(0, 0.1)
    vision = torch.randn(cfg.latent_channels, 3, 4, 4)
    keys = torch.from_numpy(random_frames(9))[::4]
    segs = lambda k: [("text", [4, 20]), ("vision", vision, 16.0, None, k), ("text", [22, 5])]  # noqa: E731
    q, q_blind = (collate([build_interleaved(cfg, segs(k), scored={2})]) for k in (keys, None))
    at = q.kind == TEXT
    logits = lambda b: model(b, torch.zeros(b.kind.shape), text_at=at)[1]  # noqa: E731
    assert not torch.allclose(logits(q), logits(q_blind))
    assert not torch.allclose(model.reason_states(q)[0], model.reason_states(q_blind)[0])
    streams = dict(vision=vision, fps=16.0, audio=None, actions=None, domain=None)
    g, g_blind = (plan_tokens(cfg, "video2video", dict(streams, keys=k), k=2) for k in (keys, None))
    assert not torch.equal(g.value, g_blind.value)  # the given frames do carry their pixels ...
    level = torch.full(collate([g]).kind.shape, 0.5)
    assert torch.equal(model(collate([g]), level), model(collate([g_blind]), level))  # ... the generator reads none
    ctx, ctx_blind = (model.encode_context(collate([s.select(~s.gen)])) for s in (g, g_blind))
    for a, b in zip(ctx.layers, ctx_blind.layers):
        assert torch.equal(a.k, b.k) and torch.equal(a.v, b.v)


def test_a_generator_sample_gives_its_given_frames_pixels_and_its_generated_frames_none():
    from kinema.model.modes import plan_tokens
    from kinema.model.sequence import build, pixel_patches

    cfg, blind = tiny_config(pixel_cell=4), tiny_config()
    vision = torch.randn(cfg.latent_channels, 3, 4, 4)
    keys = torch.from_numpy(random_frames(9))[::4]  # one keyframe per latent frame
    streams = dict(vision=vision, fps=16.0, audio=None, actions=None, domain=None, keys=keys)
    tok = plan_tokens(cfg, "video2video", streams, k=2)
    v, gen = tok.value[tok.kind == VISION], tok.gen[tok.kind == VISION]
    pix = v[:, cfg.vision_dim : cfg.vision_dim + cfg.pixel_dim]
    assert gen.sum() == 4 and torch.equal(pix[~gen], pixel_patches(cfg, keys[:2])) and (pix[gen] == 0).all()
    assert (tok.dims[tok.kind == VISION] == cfg.vision_dim).all()  # the pixels are never a target to denoise
    # keyframes of the given frames only (as sampling has them) give the same tokens
    assert torch.equal(plan_tokens(cfg, "video2video", dict(streams, keys=keys[:2]), k=2).value, tok.value)
    # a model without the pixel view ignores them
    assert torch.equal(plan_tokens(blind, "video2video", streams, k=2).value,
                       plan_tokens(blind, "video2video", dict(streams, keys=None), k=2).value)
    with pytest.raises(ValueError, match="keyframes"):
        build(cfg, vision=vision, vision_gen=[False, True, True], keys=torch.cat([keys, keys[:1]]))
    # with the pixel input awake, given frames' pixels reach the loss (and the pixel input its gradient)
    model = tiny_model(cfg)
    with torch.no_grad():
        model.pixel_in[2].weight.normal_(0, 0.1)
    torch.manual_seed(0)
    loss, _ = world_model_loss(model.train(), collate([tok]), schedule_for(cfg))
    loss.backward()
    assert model.pixel_in[0].weight.grad.abs().sum() > 0


def test_a_prompt_carries_the_keyframes_of_its_video(tiny_pipeline):
    from dataclasses import replace

    from kinema.model.sequence import pixel_patches

    r = Reasoner(tiny_pipeline)
    r.config = replace(r.config, pixel_cell=4)
    msgs = messages(frames=41)  # past the tokenizer's 33-frame window: a second window, its own key latent
    tok = r.prompt(msgs)
    clip = torch.from_numpy(msgs[0]["content"][0]["video"])
    want = pixel_patches(r.config, clip[[*range(0, 33, 4), 33, 37, 40]])
    got = tok.value[tok.kind == VISION][:, r.config.vision_dim : r.config.vision_dim + r.config.pixel_dim]
    assert torch.equal(got, want)
