"""Text-to-video's colour and object checks: which palette colours and objects a clip shows, and the evaluation
end to end."""

import json

import numpy as np
import pytest

from kinema.model.evaluate import (CHROMATIC, MIN_PIXELS, SIZE_RANGE, _score, colour_masks, colours_present,
                                   critic_line, objects_present, reference_sizes, region_areas, table_rows,
                                   text_to_video)
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


def test_an_object_is_one_region_of_its_colour_at_about_the_expected_size():
    whole = _clip("red", frames_with=4, side=6)  # 36 pixels in one region
    specks = np.full_like(whole, 128)
    specks[:, 2:30:4, 2:30:4] = (np.array(PALETTE["red"]) * 255).astype(np.uint8)  # 49 single pixels
    assert colours_present(specks)["red"] and region_areas(specks)[0, CHROMATIC.index("red")] == 1
    assert region_areas(whole)[:, CHROMATIC.index("red")].tolist() == [36] * 4
    assert objects_present(whole, {"red": 36.0}) == {"red": True}
    assert objects_present(specks, {"red": 36.0}) == {"red": False}  # the colour is there, no object
    assert objects_present(whole, {"red": 36 * SIZE_RANGE * 1.1}) == {"red": False}  # far smaller than expected
    assert objects_present(whole, {"red": 36 / SIZE_RANGE / 1.1}) == {"red": False}  # far larger
    assert objects_present(_clip("red", frames_with=1, side=6), {"red": 36.0}) == {"red": False}  # too brief


def test_reference_sizes_are_the_simulators_regions_and_typical_for_unnamed():
    clip = _clip("red", frames_with=4, side=6)
    clip[:, 20:24, 20:24] = (np.array(PALETTE["blue"]) * 255).astype(np.uint8)
    sizes = reference_sizes(clip, {"red", "blue", "green"})  # green named but never drawn: left out
    assert sizes["red"] == 36 and sizes["blue"] == 16 and "green" not in sizes
    assert sizes["yellow"] == np.median([36, 16])
    assert set(sizes) == set(CHROMATIC) - {"green"}
    assert _score(objects_present(clip, sizes), {"red", "blue", "green"}) == (1.0, 0.0)


def test_colour_masks_refuse_what_is_not_uint8_rgb():
    with pytest.raises(ValueError, match="uint8"):
        colour_masks(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        colour_masks(np.zeros((8, 8, 3), np.uint8))


def test_score_is_recall_of_named_and_rate_of_unnamed():
    present = {c: c in ("red", "blue", "green") for c in CHROMATIC}
    recall, false_pos = _score(present, {"red", "yellow"})
    assert recall == 0.5 and false_pos == pytest.approx(2 / (len(CHROMATIC) - 2))


def test_text_to_video_scores_the_simulator_as_a_perfect_generator(tiny_pipeline, tmp_path):
    r = text_to_video(tiny_pipeline, tmp_path, n=2, scenarios=("free_fall",), num_steps=2, progress=False)
    assert len(r["rows"]) == 2 and all(row["named"] for row in r["rows"])
    assert r["simulator"] == (1.0, 0.0)  # the simulator's frames show every named colour and no other
    assert r["simulator_objects"][1] == 0.0 and r["simulator_objects"][0] >= 0.5
    assert all(0 <= v <= 1 for v in r["model_objects"]) and len(r["model_objects_se"]) == 2
    assert r["model_gap"][0] == pytest.approx(np.mean([row["model"][0] - row["model"][1] for row in r["rows"]]))
    assert all(0 <= v <= 1 for v in r["model"]) and all(np.isfinite(r["model_se"]))
    json.dumps(r)  # the summary is written as JSON
    assert (tmp_path / "text2video.png").stat().st_size > 0


def test_kinema_eval_text2video_writes_both_checks_and_reports_them(saved, tmp_path):
    from kinema.cli import main

    main(["eval", "text2video", "--model", str(saved["model"]), "--n", "1", "--steps", "2", "--shift", "1.5",
          "--out", str(tmp_path), "--no-progress"])
    folder = tmp_path / "text2video" / "world_model_steps2_shift1.5"  # results kept apart by sampling settings
    r = json.loads((folder / "summary.json").read_text())
    assert r["benchmark"] == "text2video" and r["n"] == len(r["rows"]) == 4 and r["settings"]["shift"] == 1.5
    assert {"model_objects", "simulator_objects_gap"} <= set(r)
    table = (folder / "table.md").read_text()
    assert "named objects present" in table and table.strip().count("\n") == 3  # header, rule, model, simulator
    assert (tmp_path / "cache").is_dir()  # the held-out episodes are shared with the other benchmarks
    assert main(["eval", "report", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "## Text-to-video" in report and "world_model_steps2_shift1.5" in report and "simulator (reference)" in report


def test_best_of_reports_the_kept_the_first_and_the_oracle_draw(tiny_pipeline, tmp_path):
    one = text_to_video(tiny_pipeline, tmp_path / "one", n=2, scenarios=("free_fall",), num_steps=2, progress=False)
    r = text_to_video(tiny_pipeline, tmp_path / "three", n=2, scenarios=("free_fall",), num_steps=2, progress=False,
                      best_of=3)
    assert r["settings"]["best_of"] == 3
    for a, b in zip(one["rows"], r["rows"]):
        assert b["first"] == a["model"] and b["first_objects"] == a["model_objects"]  # the first draw is best_of 1
        assert len(b["critic"]) == 3 and b["kept"] == int(np.argmax(b["critic"]))
        assert b["oracle_objects"][0] >= max(b["model_objects"][0], b["first_objects"][0])
    gain = np.mean([row["model_objects"][0] - row["first_objects"][0] for row in r["rows"]])
    assert r["critic_gain_objects"][0] == pytest.approx(gain)
    rows = table_rows(r)
    assert len(rows) == 4 and "kept by the critic" in rows[0][0] and "first of the 3" in rows[1][0]
    assert rows[-1][0] == "simulator (reference)" and "named objects" in critic_line(r) and critic_line(one) == ""
    json.dumps(r)


def test_first_starts_at_a_later_held_out_episode_with_its_own_seed(tiny_pipeline, tmp_path):
    both = text_to_video(tiny_pipeline, tmp_path, n=2, scenarios=("free_fall",), num_steps=2, progress=False)
    later = text_to_video(tiny_pipeline, tmp_path, n=1, first=1, scenarios=("free_fall",), num_steps=2,
                          progress=False)
    assert later["rows"][0] == both["rows"][1] and later["settings"]["first"] == 1
