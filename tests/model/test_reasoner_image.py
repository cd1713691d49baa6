"""Image input to the reasoner: an image part (array or file) is a one-frame video that reaches the model."""

import pytest
import torch

from kinema.model.decoding import SamplingParams
from kinema.model.reasoner import Reasoner
from kinema.model.sequence import VISION
from kinema.worlds.preview import write_png
from tests.model.helpers import random_frames


@pytest.fixture(scope="module")
def reasoner(tiny_pipeline):
    return Reasoner(tiny_pipeline)


def ask(image, question="what is on the table?"):
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": question}]}]


def test_an_image_as_array_or_png_reaches_the_model(reasoner, tmp_path):
    a, b = random_frames(1, seed=1)[0], random_frames(1, seed=2)[0]
    tok = reasoner.prompt(ask(a))
    n = int((tok.kind == VISION).sum())
    assert n > 0  # the image's vision tokens are in the prompt ...
    one_frame = reasoner.prompt([{"role": "user", "content": [{"type": "video", "video": a[None]},
                                                              {"type": "text", "text": "what is on the table?"}]}])
    assert torch.equal(tok.value, one_frame.value)  # ... as those of a one-frame video
    # a PNG (lossless) gives the same tokens as its array
    path = write_png(tmp_path / "a.png", a)
    for given in (path, str(path)):
        assert torch.equal(reasoner.prompt(ask(given)).value, tok.value)
    # and what the model says next depends on which image it sees
    first = lambda img: reasoner._run(reasoner.prompt(ask(img)), None)[0]  # noqa: E731
    assert torch.equal(first(a), first(path))
    assert not torch.allclose(first(a), first(b))
    params = SamplingParams(max_new_tokens=4)
    assert isinstance(reasoner.answer(ask(path), params), str)
    assert "".join(reasoner.stream(ask(a), params)) == reasoner.answer(ask(path), params)


def test_reason_command_reads_an_image(saved, tmp_path, capsys):
    from kinema.cli import main

    image = write_png(tmp_path / "table.png", random_frames(1, seed=3)[0])
    run = ["reason", "--model", str(saved["model"]), "--image", str(image), "--prompt", "what is on the table?",
           "--max-new-tokens", "6", "--device", "cpu"]
    main(run)
    streamed = capsys.readouterr().out
    main(run + ["--no-stream"])
    assert capsys.readouterr().out == streamed
    loaded = Reasoner.from_pretrained(saved["model"], device="cpu")
    assert streamed == loaded.answer(ask(str(image)), SamplingParams(max_new_tokens=6)) + "\n"
    with pytest.raises(SystemExit, match="--image: .* does not exist"):
        main(["reason", "--model", str(saved["model"]), "--image", str(tmp_path / "missing.png"), "--prompt", "x"])
