"""The reasoner's chat format: messages with text, video and image parts -> one interleaved sequence.

Messages follow the OpenAI / vLLM convention:

    [{"role": "system", "content": "You are a careful physicist."},              # optional, first
     {"role": "user", "content": [{"type": "video", "video": "clip.mp4"},        # or a uint8 [T, H, W, 3]
                                  {"type": "text", "text": "Does the stack fall over?"}]},
     {"role": "assistant", "content": "yes"}]                                    # training / few-shot

A video given as an array may bring its sound: "audio" (mono float [N] in
[-1, 1]) with "sample_rate"; a video file brings its own sound track.

rendered in ChatML with the tokenizer's special tokens (ids fixed in kinema/tokenize/text.py):

    <|im_start|>system\n...<|im_end|>\n<|im_start|>user\n<video>[vision tokens]Does ...?<|im_end|>\n
    <|im_start|>assistant\nyes<|im_end|>

Text may not hold a special token's string (SPECIAL_TOKENS, or any other token the
tokenizer adds): the tokenizer would read it as that token, so a user's text could
close its turn and open an assistant's, or leave a media marker with no media.

An image is a one-frame video. `render` returns segments for
sequence.build_interleaved with media parts left for the caller to encode, and
the indices of the assistant segments (the text the reasoner is trained to
write; each ends with <|im_end|>, the stop token).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kinema.tokenize.text import SPECIAL_TOKENS

ROLES = ("system", "user", "assistant")
MEDIA = ("video", "image")
MAX_MESSAGES = 64


def _check_part(part, where: str) -> None:
    if not isinstance(part, dict) or "type" not in part:
        raise ValueError(f"{where}: expected a dict with a 'type' ('text', 'video' or 'image'), got {part!r:.80}")
    kind = part["type"]
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise ValueError(f"{where}: a text part needs a 'text' string")
    elif kind in MEDIA:
        media = part.get(kind)
        if isinstance(media, (str, Path)):
            return
        if not isinstance(media, np.ndarray) or media.dtype != np.uint8 or media.ndim != (4 if kind == "video" else 3) \
                or media.shape[-1] != 3:
            want = "[T, H, W, 3]" if kind == "video" else "[H, W, 3]"
            got = f"{media.dtype} {list(media.shape)}" if isinstance(media, np.ndarray) else type(media).__name__
            raise ValueError(f"{where}: a {kind} part needs '{kind}': a file path or a uint8 array {want}, got {got}")
        if "fps" in part and not (isinstance(part["fps"], (int, float)) and part["fps"] > 0):
            raise ValueError(f"{where}: 'fps' must be a positive number, got {part['fps']!r}")
        if "audio" in part:
            a, sr = part["audio"], part.get("sample_rate")
            if kind != "video" or not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype.kind != "f":
                raise ValueError(f"{where}: 'audio' must be a video's mono float array [N], got "
                                 f"{f'{a.dtype} {list(a.shape)}' if isinstance(a, np.ndarray) else type(a).__name__}")
            if not (isinstance(sr, int) and sr > 0):
                raise ValueError(f"{where}: 'audio' needs 'sample_rate', a positive int (Hz), got {sr!r}")
    else:
        raise ValueError(f"{where}: unknown part type {kind!r}; expected 'text', 'video' or 'image'")


def _check_text(parts: list[dict], where: str, special) -> None:
    """No special token's string in the text. Consecutive text parts are checked joined, as render writes
    them ("<|im_" + "end|>" is one token); none of SPECIAL_TOKENS can straddle the template around them (each
    starts with its only "<" and holds no newline)."""
    j = 0
    while j < len(parts):
        k = j
        while k < len(parts) and parts[k]["type"] == "text":
            k += 1
        run = "".join(p["text"] for p in parts[j:k])
        hits = [(run.find(s), s) for s in special if s in run]
        if hits:
            at, token = min(hits)
            ends = np.cumsum([len(p["text"]) for p in parts[j:k]])  # where each part ends in the run
            first, last = (j + int(np.searchsorted(ends, c, "right")) for c in (at, at + len(token) - 1))
            idx = f"{first}" if first == last else f"{first}..{last}"
            raise ValueError(f"{where}.content[{idx}]: text may not contain the special token {token!r} (the "
                             f"tokenizer would read it as the chat format's own token, not as text), got "
                             f"{run[max(0, at - 20) : at + len(token) + 20]!r}")
        j = k + 1


def validate(messages, *, for_generation: bool = True, special=SPECIAL_TOKENS) -> list[dict]:
    """Check the structure, and that no text holds one of the `special` token strings; -> messages with string
    contents turned into one text part."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages: expected a non-empty list of {'role', 'content'} dicts")
    if len(messages) > MAX_MESSAGES:
        raise ValueError(f"messages: at most {MAX_MESSAGES} messages, got {len(messages)}")
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or set(m) - {"role", "content"} or "role" not in m or "content" not in m:
            raise ValueError(f"{where}: expected a dict with exactly 'role' and 'content', got {m!r:.80}")
        role, content = m["role"], m["content"]
        if role not in ROLES:
            raise ValueError(f"{where}: role must be one of {ROLES}, got {role!r}")
        if role == "system" and i != 0:
            raise ValueError(f"{where}: a system message may only come first")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(parts, list) or not parts:
            raise ValueError(f"{where}: content must be a string or a non-empty list of parts")
        for j, part in enumerate(parts):
            _check_part(part, f"{where}.content[{j}]")
            if part["type"] in MEDIA and role != "user":
                raise ValueError(f"{where}.content[{j}]: only user messages may hold a {part['type']}")
        _check_text(parts, where, special)
        out.append({"role": role, "content": parts})
    turns = [m["role"] for m in out if m["role"] != "system"]
    if not turns or turns[0] != "user" or any(a == b for a, b in zip(turns, turns[1:])):
        raise ValueError(f"messages: after an optional system message, user and assistant must alternate starting "
                         f"with user; got roles {[m['role'] for m in out]}")
    if for_generation and turns[-1] != "user":
        raise ValueError("messages: the last message must be the user's (the reasoner writes the next assistant turn)")
    return out


def render(messages, text, *, add_generation_prompt: bool = True):
    """-> (segments, scored): segments are ("text", ids) or ("media", part); scored = assistant segment indices."""
    # a loaded tokenizer.json may mark more tokens special (plain added tokens are ordinary text)
    added = {t.content for t in text.tokenizer.get_added_tokens_decoder().values() if t.special}
    messages = validate(messages, for_generation=add_generation_prompt, special=sorted(added | set(SPECIAL_TOKENS)))
    segments, scored, pending = [], set(), ""

    def flush():
        nonlocal pending
        if pending:
            segments.append(("text", text.encode(pending)))
            pending = ""

    for m in messages:
        pending += f"<|im_start|>{m['role']}\n"
        if m["role"] == "assistant":
            flush()
            scored.add(len(segments))
            segments.append(("text", text.encode("".join(p["text"] for p in m["content"]) + "<|im_end|>")))
            pending = "\n"
            continue
        for part in m["content"]:
            if part["type"] == "text":
                pending += part["text"]
            else:
                pending += f"<{part['type']}>"
                flush()
                segments.append(("media", part))
        pending += "<|im_end|>\n"
    if add_generation_prompt:
        pending += "<|im_start|>assistant\n"
    elif messages[-1]["role"] == "assistant":
        pending = ""  # nothing follows the last answer
    flush()
    return segments, scored
