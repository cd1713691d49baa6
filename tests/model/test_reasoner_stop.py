"""Stop strings (SamplingParams.stop, `kinema reason --stop`): the answer ends before the first one, streamed or not."""

import pytest
import torch

from kinema.model.decoding import SamplingParams
from kinema.model.reasoner import Reasoner
from tests.model.helpers import random_frames, tiny_config, tiny_model


@pytest.fixture(scope="module")
def readable(tiny_pipeline):
    """A tiny reasoner whose text head can only win with tokens that decode to whole characters: a random model's
    greedy text is otherwise mostly bytes of unfinished characters, where a stop string has nothing to match."""
    from kinema.model.pipeline import Pipeline

    p = tiny_pipeline
    r = Reasoner(Pipeline(tiny_model(tiny_config()), p.text, p.video_tokenizer, p.audio_tokenizer, device="cpu",
                          dtype="fp32"))
    pieces = [p.text.decode([i]) for i in range(p.text.vocab_size)]
    unreadable = torch.tensor([not s or "\ufffd" in s for s in pieces])  # specials decode to "": no stop token either
    with torch.no_grad():
        w = torch.randn(r.model.text_out.weight.shape, generator=torch.Generator().manual_seed(7))
        w[: len(pieces)][unreadable] = 0  # logit 0: below the best of ~160 random readable logits
        r.model.text_out.weight.copy_(w)
    return r


def messages(question="push the red block"):
    return [{"role": "user", "content": [{"type": "video", "video": random_frames(9), "fps": 16},
                                         {"type": "text", "text": question}]}]


GREEDY = SamplingParams(max_new_tokens=24)


def greedy(r):
    """-> (the greedy answer without stop strings, the character offset where each of its tokens starts)."""
    ids = list(r.generate_ids(r.prompt(messages()), GREEDY))
    pieces = [r.text.decode([i]) for i in ids]
    assert "".join(pieces) == r.answer(messages(), GREEDY)  # whole characters: tokens join to the text
    starts = [sum(map(len, pieces[:k])) for k in range(len(pieces))]
    return "".join(pieces), starts


def first_fresh(text: str, positions, n: int) -> str:
    """The first `n`-character substring starting at one of `positions` that occurs there first."""
    stop = next((text[a : a + n] for a in positions if a > 0 and text.find(text[a : a + n]) == a), None)
    assert stop, f"no fresh {n}-character string at {list(positions)} of {text!r}"
    return stop


def test_a_stop_string_in_the_greedy_answer_cuts_it_there_streamed_or_not(readable, monkeypatch):
    r = readable
    full, starts = greedy(r)
    assert len(starts) == GREEDY.max_new_tokens and len(set(full)) > 3
    mid_token = [a for a in range(len(full)) if a not in starts]  # a stop string may start inside a token
    for stop in (first_fresh(full, starts[2:], 3), first_fresh(full, mid_token, 2)):
        want = full[: full.find(stop)]
        params = SamplingParams(max_new_tokens=GREEDY.max_new_tokens, stop=[stop, "never said"])
        assert r.answer(messages(), params) == want
        pieces = list(r.stream(messages(), params))
        assert "".join(pieces) == want
        # and no more tokens are drawn once the text holds it
        drawn, generate = [], r.generate_ids
        monkeypatch.setattr(r, "generate_ids", lambda *a, **k: (drawn.append(i) or i for i in generate(*a, **k)))
        r.answer(messages(), params)
        monkeypatch.undo()
        text = lambda ids: r.text.decode(ids)  # noqa: E731
        assert stop in text(drawn) and stop not in text(drawn[:-1]) and len(drawn) < GREEDY.max_new_tokens
    # the earliest of several wins, whatever their order; one never said changes nothing
    a = first_fresh(full, starts[2:], 2)
    b = first_fresh(full, [x for x in starts if x > full.find(a)], 2)  # one that comes later
    assert r.answer(messages(), SamplingParams(max_new_tokens=24, stop=[b, a])) == full[: full.find(a)]
    assert r.answer(messages(), SamplingParams(max_new_tokens=24, stop=["never said"])) == full


@pytest.fixture(scope="module")
def plain(tiny_pipeline):
    return Reasoner(tiny_pipeline)


def test_without_stop_strings_the_answer_is_unchanged(readable, plain):
    assert SamplingParams().stop == ()
    for r in (readable, plain):  # readable text, and a random model's unfinished bytes
        ids = list(r.generate_ids(r.prompt(messages()), GREEDY))
        assert r.answer(messages(), GREEDY) == r.text.decode(ids) == "".join(r.stream(messages(), GREEDY))


def test_streaming_holds_back_only_what_may_begin_a_stop_string(plain, monkeypatch):
    said = "the red block, café, falls"
    monkeypatch.setattr(plain, "generate_ids", lambda *a, **k: iter(plain.text.encode(said)))
    for stop, want in ((["block, c"], "the red "), (["falls", "red b"], "the "), (["café"], "the red block, "),
                       (["falls!"], said), (["é,"], "the red block, caf"), (["s"], said[:-1])):
        params = SamplingParams(stop=stop)
        pieces = list(plain.stream(messages(), params))
        # pieces are never taken back: joined they are the cut answer, so none went past the cut
        assert "".join(pieces) == plain.answer(messages(), params) == want, stop
        assert all("\ufffd" not in p for p in pieces)
        if stop == ["falls!"]:  # held back only at the end ("f", "fa", ...), streamed piece by piece before
            assert len([p for p in pieces if p]) > 3


def test_reason_command_stops_at_each_stop_string(readable, saved, tmp_path, capsys):
    from kinema.cli import main
    from kinema.data.video_io import encode_video
    from kinema.model.config import KIND
    from kinema.train.checkpoint import save_pretrained

    model = saved["root"] / "world-model-readable"  # beside the tokenizers its config names
    save_pretrained(model, readable.model.state_dict(), {"kind": KIND, "model": readable.config.to_dict()})
    readable.text.save(model)
    video = encode_video(tmp_path / "clip.mp4", random_frames(9), 16.0)
    run = ["reason", "--model", str(model), "--video", str(video), "--prompt", "push the red block",
           "--max-new-tokens", "24", "--device", "cpu"]
    main(run + ["--no-stream"])
    full = capsys.readouterr().out[:-1]  # print's newline
    loaded = Reasoner.from_pretrained(model, device="cpu")
    msgs = [{"role": "user", "content": [{"type": "video", "video": str(video)},
                                         {"type": "text", "text": "push the red block"}]}]
    assert full == loaded.answer(msgs, SamplingParams(max_new_tokens=24)) and len(set(full)) > 3
    a, b = full[len(full) // 2 : len(full) // 2 + 2], full[2:4]
    want = full[: min(full.find(a), full.find(b))]
    main(run + [f"--stop={a}", f"--stop={b}"])  # "=": a stop string may begin with "-"
    streamed = capsys.readouterr().out
    main(run + [f"--stop={a}", f"--stop={b}", "--no-stream"])
    assert capsys.readouterr().out == streamed == want + "\n"
