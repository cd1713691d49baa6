"""The text tokenizer of the world model: a byte-level BPE trained on the worlds' own text.

The reasoner path of the Mixture-of-Transformers reads prompts (tasks, captions,
questions) now and will generate answers later in a chat format, so the
vocabulary is learned from exactly that text (`corpus_from_datasets`) and saved
as `tokenizer.json` next to each model checkpoint: a model is only meaningful
with the tokenizer it was trained with.

Byte-level means any str round-trips: `decode(encode(s)) == s`. Except: a special
token's string in the text (`"<|im_start|>user\\n..."`, as a chat template writes
it) becomes its one id, which `decode` drops unless `skip_special=False`.

SPECIAL_TOKENS hold ids 0..9 in this order in every vocabulary, so the model
code can rely on fixed ids (pad 0, bos 1, eos 2, ...) without reading the file.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>", "<|im_start|>", "<|im_end|>",
                  "<video>", "<image>", "<audio>", "<action>")  # ids 0..9, in this order, always
BYTE_ALPHABET = 256  # byte-level BPE starts from one token per byte


class TextTokenizer:
    """A `tokenizers.Tokenizer` whose vocabulary starts with SPECIAL_TOKENS at ids 0..N-1."""

    FILENAME = "tokenizer.json"

    def __init__(self, tokenizer: tokenizers.Tokenizer):
        if not isinstance(tokenizer, tokenizers.Tokenizer):
            raise ValueError(f"tokenizer: expected a tokenizers.Tokenizer, got {type(tokenizer).__name__}")
        added = tokenizer.get_added_tokens_decoder()
        for i, s in enumerate(SPECIAL_TOKENS):
            # Special too, not just present: `decode(skip_special=True)` only drops tokens marked special.
            found = tokenizer.token_to_id(s)
            if found != i or i not in added or not added[i].special:
                how = "absent" if found is None else f"id {found}" + ("" if found != i else ", not marked special")
                raise ValueError(f"tokenizer: expected special token {s!r} at id {i} (SPECIAL_TOKENS hold "
                                 f"ids 0..{len(SPECIAL_TOKENS) - 1} in order), found {how}")
        self.tokenizer = tokenizer

    # ------------------------------------------------------------------ training

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 2048, min_frequency: int = 2) -> TextTokenizer:
        """Learn a byte-level BPE of at most `vocab_size` tokens (specials and the 256 bytes included).

        Deterministic: the same texts give the same tokenizer.json byte for byte
        (HF's BPE trainer breaks count ties by token id, never by hash order)."""
        if isinstance(texts, (str, bytes)):
            raise ValueError("texts: expected an iterable of str, got a single string")
        texts = list(texts)
        bad = next((t for t in texts if not isinstance(t, str)), None)
        if bad is not None:
            raise ValueError(f"texts: expected only str items, got {type(bad).__name__} {bad!r:.60}")
        if not any(texts):
            raise ValueError("texts: empty corpus, nothing to learn merges from")
        smallest = len(SPECIAL_TOKENS) + BYTE_ALPHABET
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= smallest:
            raise ValueError(f"vocab_size: expected an int > {smallest} (specials + bytes), got {vocab_size!r}")
        if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 1:
            raise ValueError(f"min_frequency: expected an int >= 1, got {min_frequency!r}")
        # With all 256 bytes in the alphabet nothing is unknown; <unk> is only a safety net.
        tok = tokenizers.Tokenizer(models.BPE(unk_token="<unk>"))
        # add_prefix_space=False: a space is never invented, so decoding is exact.
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),  # first, so they take ids 0..N-1
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte, seen or not
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def token_id(self, special: str) -> int:
        if special not in SPECIAL_TOKENS:
            raise ValueError(f"special: expected one of {SPECIAL_TOKENS}, got {special!r}")
        return SPECIAL_TOKENS.index(special)  # __init__ checked the tokenizer agrees

    pad_id = property(lambda self: self.token_id("<pad>"))
    bos_id = property(lambda self: self.token_id("<bos>"))
    eos_id = property(lambda self: self.token_id("<eos>"))
    unk_id = property(lambda self: self.token_id("<unk>"))

    # ------------------------------------------------------------------ encode / decode

    def encode(self, text: str, *, bos: bool = False, eos: bool = False, max_length: int | None = None) -> list[int]:
        """Token ids of `text`, with <bos> / <eos> around it when asked; at most
        `max_length` ids, cutting the text but keeping <bos> and <eos>."""
        if not isinstance(text, str):
            raise ValueError(f"text: expected a str, got {type(text).__name__}")
        frame = int(bos) + int(eos)
        least = max(1, frame)  # room for the bos / eos that must be kept
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length < least):
            raise ValueError(f"max_length: expected None or an int >= {least}, got {max_length!r}")
        try:
            body = self.tokenizer.encode(text, add_special_tokens=False).ids
        except TypeError:  # a lone surrogate ("\ud800") has no UTF-8 bytes
            raise ValueError(f"text: not encodable as UTF-8 (lone surrogate?): {text!r:.60}") from None
        if max_length is not None:
            body = body[: max_length - frame]
        return [self.bos_id] * bos + body + [self.eos_id] * eos

    def decode(self, ids, *, skip_special: bool = True) -> str:
        """The text of `ids` (a sequence of ints, a 1-D tensor or array); special tokens dropped unless asked."""
        if hasattr(ids, "tolist"):  # torch / numpy
            ids = ids.tolist()
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise ValueError(f"ids: expected a sequence of ints, got {type(ids).__name__}")
        ids, n = list(ids), self.vocab_size
        # HF silently skips unknown ids; a bad id is a bug upstream, so say so.
        bad = next((i for i in ids if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n), None)
        if bad is not None:
            raise ValueError(f"ids: expected ints in [0, {n}), got {bad!r}")
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special)

    # ------------------------------------------------------------------ files

    def save(self, directory) -> Path:
        """Write `directory/tokenizer.json` atomically: a kill leaves the old file or the new one, never half."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / self.FILENAME
        tmp = directory / f".tmp-{secrets.token_hex(4)}-{self.FILENAME}"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(self.tokenizer.to_str(pretty=True))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        fd = os.open(directory, os.O_RDONLY)  # make the rename itself durable
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return path

    @classmethod
    def load(cls, directory_or_file) -> TextTokenizer:
        """A tokenizer saved by `save`, from its folder or its file."""
        path = Path(directory_or_file)
        if path.is_dir():
            path = path / cls.FILENAME
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such tokenizer file")
        try:
            tok = tokenizers.Tokenizer.from_file(str(path))
        except Exception as e:  # HF raises a bare Exception for anything it cannot parse
            raise ValueError(f"{path}: not a tokenizers JSON file ({e})") from None
        try:
            return cls(tok)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None


def corpus_from_datasets(roots) -> list[str]:
    """Every task, caption, QA question and answer of every episode of every dataset
    under `roots` (a path or a list of paths): deduplicated, in first-seen order
    (roots as given, datasets sorted, episodes in order), so the same data give the same list."""
    # Imported here: the reader pulls in torch and pyarrow, which tokenizing alone never needs.
    from kinema.data.reader import EpisodeStore
    from kinema.tokenize.data import find_datasets

    if isinstance(roots, (str, os.PathLike)):
        roots = [roots]
    roots = list(roots)
    if not roots:
        raise ValueError("roots: expected a path or a non-empty list of paths, got an empty list")
    seen: dict[str, None] = {}
    for root in roots:
        for path in find_datasets(root):
            for row in EpisodeStore(path).meta:
                texts = list(row.get("tasks") or [])
                if row.get("kinema/caption"):  # absent in LeRobot datasets not made by kinema
                    texts.append(json.loads(row["kinema/caption"]))
                for qa in json.loads(row.get("kinema/qa") or "[]"):
                    texts += [qa["question"], qa["answer"]]
                seen.update((t, None) for t in texts if isinstance(t, str) and t.strip())
    return list(seen)
