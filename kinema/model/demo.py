"""`kinema demo` (make demo): the world model's main job on built-in defaults.

Simulate a held-out episode of the default manipulation world, give the model
its first 9 frames and the recorded actions, let it predict the other 24
(forward dynamics), and compare with the simulator and with copying the last
given frame: a side-by-side mp4 (simulator | model | copy-last), a contact
sheet PNG and PSNR / SSIM / object IoU printed. Then the same checkpoint's
reasoner answers the simulator's questions about the whole episode (6 s, seen
at 8 fps as in its training: reasoner.reasoner_clip), printed next to the
ground truth. The episode's first 33 frames are the forward-dynamics clip (a
rollout is the same whatever its length).
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

DEMO_WORLD, DEMO_CAMERA, CONTEXT, FRAMES = "push", "front", 9, 33
# the shipped model's regression clip (tests/model/test_shipped.py): the demo's, at fixed steps and seed
REGRESSION = dict(world=DEMO_WORLD, episode=0, camera=DEMO_CAMERA, context=CONTEXT, frames=FRAMES, num_steps=10, seed=0)


def regression_outputs(model_dir) -> dict:
    """The regression clip predicted by the model at model_dir: PSNR against the simulator, pixel statistics."""
    from kinema.eval.data import heldout_seed
    from kinema.eval.harness import request_from_episode
    from kinema.eval.metrics import psnr
    from kinema.model.pipeline import Pipeline
    from kinema.model.predictor import WorldModelPredictor
    from kinema.worlds.registry import get_world
    from kinema.worlds.rollout import rollout

    r = REGRESSION
    ep = rollout(get_world(r["world"]), heldout_seed(r["episode"]), size=64, frames=r["frames"])
    req = request_from_episode(ep, r["camera"], context=r["context"], future=r["frames"] - r["context"])
    pipeline = Pipeline.from_pretrained(model_dir, device="cpu", dtype="fp32")
    # the weights' regression: the decoder's frames as they are, before any decode-time step (kinema.model.carry)
    pred = WorldModelPredictor(pipeline, num_steps=r["num_steps"], seed=r["seed"], carry=False).predict(req)
    gt = ep.frames[r["camera"]][r["context"]:]
    return {"psnr": psnr(pred, gt).value, "mean": float(pred.mean()), "std": float(pred.std()),
            "frame_means": [float(f.mean()) for f in pred], "reasoner": reasoner_outputs(pipeline, ep)}


def reasoner_outputs(pipeline, ep) -> dict:
    """The reasoner's greedy answers to the clip's questions and the log-probability of each true answer."""
    from kinema.model.reasoner import Reasoner, episode_video

    reasoner = Reasoner(pipeline)
    out = {"questions": [], "answers": [], "truth_logprobs": []}
    for qa in ep.qa:
        if qa["type"] == "final_position":
            continue
        msgs = [{"role": "user", "content": [episode_video(ep, REGRESSION["camera"]),
                                             {"type": "text", "text": qa["question"]}]}]
        out["questions"].append(qa["question"])
        out["answers"].append(reasoner.answer(msgs))
        out["truth_logprobs"].append(reasoner.choice_logprobs(msgs, [qa["answer"]])[0])
    return out


def _label(frames: np.ndarray, text: str, scale: int = 3) -> np.ndarray:
    big = np.repeat(np.repeat(frames, scale, 1), scale, 2).copy()
    for f in big:
        cv2.putText(f, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return big


def demo(out="outputs/demo", model="checkpoints/world-model-small", *, episode: int = 0, num_steps: int | None = None,
         device: str = "auto") -> dict:
    from kinema.data.video_io import encode_video_with_audio
    from kinema.eval.baselines import CopyLastFrame
    from kinema.eval.data import heldout_seed
    from kinema.eval.harness import request_from_episode
    from kinema.eval.physics_alignment import score_prediction
    from kinema.model.pipeline import Pipeline
    from kinema.model.predictor import DEFAULT_STEPS, WorldModelPredictor
    from kinema.worlds.preview import contact_sheet, write_png
    from kinema.worlds.registry import get_world
    from kinema.worlds.rollout import rollout

    out = Path(out)
    t0 = time.time()
    ep = rollout(get_world(DEMO_WORLD), heldout_seed(episode), size=64)  # the whole episode, for the reasoner
    t_sim = time.time() - t0
    req = request_from_episode(ep, DEMO_CAMERA, context=CONTEXT, future=FRAMES - CONTEXT)
    t0 = time.time()
    predictor = WorldModelPredictor(Pipeline.from_pretrained(model, device=device), num_steps=num_steps or DEFAULT_STEPS)
    t_load = time.time() - t0
    t0 = time.time()
    pred = predictor.predict(req)
    t_pred = time.time() - t0
    copy = CopyLastFrame().predict(req)
    gt = ep.frames[DEMO_CAMERA][CONTEXT:FRAMES]
    ctx_masks = ep.masks[DEMO_CAMERA][:CONTEXT]
    gt_masks = ep.masks[DEMO_CAMERA][CONTEXT:FRAMES]
    scores = {name: score_prediction(p, gt, req.context, ctx_masks, gt_masks, ep.objects_info)
              for name, p in (("world model", pred), ("copy last frame", copy))}

    full = lambda future: np.concatenate([req.context, future])  # noqa: E731
    panels = [_label(full(gt), "simulator"), _label(full(pred), "world model"), _label(full(copy), "copy last")]
    side = np.concatenate(panels, axis=2)
    video = encode_video_with_audio(out / "forward_dynamics.mp4", side, ep.fps, None)
    sheet = write_png(out / "forward_dynamics.png", contact_sheet(
        [("simulator", full(gt)), ("world model", full(pred)), ("copy last", full(copy))], columns=11, scale=2))
    print(f"{DEMO_WORLD} (held-out seed {heldout_seed(episode)}), camera {DEMO_CAMERA}: task {ep.task!r}")
    print(f"forward dynamics from {CONTEXT} frames + the recorded actions -> {FRAMES - CONTEXT} frames "
          f"({predictor.num_steps} sampling steps; simulate {t_sim:.1f} s, load {t_load:.1f} s, predict {t_pred:.1f} s)")
    print(f"{'':16s} {'PSNR dB':>8s} {'SSIM':>6s} {'object IoU':>11s}")
    for name, s in scores.items():
        print(f"{name:16s} {s['psnr']:8.2f} {s['ssim']:6.3f} {s['iou']:11.3f}")
    print(f"side by side (simulator | model | copy last): {video}\ncontact sheet: {sheet}")
    ask(predictor.pipeline, ep)
    return scores


def ask(pipeline, ep, types=("count", "first_mover", "first_collision_time", "success")) -> list[tuple[str, str, str]]:
    """The reasoner's answers to the episode's ground-truth questions of these types: (question, answer, truth)."""
    from kinema.model.reasoner import Reasoner, episode_video

    reasoner = Reasoner(pipeline)
    t0 = time.time()
    rows = []
    for qa in [q for q in ep.qa if q["type"] in types]:
        msgs = [{"role": "user", "content": [episode_video(ep, DEMO_CAMERA), {"type": "text", "text": qa["question"]}]}]
        rows.append((qa["question"], reasoner.answer(msgs), qa["answer"]))
    print(f"\nthe reasoner on the whole episode ({len(ep.frames[DEMO_CAMERA]) / ep.fps:.0f} s, "
          f"{time.time() - t0:.1f} s to answer):")
    for q, a, truth in rows:
        print(f"  Q: {q}\n     model: {a!r}   ground truth: {truth!r}")
    return rows
