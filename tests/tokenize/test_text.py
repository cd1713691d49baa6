"""The text tokenizer: specials at fixed ids, exact round-trips, framing, files, determinism, real merges."""

import json
import random

import pytest
import tokenizers

from kinema.tokenize.text import SPECIAL_TOKENS, TextTokenizer, corpus_from_datasets

# Built in, so the tests need no generated data: text in the style of the worlds' tasks, captions and QA.
SENTENCES = [
    "push the cyan block into the magenta goal",
    "push the red block into the green goal",
    "pick up the yellow cube and place it on the blue plate",
    "A gantry robot arm with a two-finger gripper works over a table with the cyan block and the magenta goal.",
    "The robot pushes the cyan block into the magenta goal.",
    "The robot picks up the yellow cube and places it on the blue plate.",
    "A red ball falls onto the table and bounces twice before it comes to rest.",
    "A row of dominoes topples one after the other.",
    "How many movable objects are in the scene?",
    "Which object starts moving first?",
    "At what second does the first collision happen?",
    "Where does the cyan block end up?",
    "Did the robot succeed?",
    "Is the cyan block inside the magenta goal at the end?",
    "Is the motion in this video physically plausible?",
    "there is no collision",
    "at x=-0.11 m, y=-0.10 m, z=0.04 m, at rest",
    "the cyan block",
    "yes",
    "no",
    "1",
    "3",
]
ODD_TEXTS = [
    "", " ", "  leading and trailing  ", "tabs\tand\nnew\r\nlines\n\n", "\x00\x01\x7f",
    "Grüße, ça va? ñ", "日本語のテキスト", "🤖🦾 emoji 👩‍👩‍👧 zwj", "e\u0301 combining", "مرحبا עברית",
    "<notspecial> <|im_start", "x" * 500, "\U0010ffff\ufeff",
]


@pytest.fixture(scope="module")
def tok():
    return TextTokenizer.train(SENTENCES * 3, vocab_size=400)


def test_specials_have_fixed_ids_and_are_never_split(tok):
    assert len(SPECIAL_TOKENS) == 10
    for i, s in enumerate(SPECIAL_TOKENS):
        assert tok.token_id(s) == i
        assert tok.encode(s) == [i]
        assert tok.tokenizer.id_to_token(i) == s
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    chat = "<|im_start|>user\nDid the robot succeed?<|im_end|>\n<|im_start|>assistant\n<video><action>"
    ids = tok.encode(chat)
    assert ids[0] == 4 and ids.count(4) == 2 and ids.count(5) == 1 and ids[-2:] == [6, 9]
    assert tok.decode(ids, skip_special=False) == chat
    assert tok.decode(ids) == "user\nDid the robot succeed?\nassistant\n"


def test_round_trip_of_any_text(tok):
    rng = random.Random(0)
    # Random code points from all planes, surrogates (not text) excluded.
    points = [c for c in (rng.randrange(0x110000) for _ in range(2000)) if not 0xD800 <= c <= 0xDFFF]
    randoms = ["".join(chr(c) for c in points[i : i + 40]) for i in range(0, len(points), 40)]
    for s in ODD_TEXTS + SENTENCES + randoms:
        assert tok.decode(tok.encode(s)) == s, repr(s)
        assert tok.decode(tok.encode(s, bos=True, eos=True)) == s, repr(s)
    with_specials = "a<eos>b <pad>" + "<|im_end|>日本"
    assert tok.decode(tok.encode(with_specials), skip_special=False) == with_specials


def test_bos_eos_and_max_length(tok):
    s = "The robot pushes the cyan block into the magenta goal."
    plain = tok.encode(s)
    assert tok.encode(s, bos=True) == [1] + plain
    assert tok.encode(s, eos=True) == plain + [2]
    assert tok.encode(s, bos=True, eos=True) == [1] + plain + [2]
    assert tok.encode(s, max_length=3) == plain[:3]
    assert tok.encode(s, bos=True, eos=True, max_length=4) == [1] + plain[:2] + [2]
    assert tok.encode(s, bos=True, eos=True, max_length=2) == [1, 2]
    assert tok.encode(s, bos=True, max_length=1) == [1]
    assert tok.encode(s, bos=True, eos=True, max_length=1000) == [1] + plain + [2]
    assert tok.encode("", bos=True, eos=True) == [1, 2]
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match="max_length"):
            tok.encode(s, max_length=bad)
    with pytest.raises(ValueError, match="max_length.*>= 2"):
        tok.encode(s, bos=True, eos=True, max_length=1)


def test_save_and_load_give_identical_encodings(tok, tmp_path):
    path = tok.save(tmp_path / "run" / "final")  # parents created
    assert path == tmp_path / "run" / "final" / TextTokenizer.FILENAME and path.is_file()
    assert tok.save(path.parent) == path  # overwriting works
    assert [p.name for p in path.parent.iterdir()] == [TextTokenizer.FILENAME]  # no temp file left
    for loaded in (TextTokenizer.load(path.parent), TextTokenizer.load(path), TextTokenizer.load(str(path))):
        assert loaded.vocab_size == tok.vocab_size
        assert loaded.tokenizer.get_vocab() == tok.tokenizer.get_vocab()
        for s in ODD_TEXTS + SENTENCES + list(SPECIAL_TOKENS):
            assert loaded.encode(s, bos=True, eos=True) == tok.encode(s, bos=True, eos=True)


def test_same_corpus_same_vocabulary():
    a = TextTokenizer.train(SENTENCES * 3, vocab_size=350)
    b = TextTokenizer.train(SENTENCES * 3, vocab_size=350)
    assert a.tokenizer.to_str() == b.tokenizer.to_str()
    other = TextTokenizer.train(["completely different words " * 3, "zebra quokka axolotl"] * 3, vocab_size=350)
    assert other.tokenizer.get_vocab() != a.tokenizer.get_vocab()


def test_bpe_merges_corpus_words(tok):
    assert len(SPECIAL_TOKENS) + 256 < tok.vocab_size <= 400
    prompt = "Did the robot push the cyan block into the magenta goal? Where does the cyan block end up?"
    ids = tok.encode(prompt)
    assert len(ids) < len(prompt) / 3, (len(ids), len(prompt))
    assert all(i >= len(SPECIAL_TOKENS) for i in ids)
    for word in (" robot", " block", " goal", "the"):
        assert len(tok.encode(word)) == 1, word


def test_bad_inputs_give_clear_errors(tok, tmp_path):
    for bad in (123, b"bytes", None, ["a"]):
        with pytest.raises(ValueError, match="text: expected a str"):
            tok.encode(bad)
    with pytest.raises(ValueError, match="text: not encodable"):
        tok.encode("lone \ud800 surrogate")
    for bad in ([tok.vocab_size], [-1], [1.5], [True]):
        with pytest.raises(ValueError, match=r"ids: expected ints in \[0, "):
            tok.decode(bad)
    with pytest.raises(ValueError, match="ids: expected a sequence"):
        tok.decode("abc")
    with pytest.raises(ValueError, match="special: expected one of"):
        tok.token_id("<mask>")
    with pytest.raises(ValueError, match="single string"):
        TextTokenizer.train("push the block")
    with pytest.raises(ValueError, match="only str items, got int"):
        TextTokenizer.train(["ok", 3])
    with pytest.raises(ValueError, match="empty corpus"):
        TextTokenizer.train([])
    with pytest.raises(ValueError, match="vocab_size"):
        TextTokenizer.train(SENTENCES, vocab_size=100)
    with pytest.raises(ValueError, match="min_frequency"):
        TextTokenizer.train(SENTENCES, min_frequency=0)
    with pytest.raises(ValueError, match="expected a tokenizers.Tokenizer"):
        TextTokenizer("not a tokenizer")
    with pytest.raises(ValueError, match=r"expected special token '<pad>' at id 0 .*found absent"):
        TextTokenizer(tokenizers.Tokenizer(tokenizers.models.BPE()))
    plain = tokenizers.Tokenizer(tokenizers.models.BPE())
    plain.add_tokens(list(SPECIAL_TOKENS))  # right ids, but decode would not skip them
    with pytest.raises(ValueError, match="not marked special"):
        TextTokenizer(plain)

    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere" / "x.json")):
        TextTokenizer.load(tmp_path / "nowhere" / "x.json")
    with pytest.raises(FileNotFoundError, match=TextTokenizer.FILENAME):
        TextTokenizer.load(tmp_path)  # a folder without tokenizer.json
    not_tok = tmp_path / "config.json"
    not_tok.write_text(json.dumps({"kind": "video_tokenizer"}))
    with pytest.raises(ValueError, match=f"{not_tok}: not a tokenizers JSON"):
        TextTokenizer.load(not_tok)
    # A valid tokenizer file with the specials in the wrong order.
    wrong = tokenizers.Tokenizer(tokenizers.models.BPE())
    wrong.add_special_tokens(list(reversed(SPECIAL_TOKENS)))
    wrong.save(str(tmp_path / "wrong.json"))
    with pytest.raises(ValueError, match=f"{tmp_path / 'wrong.json'}: tokenizer: .*'<pad>' at id 0 .*found id 9"):
        TextTokenizer.load(tmp_path / "wrong.json")

    with pytest.raises(ValueError, match="roots: expected a path or a non-empty list"):
        corpus_from_datasets([])
    with pytest.raises(FileNotFoundError):
        corpus_from_datasets(tmp_path / "no_data")


def test_corpus_from_generated_dataset(tmp_path):
    from kinema.data.reader import EpisodeStore
    from kinema.worlds.generate import generate

    root = generate("push", 2, 0, tmp_path / "data" / "push", frames=17, progress=False)
    texts = corpus_from_datasets(tmp_path / "data")
    meta = EpisodeStore(root).meta
    expected = {t for r in meta for t in r["tasks"]} | {json.loads(r["kinema/caption"]) for r in meta}
    expected |= {q[k] for r in meta for q in json.loads(r["kinema/qa"]) for k in ("question", "answer")}
    assert set(texts) == expected and len(texts) == len(set(texts))  # everything, once
    assert texts[0] == meta[0]["tasks"][0]  # first-seen order
    assert corpus_from_datasets([str(root), root]) == texts  # a dataset root, twice: same list
    tok = TextTokenizer.train(texts, vocab_size=400, min_frequency=1)
    caption = json.loads(meta[0]["kinema/caption"])
    assert tok.decode(tok.encode(caption)) == caption
    assert len(tok.encode(caption)) < len(caption) / 3
