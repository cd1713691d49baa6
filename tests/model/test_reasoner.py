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
