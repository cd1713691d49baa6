"""Best-of-N generation with the reasoner as critic (kinema.model.critic)."""

import numpy as np
import pytest

from kinema.model.critic import CAPTION_MODES, MAX_BEST_OF, SEED_STRIDE, best_of, check, recolourings, score
from kinema.model.reasoner import Reasoner, ReasonerJudge
from kinema.worlds.scene import CHROMATIC

RUN = dict(num_frames=5, num_steps=2, guidance=1.0)


class _Scores:
    """A judge whose log P of the first text for each successive candidate is given (every other text: `rest`)."""

    def __init__(self, scores, rest=-3.0):
        self.scores, self.rest, self.seen = list(scores), rest, []

    def caption(self, frames, fps, texts):
        self.seen.append((frames.shape, fps, texts))
        return [self.scores[len(self.seen) - 1]] + [self.rest] * (len(texts) - 1)


def test_the_highest_scored_draw_is_kept_and_draw_k_has_its_seed(tiny_pipeline):
    judge = _Scores([-5.0, -1.0, -3.0])
    outs, scores, kept = best_of(tiny_pipeline, "text2video", 3, prompt="a box falls", seed=7, judge=judge, **RUN)
    assert scores == [-5.0, -1.0, -3.0] and kept == 1  # no palette colour named: the raw log-probability
    assert [s[2] for s in judge.seen] == [["a box falls"]] * 3 and all(s[1] == 16.0 for s in judge.seen)
    plain = tiny_pipeline.run("text2video", prompt="a box falls", seed=7, **RUN)["frames"]
    np.testing.assert_array_equal(outs[0]["frames"], plain)  # candidate 0 is exactly the plain request's draw
    again = tiny_pipeline.run("text2video", prompt="a box falls", seed=7 + 2 * SEED_STRIDE, **RUN)["frames"]
    np.testing.assert_array_equal(outs[2]["frames"], again)
    assert not np.array_equal(outs[0]["frames"], outs[1]["frames"])  # the draws differ


def test_one_draw_asks_no_critic(tiny_pipeline):
    judge = _Scores([])
    outs, scores, kept = best_of(tiny_pipeline, "text2video", 1, prompt="x", judge=judge, **RUN)
    assert len(outs) == 1 and kept == 0 and not judge.seen


def test_each_named_colour_is_changed_alone_to_each_colour_not_named():
    groups = recolourings("The red box hits the blue ball, reddish; the red box stops.")
    others = [c for c in CHROMATIC if c not in ("red", "blue")]
    assert [len(g) for g in groups] == [len(others)] * 2  # red, then blue: palette order
    assert groups[0][0] == f"The {others[0]} box hits the blue ball, reddish; the {others[0]} box stops."
    assert groups[1][-1] == f"The red box hits the {others[-1]} ball, reddish; the red box stops."
    assert recolourings("a box falls") == [] and recolourings(", ".join(CHROMATIC)) == []
    upper = recolourings("Red ball, red box.")  # a user's capitals are found and kept
    assert len(upper) == 1 and len(upper[0]) == len(CHROMATIC) - 1 and upper[0][0] == "Green ball, green box."


def test_the_score_is_the_prompt_against_each_colour_changed():
    judge = _Scores([-2.0], rest=-3.0)
    got = score(judge, np.zeros((5, 8, 8, 3), np.uint8), 16.0, "a red box and a green ball")
    n = len(CHROMATIC) - 2  # each named colour's alternatives
    assert len(judge.seen[0][2]) == 1 + 2 * n and judge.seen[0][2][0] == "a red box and a green ball"
    assert got == pytest.approx(2 * (-2.0 - np.log(np.exp(-2.0) + n * np.exp(-3.0))))


def test_the_reasoner_scores_captions_as_answers_to_the_caption_question(tiny_pipeline):
    judge = ReasonerJudge(Reasoner(tiny_pipeline))
    frames = tiny_pipeline.run("text2video", prompt="a red box", seed=0, **RUN)["frames"]
    a, b = judge.caption(frames, 16.0, ["a red box", "a red box falls over"])
    assert np.isfinite(a) and a < 0 and a != b
    assert judge.caption(frames, 16.0, ["a red box falls over"])[0] == pytest.approx(b, abs=1e-4)  # side by side
    assert judge.caption(frames[:1], 16.0, ["a red box"])[0] != a  # one frame is an image: another clip


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
