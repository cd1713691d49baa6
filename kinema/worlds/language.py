"""Captions and question-answer pairs written from simulator ground truth.

Legend: T frames, K object slots.

Every answer is computed from the recorded states and contact events, never
from a model, so they can train and grade the reasoner. Each QA item is
{"type", "question", "answer"} plus "value" where the answer is a number.
"""

from __future__ import annotations

import numpy as np

MOVE_SPEED = 0.05  # m/s: an object "moves" once its speed exceeds this


def display(obj: dict) -> str:
    if obj["kind"] == "static" or obj["kind"] == "robot":
        return f"the {obj['name'].replace('_', ' ')}"
    return f"the {obj['colour']} {obj.get('noun', obj['shape'])}"


def movable(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] in ("dynamic", "articulated")]


def first_move_frames(objects: list[dict], states: np.ndarray) -> dict[int, int]:
    """Object id -> first frame its linear or angular speed exceeds the threshold."""
    out = {}
    for o in movable(objects):
        s = states[:, o["id"] - 1]
        speed = np.maximum(np.linalg.norm(s[:, 7:10], axis=1), 0.1 * np.linalg.norm(s[:, 10:13], axis=1))
        idx = np.flatnonzero(speed > MOVE_SPEED)
        if len(idx):
            out[o["id"]] = int(idx[0])
    return out


def yes_no(b: bool) -> str:
    return "yes" if b else "no"


def describe(world, scene, states: np.ndarray, contacts: list[dict], outcome: dict, info: dict, fps: float):
    """-> (caption, qa, task)."""
    by_id = {o["id"]: o for o in scene.objects}
    qa: list[dict] = []
    mov = movable(scene.objects)
    qa.append(dict(type="count", question="How many movable objects are in the scene?",
                   answer=str(len(mov)), value=len(mov)))

    moves = first_move_frames(scene.objects, states)
    if moves:
        order = sorted(moves.items(), key=lambda kv: kv[1])
        if len(order) == 1 or order[0][1] < order[1][1]:
            qa.append(dict(type="first_mover", question="Which object starts moving first?",
                           answer=display(by_id[order[0][0]])))

    sentences = [world.scene_sentence(scene)]
    # A pair placed touching (a stack settling, a ball rolling along its track) makes impacts that no
    # viewer would call a collision; only pairs that came together, or visibly parted first, count.
    collisions = [ev for ev in contacts if not ev.get("resting", False)]
    if collisions:
        ev = collisions[0]
        t = ev["time"]
        qa.append(dict(type="first_collision_time", question="At what second does the first collision happen?",
                       answer=f"{t:.2f} s", value=float(t)))
        a, b = by_id[ev["a"]], by_id[ev["b"]]
        sentences.append(f"The first collision, between {display(a)} and {display(b)}, happens at {t:.2f} s.")
    else:
        qa.append(dict(type="first_collision_time", question="At what second does the first collision happen?",
                       answer="there is no collision", value=None))

    floor_ids = {o["id"] for o in scene.objects if o["kind"] == "static" and o["shape"] == "plane"}
    ground_hits = [ev for ev in collisions if (ev["a"] in floor_ids) != (ev["b"] in floor_ids)]
    if len(mov) > 1 and ground_hits:
        first = ground_hits[0]
        hitter = first["b"] if first["a"] in floor_ids else first["a"]
        qa.append(dict(type="first_to_ground", question="Which object hits the ground first?",
                       answer=display(by_id[hitter])))

    for o in mov[:3]:
        x, y, z = states[-1, o["id"] - 1, :3]
        still = np.linalg.norm(states[-1, o["id"] - 1, 7:10]) < MOVE_SPEED
        qa.append(dict(type="final_position", question=f"Where does {display(o)} end up?",
                       answer=f"at x={x:.2f} m, y={y:.2f} m, z={z:.2f} m, {'at rest' if still else 'still moving'}",
                       value=[float(x), float(y), float(z)]))

    for q, a, s in world.outcome_facts(scene, outcome):
        qa.append(dict(type=q["type"], question=q["question"], answer=a))
        if s:
            sentences.append(s)

    plausible = info["plausible"]
    qa.append(dict(type="plausibility", question="Is the motion in this video physically plausible?",
                   answer=yes_no(plausible)))
    caption = " ".join(sentences)
    return caption, qa, world.task_text(scene)
