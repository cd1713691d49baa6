"""Best-of-N generation with the reasoner as critic (kinema.model.critic)."""

import numpy as np
import pytest

from kinema.model.critic import CAPTION_MODES, MAX_BEST_OF, SEED_STRIDE, best_of, check
from kinema.model.reasoner import Reasoner, ReasonerJudge

RUN = dict(num_frames=5, num_steps=2, guidance=1.0)


class _Scores:
    """A judge whose score of each successive candidate is given: tests which one is kept."""

    def __init__(self, scores):
        self.scores, self.seen = list(scores), []

    def caption(self, frames, fps, text):
        self.seen.append((frames.shape, fps, text))
        return self.scores[len(self.seen) - 1]


def test_the_highest_scored_draw_is_kept_and_draw_k_has_its_seed(tiny_pipeline):
    judge = _Scores([-5.0, -1.0, -3.0])
    outs, scores, kept = best_of(tiny_pipeline, "text2video", 3, prompt="a red box falls", seed=7, judge=judge, **RUN)
    assert scores == [-5.0, -1.0, -3.0] and kept == 1
    assert [s[2] for s in judge.seen] == ["a red box falls"] * 3 and all(s[1] == 16.0 for s in judge.seen)
    plain = tiny_pipeline.run("text2video", prompt="a red box falls", seed=7, **RUN)["frames"]
    np.testing.assert_array_equal(outs[0]["frames"], plain)  # candidate 0 is exactly the plain request's draw
    again = tiny_pipeline.run("text2video", prompt="a red box falls", seed=7 + 2 * SEED_STRIDE, **RUN)["frames"]
    np.testing.assert_array_equal(outs[2]["frames"], again)
    assert not np.array_equal(outs[0]["frames"], outs[1]["frames"])  # the draws differ


def test_one_draw_asks_no_critic(tiny_pipeline):
    judge = _Scores([])
    outs, scores, kept = best_of(tiny_pipeline, "text2video", 1, prompt="x", judge=judge, **RUN)
    assert len(outs) == 1 and kept == 0 and not judge.seen


def test_the_reasoner_scores_a_caption_as_the_answer_to_the_caption_question(tiny_pipeline):
    judge = ReasonerJudge(Reasoner(tiny_pipeline))
    frames = tiny_pipeline.run("text2video", prompt="a red box", seed=0, **RUN)["frames"]
    a, b = judge.caption(frames, 16.0, "a red box"), judge.caption(frames, 16.0, "a red box falls over")
    assert np.isfinite(a) and a < 0 and a != b
    assert judge.caption(frames[:1], 16.0, "a red box") != a  # one frame is an image: another clip


@pytest.mark.parametrize("n, mode, prompt, words", [
    (0, "text2video", "p", "an integer in [1, 16]"), (MAX_BEST_OF + 1, "text2video", "p", "an integer"),
    (2.0, "text2video", "p", "an integer"), (True, "text2video", "p", "an integer"),
    (2, "forward_dynamics", "p", "the critic reads captions"), (2, "text2video", "  ", "without a prompt")])
def test_a_best_of_the_critic_cannot_serve_is_refused_before_any_compute(n, mode, prompt, words):
    with pytest.raises(ValueError, match="best_of") as e:
        check(n, mode, prompt)
    assert words in str(e.value)


def test_every_caption_mode_may_draw_several():
    for mode in CAPTION_MODES:
        check(4, mode, "a caption")
    check(1, "policy", "")  # one draw is every mode's default
