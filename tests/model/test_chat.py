"""The chat format: validation with clear errors, ChatML rendering, scored assistant turns."""

import numpy as np
import pytest

from kinema.model.chat import render, validate

VIDEO = np.zeros((5, 32, 32, 3), np.uint8)


def user(*parts):
    return {"role": "user", "content": list(parts)}


def test_render_places_video_after_its_marker_and_scores_assistant_turns(text_tokenizer):
    t = text_tokenizer
    msgs = [{"role": "system", "content": "be brief"}, user({"type": "video", "video": VIDEO}, {"type": "text", "text": "push"}),
            {"role": "assistant", "content": "the red block"}]
    segs, scored = render(msgs, t, add_generation_prompt=False)
    kinds = [s[0] for s in segs]
    assert kinds == ["text", "media", "text", "text"]
    assert t.decode(segs[0][1], skip_special=False).endswith("<|im_start|>user\n<video>")
    assert segs[1][1]["video"] is VIDEO
    assert scored == {3}
    assert t.decode(segs[3][1], skip_special=False) == "the red block<|im_end|>"
    # generation: the prompt ends by opening the assistant's turn, nothing is scored
    segs, scored = render(msgs[:2], t)
    assert t.decode(segs[-1][1], skip_special=False).endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert scored == set()


@pytest.mark.parametrize("msgs, match", [
    ([], "non-empty list"),
    ("hello", "non-empty list"),
    ([{"role": "robot", "content": "x"}], "role must be one of"),
    ([{"role": "user"}], "exactly 'role' and 'content'"),
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}], "system message may only come first"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "alternate"),
    ([{"role": "assistant", "content": "a"}], "alternate"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "last message must be the user"),
    ([{"role": "user", "content": []}], "non-empty list of parts"),
    ([user({"type": "audio", "audio": "x"})], "unknown part type"),
    ([user({"type": "text"})], "needs a 'text' string"),
    ([user({"type": "video", "video": VIDEO.astype(np.float32)})], "uint8 array"),
    ([user({"type": "image", "image": VIDEO})], r"\[H, W, 3\]"),
    ([user({"type": "video", "video": VIDEO, "fps": -1})], "positive number"),
    ([user({"type": "text", "text": "a"}), {"role": "assistant", "content": [{"type": "video", "video": VIDEO}]},
      user({"type": "text", "text": "b"})], "only user messages may hold a video"),
])
def test_malformed_messages_get_a_clear_error(msgs, match):
    with pytest.raises(ValueError, match=match):
        validate(msgs)


def test_string_content_becomes_one_text_part():
    out = validate([{"role": "user", "content": "hi"}])
    assert out == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
