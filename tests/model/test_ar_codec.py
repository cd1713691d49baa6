import numpy as np
import pytest
import torch

from kinema.model.ar_codec import HEADER, compress, decompress, ideal_bits
from kinema.model.ar_config import get_preset
from kinema.model.autoregressive import ARWorldModel, collate, sequence


def fit(m: ARWorldModel, indices: torch.Tensor, steps: int) -> None:
    """A few AdamW steps on one clip's codes [t, h, w], so the model predicts it; leaves m in eval mode."""
    tok = collate([sequence(m.config, indices)])
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for _ in range(steps):
        h, _ = m(tok)
        loss, _ = m.lm_objective(h, tok.target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ARWorldModel(get_preset("tiny")).eval()


@pytest.mark.parametrize("shape", [(1, 2, 3), (3, 4, 4)])
def test_compressed_codes_decode_to_exactly_the_codes(model, shape):
    x = torch.randint(0, 64000, shape, generator=torch.Generator().manual_seed(1))
    data = compress(model, x)
    assert torch.equal(decompress(model, data), x)
    # a 24-bit coder floors every probability at 2^-24: no code costs more than about 24 bits, whatever the model
    assert 8 * len(data) <= 8 * HEADER.size + 24 * x.numel() + 64


def test_a_clip_the_model_predicts_costs_what_it_promises_and_far_less_than_fixed_length():
    """Trained on one clip, the model codes it in a fraction of log2(64,000) = 15.97 bits a code, and the range
    coder's length is the promised (teacher-forced) code length plus the header and at most two 32-bit words."""
    torch.manual_seed(0)
    m = ARWorldModel(get_preset("tiny"))
    x = torch.randint(0, 64000, (2, 4, 4), generator=torch.Generator().manual_seed(6))
    fit(m, x, 60)
    promised = float(ideal_bits(m, x[None])[0])
    data = compress(m, x)
    assert torch.equal(decompress(m, data), x)
    coded = 8 * (len(data) - HEADER.size)
    assert promised - 1 <= coded <= promised + 64
    assert promised < 0.6 * np.log2(64000) * x.numel()
    other = torch.randint(0, 64000, (2, 4, 4), generator=torch.Generator().manual_seed(7))
    assert float(ideal_bits(m, other[None])[0]) > 2 * promised  # a clip it has not learned costs more


def test_bad_streams_and_codes_are_refused(model):
    with pytest.raises(ValueError, match="header"):
        decompress(model, b"\x00" * (HEADER.size - 1))
    with pytest.raises(ValueError, match="32-bit words"):
        decompress(model, b"\x00" * (HEADER.size + 3))
    with pytest.raises(ValueError, match="indices"):
        compress(model, torch.full((1, 2, 2), 64000))


def test_tokenizer_eval_reports_the_entropy_coded_rate():
    """kinema tokenizer eval --entropy-model: every clip's promised rate, the checked clips coded and decoded
    exactly; an entropy model over other codes, or a continuous tokenizer, is refused."""
    from kinema.tokenize.evaluate import evaluate_video
    from kinema.tokenize.video import VideoTokenizer
    from kinema.tokenize.video import get_preset as tokenizer_preset

    torch.manual_seed(0)
    dv = VideoTokenizer(tokenizer_preset("dv4x8x8-tiny")).eval()
    ar = ARWorldModel(get_preset("tiny")).eval()
    rng = np.random.default_rng(0)
    clips = {"a": [rng.integers(0, 255, (5, 16, 16, 3), dtype=np.uint8) for _ in range(3)],
             "b": [rng.integers(0, 255, (5, 16, 16, 3), dtype=np.uint8)]}
    out = evaluate_video(dv, clips, progress=False, entropy_model=ar, entropy_check=2)
    assert out["entropy_coded"]["clips"] == 3  # two of a, the one of b
    per = out["per_scenario"]
    assert all(0 < per[s]["bpp_entropy"] for s in "ab")
    assert out["mean"]["bpp_entropy"] == pytest.approx((per["a"]["bpp_entropy"] + per["b"]["bpp_entropy"]) / 2)
    assert out["entropy_coded"]["coded_bits"] <= out["entropy_coded"]["promised_bits"] + 3 * (8 * HEADER.size + 64)
    with pytest.raises(ValueError, match="FSQ levels"):
        evaluate_video(dv, clips, progress=False, entropy_model=ARWorldModel(get_preset("tiny", fsq_levels=(8, 5, 5))))
    cv = VideoTokenizer(tokenizer_preset("cv4x8x8-tiny")).eval()
    with pytest.raises(ValueError, match="discrete"):
        evaluate_video(cv, clips, progress=False, entropy_model=ar)


def test_the_surprise_judge_scores_a_clip_it_predicts_above_one_that_jumps():
    """ARSurpriseJudge: trained on the codes of a still scene, the AR model finds the scene still more plausible
    than the same scene whose picture jumps halfway (a teleport), and it is what kinema eval plausibility loads."""
    from kinema.model.ar_predictor import ARSurpriseJudge
    from kinema.tokenize.data import to_model
    from kinema.tokenize.load import load_tokenizer

    torch.manual_seed(0)
    dv = load_tokenizer("checkpoints/tokenizer-dv4x8x8")  # a random tokenizer's codes hardly depend on the picture
    rng = np.random.default_rng(0)
    a, b = (np.repeat(rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8), 17, 0) for _ in range(2))
    jump = np.concatenate([a[:9], b[9:]])
    m = ARWorldModel(get_preset("tiny"))
    with torch.no_grad():
        idx = dv.encode(to_model(a)[None])[0]
    fit(m, idx[0], 40)
    judge = ARSurpriseJudge(m, dv)
    assert judge.surprise(a).shape == (4,)  # 17 frames: latent frames 1-4
    assert judge.score(a) > judge.score(jump)
    with pytest.raises(ValueError, match="uint8"):
        judge.score(a.astype(np.float32))


def test_an_ar_checkpoint_loads_as_a_judge():
    from kinema.eval.judge import get_judge
    from kinema.model.ar_predictor import ARSurpriseJudge

    judge = get_judge("checkpoints/ar-world-model-small", device="cpu")
    assert isinstance(judge, ARSurpriseJudge) and judge.name == "ar_surprise"
