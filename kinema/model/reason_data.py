"""Training and evaluation data for the reasoner: episode videos as latents + questions answered from ground truth.

Legend: N clips, C latent channels, t latent frames, h/w latent grid, T frames.

`build_reason_latents` encodes every camera of every episode of every dataset
(subsampled to at most 49 frames by reasoner.reasoner_clip, so a 6 s tabletop
episode is seen whole at 8 fps) and stores, per dataset, one safetensors shard
of latents plus a JSON list of the questions each clip answers, written
atomically and skipped when present. The questions (`questions`) come from the
simulator: the QA the worlds record (kinema.worlds.language) plus

  attribute   "Is there a {colour} object in the scene?"  (one yes, one no)
  forecast    "Which block does the arm go for?"  from the first second only
              "Which way does the hand move next?"  from the video up to a cut;
              the dominant axis of the hand's next 0.5 s in the world frame
              (x forward/backward, y left/right, z up/down), from the last
              frame the cut's last latent frame has seen (a 49-frame clip is
              encoded in windows of 33: sequence.latent_frame_ends)
  caption     "Describe what happens in the video."

Plausibility is asked only in datasets that hold implausible twins (both answers).
A recorded question is asked of a camera's clip only when the clip shows its
answer (`answerable`): a count when every object shows MIN_PIXELS in some frame
(the camera's masks; a stack seen from above shows its top box), which object
lands first when no other lands within GROUND_GAP frames of it, a seesaw's lower
end when the plank tips by MIN_TILT degrees. Shards record the version of these
rules (QUESTIONS); a shard built under older ones has its questions made again
from its episodes, its latents kept.
Each question may carry `latent_frames`: the model sees only that many latent
frames (the tokenizer is causal, so they equal the latents of the shorter clip).

With an audio tokenizer the shard also holds each episode's sound as audio
latents (25 Hz, one run per episode shared by its cameras). A model whose
config says `reason_audio` hears it: the contact sounds mark every impact to
40 ms, where a latent frame of the 8 fps clip spans half a second. The audio
tokenizer is causal too, so a question cut to `latent_frames` hears exactly
the sound up to its last frame.

The shard also keeps each clip's keyframes (uint8, the last video frame of
every latent frame: sequence.keyframes), which a model with config.pixel_cell
sees beside the latents.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from kinema.model.data import dataset_shards, shard_complete
from kinema.model.reasoner import CAPTION_QUESTION, reasoner_clip
from kinema.model.sequence import (audio_latent_frames, build_interleaved, for_world, keyframes, latent_frame_count,
                                   latent_frame_ends)
from kinema.train.checkpoint import load_tensors, read_json, save_tensors, write_json

SKIP = {"final_position"}  # metric regression, not one of the reasoner's tasks
TASK_OF = {  # question type -> the task it is reported under (kinema eval reason)
    "count": "count", "count_fallen": "count",
    "attribute": "attribute", "first_mover": "attribute",
    "stack_falls": "outcome", "outcome": "outcome", "first_to_ground": "outcome", "lifted": "outcome",
    "in_goal": "outcome", "on_top": "outcome",
    "first_collision_time": "timing",
    "plausibility": "plausibility",
    "target_block": "forecast", "next_move": "forecast",
    "success": "success",
    "caption": "caption",
}
AXES = (("forward", "backward"), ("left", "right"), ("up", "down"))
STILL = 0.01  # m in 0.5 s: below this the hand "stays still"
# A question is asked of a clip only when its answer can be seen in it (kinema eval reason scores the same set):
MIN_PIXELS = 12  # count: every object shows at least this many pixels (masks) in some frame of the camera's clip
GROUND_GAP = 2  # first_to_ground: the first object lands at least this many clip frames before any other
MIN_TILT = 2.0  # degrees: a seesaw whose plank ends flatter than this has no lower end to see
QUESTIONS = 2  # the version of these rules, kept in every shard (older shards have their questions made again)


def _display(o: dict) -> str:
    from kinema.worlds.language import display

    return display(o)


def answerable(q: dict, objects: list[dict], info: dict, contacts: list[dict], masks, fps: float) -> bool:
    """Whether the answer to a recorded question can be seen in the clip (masks: the camera's object ids over the
    clip's frames uint8 [n, H, W], or None: not known, so kept). Counts need every object in view (a stack seen
    from above shows its top box), which object lands first needs landings frames apart (at 16 fps two that land
    35 ms apart land between the same two frames), and a seesaw's lower end needs a plank that tips."""
    ids = [o["id"] for o in objects if o["kind"] in ("dynamic", "articulated")]
    if q["type"] in ("count", "count_fallen") and masks is not None:
        shown = (masks[..., None] == np.asarray(ids, masks.dtype)).sum((1, 2)).max(0)
        return bool((shown >= MIN_PIXELS).all())
    if q["type"] == "first_to_ground":
        floor = {o["id"] for o in objects if o["kind"] == "static" and o["shape"] == "plane"}
        first: dict[int, float] = {}
        for ev in contacts:
            if not ev.get("resting", False) and (ev["a"] in floor) != (ev["b"] in floor):
                first.setdefault(ev["b"] if ev["a"] in floor else ev["a"], ev["time"])
        times = sorted(first.values())
        if not times or (len(times) > 1 and times[1] - times[0] < GROUND_GAP / fps):
            return False
        if masks is not None:
            hitter = min(first, key=first.get)
            return bool((masks == hitter).sum((1, 2)).max() >= MIN_PIXELS)
    if "plank_angle_deg" in info.get("outcome", {}) and q["type"] == "outcome":
        return abs(info["outcome"]["plank_angle_deg"]) >= MIN_TILT
    return True


def questions(row: dict, arrays: dict, fps: float, stride: int, t: int, plausibility: bool,
              window: int = 33, masks=None) -> list[dict]:
    """One episode's questions (deterministic: seeded by the episode's seed) about a clip of t latent frames
    (the video tokenizer's windows of `window` frames: sequence.latent_frame_ends) at `fps`; masks: the camera's
    object ids over the clip's frames [n, H, W] (answerable), when known."""
    info = json.loads(row["kinema/info"])
    objects = json.loads(row["kinema/objects"])
    contacts = json.loads(row.get("kinema/contacts", "[]"))
    rng = np.random.default_rng(json.loads(row["kinema/seed"]))
    out = [dict(type="caption", question=CAPTION_QUESTION, answer=json.loads(row["kinema/caption"]))]
    for q in json.loads(row["kinema/qa"]):
        if q["type"] in SKIP or (q["type"] == "plausibility" and not plausibility):
            continue
        if not answerable(q, objects, info, contacts, masks, fps):
            continue
        out.append({k: q[k] for k in ("type", "question", "answer", "value") if k in q})
    from kinema.worlds.scene import PALETTE

    movable = [o for o in objects if o["kind"] in ("dynamic", "articulated")]
    present = {o["colour"] for o in objects}
    if movable:
        yes = movable[int(rng.integers(len(movable)))]["colour"]
        out.append(dict(type="attribute", question=f"Is there a {yes} object in the scene?", answer="yes"))
    absent = sorted(c for c in PALETTE if c not in present)
    if absent:
        no = absent[int(rng.integers(len(absent)))]
        out.append(dict(type="attribute", question=f"Is there a {no} object in the scene?", answer="no"))
    if info.get("family") == "tabletop" and "ee.x" in info.get("state_names", []):
        block = info["params"].get("block")
        by_name = {o["name"]: o for o in objects}
        first_second = min(t, 1 + int(round(1.0 * fps / 4)))
        if block in by_name:
            out.append(dict(type="target_block", question="Which block does the arm go for?",
                            answer=_display(by_name[block]), latent_frames=first_second))
        names = info["state_names"]
        ee = arrays["state"][:, [names.index(n) for n in ("ee.x", "ee.y", "ee.z")]]
        ahead = int(round(0.5 * fps * stride))  # 0.5 s in original frames
        seen = latent_frame_ends(t, 4, window) * stride  # the original frame each latent frame has seen last
        cuts = [k for k in range(2, t) if seen[k - 1] + ahead < len(ee)]
        for k in rng.choice(cuts, size=min(2, len(cuts)), replace=False) if cuts else []:
            f0 = int(seen[int(k) - 1])
            d = ee[f0 + ahead] - ee[f0]
            axis = int(np.abs(d).argmax())
            ans = "it stays still" if np.abs(d).max() < STILL else AXES[axis][0 if d[axis] > 0 else 1]
            out.append(dict(type="next_move", question="Which way does the hand move next?", answer=ans,
                            latent_frames=int(k)))
    return out


@torch.no_grad()
def build_reason_latents(roots, out, video_tokenizer, audio_tokenizer=None, *, batch: int = 8,
                         progress: bool = True) -> list[Path]:
    """Encode every dataset's clips (and, given audio_tokenizer, their sound) and keep their keyframes; a shard
    built without sound is built again when sound is asked for. A root may also be an EpisodeList (episodes in
    memory: its shard is named after it) or a folder of shards built before (taken as they are). The tokenizers
    encode on the device their weights are on."""
    from kinema.data.reader import EpisodeList, EpisodeStore
    from kinema.tokenize.data import to_model

    roots = [roots] if isinstance(roots, (str, Path, EpisodeList)) else list(roots)
    jobs, built = [], []
    out = Path(out)
    for r in roots:
        if isinstance(r, EpisodeList):
            out.mkdir(parents=True, exist_ok=True)
            jobs.append((r, out / f"{r.root.name}.safetensors"))
        elif (made := latent_shards(r, audio=audio_tokenizer is not None)) is not None:
            built += made
        else:
            jobs += dataset_shards(r, out)
    dev = next(video_tokenizer.parameters()).device
    for root, path in tqdm(jobs, desc="reasoner latents", unit="set", disable=not progress):
        tc, window = video_tokenizer.cfg.temporal_compression, video_tokenizer.cfg.window
        if shard_complete(path, audio_tokenizer is not None):
            if not shard_current(path, audio_tokenizer is not None):  # the latents stand; the questions change
                ask_again(path, root if isinstance(root, EpisodeList) else EpisodeStore(root), tc, window)
            continue
        store = root if isinstance(root, EpisodeList) else EpisodeStore(root)
        labels = {json.loads(r["kinema/info"])["plausible"] for r in store.meta}
        latents, meta, pending, sounds, keys, at = [], [], [], [], [], 0

        def flush():
            if pending:
                with torch.autocast(dev.type, dtype=torch.bfloat16):
                    clips = torch.stack([to_model(f) for f in pending]).to(dev)
                    latents.append(video_tokenizer.encode(clips).float().half().cpu())
                pending.clear()

        for i in range(len(store)):
            a = store.read(i, audio=audio_tokenizer is not None)
            row = store.meta[i]
            info = json.loads(row["kinema/info"])
            sound = None
            if audio_tokenizer is not None:
                sr = audio_tokenizer.cfg.sample_rate
                if a["sample_rate"] != sr:
                    raise ValueError(f"{root}: episode {i} has sound at {a['sample_rate']} Hz; the audio tokenizer "
                                     f"takes {sr} Hz")
                adev = next(audio_tokenizer.parameters()).device
                wav = torch.from_numpy(a["audio"]).clamp(-1, 1)[None].to(adev)
                with torch.autocast(adev.type, dtype=torch.bfloat16):
                    z = audio_tokenizer.encode(wav)[0].float().half().cpu()  # [Ca, Na] of the whole episode
                sounds.append(z)
                sound, at = [at, z.shape[1]], at + z.shape[1]
            for cam in store.cameras:
                frames, fps = reasoner_clip(a[f"frames/{cam}"], store.fps)
                stride = round(store.fps / fps)
                keys.append(torch.from_numpy(np.ascontiguousarray(keyframes(frames, tc, window))))
                qs = clip_questions(row, a, cam, len(frames), fps, stride, tc, window, plausibility=len(labels) > 1)
                meta.append(dict(world=info["scenario"], family=info["family"], camera=cam, fps=fps, episode=i,
                                 frames=len(frames), seed=json.loads(row["kinema/seed"]), audio=sound, questions=qs))
                pending.append(frames)
                if len(pending) >= batch:
                    flush()
        flush()
        tensors = {"vision": torch.cat(latents), "keyframes": torch.stack(keys)}
        extra = {"keyframes": True, "questions": QUESTIONS}
        if sounds:
            tensors["audio"] = torch.cat(sounds, 1).contiguous()
            extra["audio_rate"] = audio_tokenizer.cfg.frame_rate
        save_tensors(path, tensors)
        write_json(path.with_suffix(".json"), {"dataset": str(store.root), **extra, "clips": meta})
    return built + [path for _, path in jobs]


def clip_questions(row: dict, a: dict, cam: str, n: int, fps: float, stride: int, tc: int, window: int,
                   plausibility: bool) -> list[dict]:
    """The questions about one camera's clip: its first n frames after taking every stride-th (reasoner_clip)."""
    masks = a.get(f"masks/{cam}")
    masks = None if masks is None else masks[::stride][:n]
    return questions(row, a, fps, stride, latent_frame_count(n, tc, window), plausibility, window=window, masks=masks)


def shard_current(path: Path, audio: bool = False) -> bool:
    """A complete reasoner shard whose questions follow the current rules."""
    return shard_complete(path, audio) and read_json(path.with_suffix(".json")).get("questions") == QUESTIONS


def ask_again(path: Path, store, tc: int, window: int) -> None:
    """Make a shard's questions again from its dataset under the current rules (QUESTIONS), keeping its latents."""
    meta = read_json(path.with_suffix(".json"))
    labels = {json.loads(r["kinema/info"])["plausible"] for r in store.meta}
    arrays = {}
    for c in meta["clips"]:
        i = c["episode"]
        if i not in arrays:
            arrays = {i: store.read(i, frames=False, audio=False)}  # clips come episode by episode
        stride = round(store.fps / c["fps"])
        c["questions"] = clip_questions(store.meta[i], arrays[i], c["camera"], c["frames"], c["fps"], stride, tc,
                                        window, plausibility=len(labels) > 1)
    write_json(path.with_suffix(".json"), {**meta, "questions": QUESTIONS})


def latent_shards(folder, audio: bool = False) -> list[Path] | None:
    """The reasoner shards in `folder` when it is a folder of them (the reason_latents of a run, carried to a
    machine without the simulator or a video codec), else None. Each must be complete (with sound if asked)."""
    folder = Path(folder)
    found = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not found or (folder / "meta" / "info.json").exists():
        return None
    for path in found:
        if not shard_complete(path, audio) or "clips" not in read_json(path.with_suffix(".json")):
            raise ValueError(f"{folder}: {path.name} is not a complete reasoner shard (tensors + JSON with clips"
                             f"{', with sound' if audio else ''})")
        if not shard_current(path, audio):
            raise ValueError(f"{folder}: {path.name} holds questions made under older rules (reason_data.QUESTIONS "
                             f"{QUESTIONS}); make it again from its episodes (scripts/simulate_latents.py "
                             "does, in place)")
    return found


def load_reason_shards(shards):
    """-> (latents per clip [C, t, h, w] fp16, clip meta, its episode's audio latents [Ca, Na] fp16 or None,
    its keyframes uint8 [t, H, W, 3]) over all shards."""
    vision, clips, audio, keys = [], [], [], []
    for path in shards:
        t = load_tensors(Path(path))
        meta = read_json(Path(path).with_suffix(".json"))["clips"]
        vision += list(t["vision"])
        keys += list(t["keyframes"])
        clips += meta
        audio += [t["audio"][:, c["audio"][0] : c["audio"][0] + c["audio"][1]] if "audio" in t and c.get("audio")
                  else None for c in meta]
    return vision, clips, audio, keys


def messages_for(q: dict, answer: bool = True) -> list[dict]:
    """The chat messages of one question; the video part stands for the clip's latents."""
    msgs = [{"role": "user", "content": [{"type": "video", "video": "<latents>"}, {"type": "text", "text": q["question"]}]}]
    if answer:
        msgs.append({"role": "assistant", "content": q["answer"]})
    return msgs


def question_tokens(config, text, latent: torch.Tensor, fps: float, q: dict, *, answer: bool = True,
                    latent_mean=None, latent_std=None, audio=None, audio_stats=None, keys=None, world: str | None = None):
    """One question as tokens: standardised latents [C, t, h, w] (cut to q's latent_frames) + chat text.
    keys: the clip's keyframes uint8 [t, H, W, 3] (cut alike), seen only when config.pixel_cell.
    audio: the episode's audio latents [Ca, Na] (raw; audio_stats = (mean, std) [Ca, 1]), heard only when
    config.reason_audio, cut to the clip's last visible frame; None: a silent film (no sound tokens).
    world: the world the clip shows; one in config.reason_own is asked through its own adapter (sequence.for_world)."""
    from kinema.model.chat import render
    from kinema.model.data import audio_to_model

    segments, scored = render(messages_for(q, answer), text, add_generation_prompt=not answer)
    z = latent.float()
    if latent_mean is not None:
        z = (z - latent_mean) / latent_std
    if q.get("latent_frames"):
        z = z[:, : q["latent_frames"]]
    sound = None
    if config.reason_audio and audio is not None:
        frames = 1 + int(latent_frame_ends(z.shape[1], config.temporal_compression, config.tokenizer_window)[-1])
        sound = audio.float()[:, : audio_latent_frames(frames, fps, config.audio_rate)]
        if audio_stats is not None:
            sound = audio_to_model(sound, *audio_stats)
    if keys is not None:
        keys = keys[: z.shape[1]]
    segs = [("vision", z, fps, sound, keys) if s[0] == "media" else s for s in segments]
    return for_world(config, build_interleaved(config, segs, scored), world)


class ReasonTasks(torch.utils.data.Dataset):
    """Every (clip, question) pair as a training sample with its answer tokens scored. A model that hears
    (config.reason_audio) gets each clip as a silent film with probability `mute`, so it also answers
    about videos without a sound track (torch's global RNG: a resumed run draws alike)."""

    def __init__(self, shards, config, text_tokenizer, mute: float = 0.2, task_weights: dict | None = None,
                 question: str | None = None, question_share: float | None = None, question_shards=(),
                 worlds: tuple[str, ...] | None = None, hold_tasks: tuple[str, ...] | None = None):
        if not 0 <= mute <= 1:
            raise ValueError(f"mute: expected a probability in [0, 1], got {mute}")
        if question_share is not None and (question is None or not 0 < question_share < 1):
            raise ValueError(f"question share: expected a fraction in (0, 1) of the draws for a question given, "
                             f"got {question_share} for {question!r}")
        if question_shards and question is None:
            raise ValueError("question shards give only the drilled question: give the question too")
        if hold_tasks is not None and not (hold_tasks and set(hold_tasks) <= set(TASK_OF.values())):
            raise ValueError(f"keep tasks: expected some of {sorted(set(TASK_OF.values()))}, got {list(hold_tasks)}")
        self.config, self.text, self.mute = config, text_tokenizer, mute
        # hold_tasks: the tasks whose answers a run with a teacher keeps where it was right (None: every task)
        self.hold_tasks = None if hold_tasks is None else set(hold_tasks)
        base = load_reason_shards(shards)
        extra = load_reason_shards(question_shards) if question_shards else ([], [], [], [])
        self.vision, self.clips, self.audio, self.keys = (a + b for a, b in zip(base, extra))
        # question alone: a drill on one question the mixture leaves unlearned; with a share, that question is
        # drawn that fraction of the time and the rest of the mixture the remainder (the drill inside the mixture).
        # Clips of question_shards (the drill's extra episodes) give that question only, so the rest of the
        # mixture keeps the worlds' balance of `shards`.
        only = [question is not None and question_share is None] * len(base[1]) + [True] * len(extra[1])
        # worlds: questions about these worlds' clips only (a world's own adapter learns from its own questions)
        shown = sorted({str(c.get("world")) for c in self.clips})
        if worlds is not None and not set(worlds) & set(shown):
            raise ValueError(f"reason worlds: no clip in the shards shows {sorted(worlds)} (they show {shown})")
        self.items = [(i, j) for i, c in enumerate(self.clips) for j, q in enumerate(c["questions"])
                      if (not only[i] or q["question"] == question) and (worlds is None or c.get("world") in worlds)]
        asked = torch.tensor([self.clips[i]["questions"][j]["question"] == question for i, j in self.items])
        if question is not None and not asked.any():
            raise ValueError(f"reason question: no clip in the shards is asked {question!r}")
        if question_share is not None and asked.all():
            raise ValueError(f"question share: every question in the shards is {question!r}, so there is no mixture")
        # how often JointTasks draws each question, relative to the others (None: uniform over questions)
        self.weights = None
        if task_weights:
            unknown = set(task_weights) - set(TASK_OF.values())
            if unknown or any(not w >= 0 for w in task_weights.values()):
                raise ValueError(f"task weights: expected non-negative weights of tasks {sorted(set(TASK_OF.values()))}, "
                                 f"got {task_weights}")
            self.weights = torch.tensor([float(task_weights.get(TASK_OF.get(q["type"], q["type"]), 1.0))
                                         for q in (self.clips[i]["questions"][j] for i, j in self.items)])
        if question_share is not None:
            w = torch.ones(len(self.items)) if self.weights is None else self.weights.clone()
            if not (w[asked].sum() > 0 and w[~asked].sum() > 0):
                raise ValueError(f"question share: the task weights {task_weights} leave {question!r} or the rest of "
                                 "the mixture nothing to draw")
            w[asked] *= question_share / w[asked].sum()
            w[~asked] *= (1 - question_share) / w[~asked].sum()
            self.weights = w
        self.mean = torch.tensor(config.latent_mean).view(-1, 1, 1, 1)
        self.std = torch.tensor(config.latent_std).view(-1, 1, 1, 1)
        self.audio_stats = (torch.tensor(config.audio_mean).view(-1, 1), torch.tensor(config.audio_std).view(-1, 1))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int):
        i, j = self.items[k]
        c = self.clips[i]
        hear = self.config.reason_audio and float(torch.rand(())) >= self.mute
        q = c["questions"][j]
        tok = question_tokens(self.config, self.text, self.vision[i], c["fps"], q,
                              latent_mean=self.mean, latent_std=self.std, audio=self.audio[i] if hear else None,
                              audio_stats=self.audio_stats, keys=self.keys[i], world=c.get("world"))
        if self.hold_tasks is None or TASK_OF.get(q["type"], q["type"]) in self.hold_tasks:
            tok.hold = tok.target >= 0
        return tok


class JointTasks(torch.utils.data.Dataset):
    """Generator tasks and reasoner questions in one dataset: each draw is a question with probability p
    (torch's global RNG, checkpointed by the trainer, so a resumed run draws alike)."""

    def __init__(self, generator, reasoner, p_reason: float):
        if not 0 <= p_reason <= 1:
            raise ValueError(f"p_reason: expected a probability in [0, 1], got {p_reason}")
        self.generator, self.reasoner, self.p = generator, reasoner, p_reason

    def __len__(self) -> int:
        return len(self.generator) + len(self.reasoner)

    def __getitem__(self, i: int):
        if float(torch.rand(())) < self.p:
            w = getattr(self.reasoner, "weights", None)
            k = torch.multinomial(w, 1) if w is not None else torch.randint(len(self.reasoner), ())
            return self.reasoner[int(k)]
        return self.generator[i % len(self.generator)]


def draws(generator, reasoner: ReasonTasks, p_reason: float):
    """The dataset a run samples: JointTasks with generator clips; questions alone otherwise, through JointTasks
    whenever they carry weights (the trainer's sampler indexes the dataset uniformly, so ReasonTasks on its own
    would draw every question alike and the weights would go unused)."""
    if generator is not None:
        return JointTasks(generator, reasoner, p_reason)
    return reasoner if reasoner.weights is None else JointTasks([], reasoner, 1.0)
