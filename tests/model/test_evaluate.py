"""Text-to-video's colour check: which palette colours a clip shows, and the evaluation end to end."""

import json

import numpy as np
import pytest

from kinema.model.evaluate import CHROMATIC, MIN_PIXELS, _score, colours_present, text_to_video
from kinema.worlds.scene import PALETTE


def _clip(colour: str, frames_with: int, T: int = 4, side: int = 4) -> np.ndarray:
    """A grey uint8 clip [T, 32, 32, 3] with a side x side patch of a palette colour in the first frames_with frames."""
    clip = np.full((T, 32, 32, 3), 128, np.uint8)
    clip[:frames_with, 10:10 + side, 10:10 + side] = (np.array(PALETTE[colour]) * 255).astype(np.uint8)
    return clip


@pytest.mark.parametrize("colour", CHROMATIC)
def test_a_patch_of_one_colour_is_that_colour_only(colour):
    present = colours_present(_clip(colour, frames_with=4))
    assert present[colour] and sum(present.values()) == 1


def test_grey_tiny_and_brief_patches_are_not_colours():
    assert not any(colours_present(_clip("red", frames_with=0)).values())
    assert not any(colours_present(_clip("red", frames_with=1)).values())  # in under half of the frames
    assert MIN_PIXELS > 4 and not any(colours_present(_clip("red", frames_with=4, side=2)).values())


def test_score_is_recall_of_named_and_rate_of_unnamed():
    present = {c: c in ("red", "blue", "green") for c in CHROMATIC}
    recall, false_pos = _score(present, {"red", "yellow"})
    assert recall == 0.5 and false_pos == pytest.approx(2 / (len(CHROMATIC) - 2))


def test_text_to_video_scores_the_simulator_as_a_perfect_generator(tiny_pipeline, tmp_path):
    r = text_to_video(tiny_pipeline, tmp_path, n=2, scenarios=("free_fall",), num_steps=2, progress=False)
    assert len(r["rows"]) == 2 and all(row["named"] for row in r["rows"])
    assert r["simulator"] == (1.0, 0.0)  # the simulator's frames show every named colour and no other
    assert all(0 <= v <= 1 for v in r["model"]) and all(np.isfinite(r["model_se"]))
    json.dumps(r)  # the summary is written as JSON
    assert (tmp_path / "text2video.png").stat().st_size > 0
