"""`kinema generate`: one request (flags or a JSON file with the Cosmos 3 fields) -> mp4, actions JSON, PNG.

Every check on the request runs before any model is loaded, so a bad request
costs nothing and says exactly which field is wrong.

    kinema generate --model_mode forward_dynamics --vision_path clip.mp4 --action_path actions.json
    kinema generate request.json          # the same fields as a JSON object

Outputs in --out: video.mp4 (sound muxed in when generated), actions.json
(generated or given actions), contact.png (given | generated frames), request.json,
and with best_of > 1 critic.json (every draw's seed and critic score, the one kept) and candidates.png (every
draw).

Clips longer than the video tokenizer's window (33 frames) are made by
`Pipeline.rollout` in chunks of at most one window, each conditioned on the
last max(9, context_frames) frames made so far: forward_dynamics and
video2video only, the modes a rollout continues, and without sound.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from kinema.diffusion import SAMPLERS
from kinema.model import critic
from kinema.model.modes import ACTION_MODES, MODES
from kinema.model.reasoner import CAPTION_QUESTION, DEFAULT_FPS

DEFAULT_MODEL = "checkpoints/world-model-small"
VISION_MODES = ("image2video", "video2video", "forward_dynamics", "inverse_dynamics", "policy")
FUTURE_MODES = ("image2video", "video2video", "forward_dynamics", "policy")  # given frames, then a future
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ROLLOUT_MODES = ("forward_dynamics", "video2video")  # what Pipeline.rollout continues past one window
ROLLOUT_CONTEXT = 9  # given frames a rollout's later chunks see at least (Pipeline.rollout's max_context)


def _field(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class GenerateRequest:
    """The request; each field's help is also its `kinema generate --FIELD` flag's."""

    model_mode: str = _field("forward_dynamics", f"one of {', '.join(MODES)}")
    prompt: str = _field("", "the text prompt or instruction")
    vision_path: str | None = _field(None, "given frames: an mp4 (or an image for image2video)")
    action_path: str | None = _field(None, "actions: JSON (a list of rows, or {\"actions\": rows}) or .npy (no "
                                           "pickle), a row per frame")
    domain_name: str | None = _field(None, "the embodiment (single_arm, camera, ...); default: found from the "
                                           "action width")
    context_frames: int | None = _field(None, "given frames read from vision_path; default 9 (image2video 1, "
                                              "inverse_dynamics all)")
    fps: float | None = _field(None, f"frames per second; default: the given video's, else {DEFAULT_FPS:g} (a "
                                     "given video's fps cannot be overridden)")
    num_frames: int = _field(33, "frames in the clip: 1 + 4k; past the tokenizer's 33-frame window only "
                                 "forward_dynamics and video2video, which roll out in chunks")
    seed: int = _field(0, "noise seed")
    guidance: float | None = _field(None, "classifier-free guidance scale; 1 = off; default 3 for text2image and "
                                          "text2video, else 1")
    action_guidance: float = _field(1.0, "forward_dynamics: guidance against the same frames without actions; "
                                         "1 = off")
    strength: float | None = _field(None, "modes with given frames: the fraction of the steps run, starting from "
                                          "the last given frame held still (SDEdit); 1 = from pure noise (the "
                                          "default, but video2video's is 0.7)")
    carry: bool | None = _field(None, "modes with given frames and a future: add the last given frame's tokenizer "
                                      "round-trip error to every generated frame, so what the future keeps of "
                                      "it stays sharp (kinema.model.carry); default: on, but off for actions that "
                                      "move the view (the camera embodiment)")
    num_steps: int | None = _field(None, "sampler steps; default 35 (text2image 50, action modes 30; 1 with draws)")
    draws: int | None = _field(None, "inverse_dynamics and policy: answer with the mean of this many samples of "
                                     "num_steps steps (default 1 step each), the point estimate BENCHMARKS.md scores "
                                     "(16) and the closed-loop policy acts, instead of one sample; the video is the "
                                     "given frames")
    best_of: int = _field(1, f"{', '.join(critic.CAPTION_MODES)}: draw this many clips (seeds seed, seed + "
                             f"{critic.SEED_STRIDE}, ...) and keep the one in which the checkpoint's reasoner finds "
                             "the prompt's colours best (kinema.model.critic; critic.json lists every draw's score)")
    shift: float | None = _field(None, "rectified-flow time shift; default from the resolution")
    sampler: str = _field("dpmpp_2m", f"one of {', '.join(SAMPLERS)}")
    enable_sound: bool = _field(False, "generate sound too (text2video, image2video, video2video)")
    resolution: int = _field(64, "frame size when nothing is given (text2image, text2video)")

    @classmethod
    def from_json(cls, path) -> "GenerateRequest":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"request file {path} does not exist") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"request file {path}: not valid JSON ({e})") from None
        if not isinstance(d, dict):
            raise ValueError(f"request file {path}: expected a JSON object with the request fields")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"request file {path}: unknown field(s) {sorted(unknown)}; known: "
                             f"{[f.name for f in fields(cls)]}")
        return cls(**d)


def load_actions(path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"action_path: {path} does not exist")
    if path.suffix == ".npy":
        a = np.load(path, allow_pickle=False)
    else:
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"action_path: {path} is not valid JSON ({e})") from None
        a = d.get("actions") if isinstance(d, dict) else d
        try:
            a = np.asarray(a, np.float32)
        except (TypeError, ValueError):
            raise ValueError(f"action_path: {path} must hold a list of equal-length rows of numbers") from None
    if a.ndim != 2 or not np.all(np.isfinite(a)):
        raise ValueError(f"action_path: {path} must hold finite rows [T, A], got shape {a.shape}")
    return a.astype(np.float32)


def load_vision(path, count: int | None) -> tuple[np.ndarray, float | None]:
    """-> (uint8 frames [count, H, W, 3], the video's fps or None for an image)."""
    from kinema.tokenize.cli import _read_video

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vision_path: {path} does not exist")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        import cv2

        if count not in (None, 1):
            raise ValueError(f"vision_path: {path} is an image, 1 frame; the request needs {count}")
        img = cv2.imread(str(path))
        if img is None:
            raise ValueError(f"vision_path: {path} is not a readable image")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)[None], None
    frames, fps = _read_video(path)
    if count is not None and len(frames) < count:
        raise ValueError(f"vision_path: {path} has {len(frames)} frames; the request needs {count}")
    return frames[:count], fps


def validate(req: GenerateRequest, config) -> dict:
    """Check every field against the model's config before any compute; -> what the run needs."""
    from kinema.model import embodiments as emb

    def bad(field, expected):
        raise ValueError(f"{field}: expected {expected}, got {getattr(req, field)!r}")

    if req.model_mode not in MODES:
        bad("model_mode", f"one of {', '.join(MODES)}")
    tc, window = config.temporal_compression, config.tokenizer_window
    if req.model_mode != "text2image" and (not isinstance(req.num_frames, int) or req.num_frames < 1
                                           or (req.num_frames - 1) % tc or req.num_frames > 401):
        bad("num_frames", f"1 + {tc}k frames the tokenizer can take (1, {1 + tc}, ..., 33, ..., at most 401)")
    # one run makes at most one tokenizer window; longer clips are a rollout's chunks (`_roll_out`)
    long = req.model_mode != "text2image" and req.num_frames > window
    if long and req.model_mode not in ROLLOUT_MODES:
        bad("num_frames", f"at most {window} in {req.model_mode} (the video tokenizer's window; only "
                          f"{', '.join(ROLLOUT_MODES)} continue past it, in chunks)")
    if req.fps is not None and not (isinstance(req.fps, (int, float)) and math.isfinite(req.fps)
                                    and 1 <= req.fps <= 120):
        bad("fps", "a number of frames per second in [1, 120]")
    if req.num_steps is not None and (not isinstance(req.num_steps, int) or not 1 <= req.num_steps <= 1000):
        bad("num_steps", "an integer in [1, 1000]")
    if req.guidance is not None and not (isinstance(req.guidance, (int, float)) and 0 <= req.guidance <= 30):
        bad("guidance", "a number in [0, 30] (1 = no guidance)")
    if not (isinstance(req.action_guidance, (int, float)) and 0 <= req.action_guidance <= 30):
        bad("action_guidance", "a number in [0, 30] (1 = no action guidance)")
    if req.action_guidance != 1 and req.model_mode != "forward_dynamics":
        bad("action_guidance", f"1 in {req.model_mode} (only forward_dynamics is guided by its actions)")
    if req.strength is not None and not (isinstance(req.strength, (int, float)) and 0 < req.strength <= 1):
        bad("strength", "a number in (0, 1] (1 = start from pure noise)")
    if req.strength not in (None, 1) and req.model_mode not in FUTURE_MODES:
        bad("strength", f"1 in {req.model_mode} (only a mode with given frames and a future starts from a frame)")
    if not (req.carry is None or isinstance(req.carry, bool)):  # 1 == True, but a JSON 1 is not a yes
        bad("carry", "true or false")
    if req.carry and req.model_mode not in FUTURE_MODES:
        bad("carry", f"false in {req.model_mode} (only a mode with given frames and a future has their detail to carry)")
    if req.draws is not None and (not isinstance(req.draws, int) or not 1 <= req.draws <= 256):
        bad("draws", "an integer in [1, 256]")
    if req.draws is not None and req.model_mode not in ("inverse_dynamics", "policy"):
        bad("draws", f"none in {req.model_mode} (only inverse_dynamics and policy answer with a mean of samples)")
    if req.shift is not None and not (isinstance(req.shift, (int, float)) and 0 < req.shift <= 100):
        bad("shift", "a number in (0, 100]")
    if req.sampler not in SAMPLERS:
        bad("sampler", f"one of {SAMPLERS}")
    if not isinstance(req.seed, int) or req.seed < 0:
        bad("seed", "an integer >= 0")
    if not isinstance(req.prompt, str) or len(req.prompt) > 2000:
        bad("prompt", "a string of at most 2000 characters")
    critic.check(req.best_of, req.model_mode, req.prompt)
    if req.enable_sound and req.model_mode not in ("text2video", "image2video", "video2video"):
        bad("enable_sound", "false unless model_mode is text2video, image2video or video2video")
    if req.enable_sound and long:
        bad("enable_sound", f"false when num_frames > {window} (a rollout's chunks make frames only)")
    if req.best_of > 1 and long:
        bad("best_of", f"1 when num_frames > {window} (the critic reads one clip, not a rollout's chunks)")
    step = config.spatial_compression * config.patch[0]
    if not isinstance(req.resolution, int) or req.resolution % step or not step <= req.resolution <= 512:
        bad("resolution", f"a multiple of {step} pixels in [{step}, 512]")
    need = {"rollout": True} if long else {}
    T = 1 if req.model_mode == "text2image" else req.num_frames
    if req.model_mode in VISION_MODES:
        if not req.vision_path:
            bad("vision_path", f"a video (or image) file: {req.model_mode} starts from given frames")
        default = T if req.model_mode == "inverse_dynamics" else 1 if req.model_mode == "image2video" else 9
        count = req.context_frames or default
        if req.model_mode == "inverse_dynamics" and count != T:
            bad("context_frames", f"{T} (inverse_dynamics reads the whole clip)")
        if req.model_mode != "inverse_dynamics" and (count < 1 or (count - 1) % tc or count >= T):
            bad("context_frames", f"1 + {tc}j given frames, fewer than num_frames={T}")
        if long and count >= window:  # every chunk must leave frames to generate
            bad("context_frames", f"1 + {tc}j given frames, fewer than the tokenizer's window of {window} "
                                  f"(num_frames={T} rolls out in chunks of at most {window})")
        need["context_frames"] = count
        if not Path(req.vision_path).is_file():
            raise FileNotFoundError(f"vision_path: {req.vision_path} does not exist")
        if Path(req.vision_path).suffix.lower() in IMAGE_SUFFIXES and count != 1:
            bad("vision_path", f"a video of at least {count} frames ({req.model_mode} reads context_frames={count} "
                               "given frames; an image is 1 frame: give a video, or context_frames 1)")
        if req.model_mode == "policy" and count > 1 and not req.action_path:
            # the rows between given frames are history the model conditions on, not something to fill with zeros
            bad("action_path", f"a JSON file of the {count - 1} actions taken between the {count} given frames, "
                               "one row per frame (policy conditions on them; or context_frames 1)")
    if req.model_mode in ("forward_dynamics",) and not req.action_path:
        bad("action_path", "a JSON file of actions, one row per frame (forward_dynamics is driven by actions)")
    if req.action_path:
        if req.model_mode not in ACTION_MODES:
            bad("action_path", f"none: {req.model_mode} takes no actions")
        a = load_actions(req.action_path)
        slot = emb.index(config.embodiments, req.domain_name) if req.domain_name else \
            emb.find(config.embodiments, dim=a.shape[1])
        e = config.embodiments[slot]
        if a.shape[1] != e.dim:
            raise ValueError(f"action_path: rows have {a.shape[1]} numbers; embodiment {e.name!r} takes {e.dim}")
        if len(a) < T:
            raise ValueError(f"action_path: {len(a)} rows for {T} frames; expected one row per frame")
        need.update(actions=a[:T], domain_name=e.name)
    elif req.domain_name:
        emb.index(config.embodiments, req.domain_name)
        need["domain_name"] = req.domain_name
    elif req.model_mode in ACTION_MODES:  # generated actions with no given rows: nothing tells the width
        bad("domain_name", f"one of {', '.join(e.name for e in config.embodiments)} "
                           f"({req.model_mode} without action_path must name the embodiment)")
    return need


def load_given(req: GenerateRequest, config, count: int) -> tuple[np.ndarray, float]:
    """The request's given frames, checked against the model before it loads: -> (uint8 [count, H, W, 3], the
    clip's fps: the video's own, else the request's or the default)."""
    context, file_fps = load_vision(req.vision_path, count)
    H, W = context.shape[1:3]
    step = config.spatial_compression * config.patch[0]
    if H != W or H % step:
        raise ValueError(f"vision_path: the generator takes square frames whose side is a multiple of {step} "
                         f"pixels; {req.vision_path} has {W}x{H}")
    if file_fps is None:  # an image has no frame rate
        return context, float(req.fps or DEFAULT_FPS)
    if req.fps is not None and not math.isclose(req.fps, file_fps, rel_tol=1e-3):
        # the given frames' timing is the clip's: generating at another rate would misplace them in time
        raise ValueError(f"fps: expected {file_fps:g} (the given video's; or leave fps out), got {req.fps!r}: "
                         f"{req.vision_path} plays at {file_fps:g} fps and its frames keep their timing (resample "
                         "the video to change it)")
    if not 1 <= file_fps <= 120:
        raise ValueError(f"vision_path: {req.vision_path} plays at {file_fps:g} fps; the model takes [1, 120]")
    return context, float(file_fps)


def given_rows(config, domain_name: str, actions: np.ndarray) -> np.ndarray:
    """Raw actions [T, A] -> the T - 1 rows of frames 1..T-1 as forward dynamics hands given actions back
    (modes.plan_tokens' rows, constant dimensions at the embodiment's mean, as Pipeline._unpack writes them)."""
    from kinema.model import embodiments as emb

    e = config.embodiments[emb.index(config.embodiments, domain_name)]
    rows = np.array(actions[:-1] if e.timing == "after" else actions[1:], np.float32)
    const = np.array(e.constant_dims())
    rows[:, const] = np.asarray(e.mean, np.float32)[const]
    return rows


def _roll_out(pipe, req: GenerateRequest, need: dict, context: np.ndarray, progress: bool) -> dict:
    """A clip past the tokenizer's window (ROLLOUT_MODES): `Pipeline.rollout`'s chunks after the given frames,
    exactly num_frames frames; forward_dynamics' actions rows are the given ones (one per frame 1..T-1)."""
    actions = need.get("actions")
    future = pipe.rollout(context, req.num_frames - len(context), actions=actions,
                          window=pipe.config.tokenizer_window, max_context=max(ROLLOUT_CONTEXT, len(context)),
                          domain_name=need.get("domain_name"), prompt=req.prompt, fps=req.fps, seed=req.seed,
                          guidance=req.guidance, num_steps=req.num_steps, shift=req.shift, sampler=req.sampler,
                          action_guidance=req.action_guidance, strength=req.strength, carry=req.carry,
                          progress=progress)
    rows = None if actions is None else given_rows(pipe.config, need["domain_name"], actions)
    return {"frames": np.concatenate([context, future]), "actions": rows, "audio": None}


def write_outputs(out_dir, result: dict, req: GenerateRequest, context: np.ndarray | None, sample_rate: int) -> dict:
    from kinema.data.video_io import encode_video_with_audio
    from kinema.train.checkpoint import write_json
    from kinema.worlds.preview import contact_sheet, write_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames = result["frames"]
    paths = {"video": encode_video_with_audio(out / "video.mp4", frames, req.fps, result["audio"], sample_rate)}
    rows = [("given" if frames is context else "generated", frames)]
    if context is not None and len(context) > 1 and frames is not context:
        rows.insert(0, ("given", context))
    paths["contact_sheet"] = write_png(out / "contact.png", contact_sheet(rows, columns=min(8, len(frames)), scale=2))
    if result["actions"] is not None:
        write_json(out / "actions.json", {"model_mode": req.model_mode, "rows_belong_to_frames": "1..T-1",
                                          "calibrated": bool(result.get("calibrated")),  # kinema.model.calibration
                                          "actions": np.round(result["actions"], 6).tolist()})
        paths["actions"] = out / "actions.json"
    write_json(out / "request.json", asdict(req))
    return {k: str(v) for k, v in paths.items()}


def generate(req: GenerateRequest, model=DEFAULT_MODEL, out="outputs/generate", *, device="auto", dtype="bf16",
             progress=True) -> dict:
    from kinema.model.calibration import ActionCalibration
    from kinema.model.config import KIND, WorldModelConfig
    from kinema.model.pipeline import Pipeline
    from kinema.train.checkpoint import read_json

    cfg_path = Path(model) / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"model: {cfg_path} does not exist (a world-model checkpoint folder is expected)")
    raw = read_json(cfg_path)
    if raw.get("kind") != KIND:
        raise ValueError(f"model: {model} holds a {raw.get('kind')!r}, not a {KIND}")
    cfg = WorldModelConfig.from_dict(raw["model"])
    need = validate(req, cfg)
    context, fps = None, float(req.fps or DEFAULT_FPS)
    if "context_frames" in need:
        context, fps = load_given(req, cfg, need["context_frames"])
    req = replace(req, fps=fps)  # request.json records the rate the clip was made at
    pipe = Pipeline.from_pretrained(model, device=device, dtype=dtype)
    t = time.time()
    if req.draws:  # the point estimate: the given frames stay the video
        policy = dict(num_frames=req.num_frames, actions=need.get("actions")) if req.model_mode == "policy" else {}
        actions = pipe.infer_actions(context, draws=req.draws, seed=req.seed, num_steps=req.num_steps or 1,
                                     mode=req.model_mode, domain_name=need.get("domain_name"), prompt=req.prompt,
                                     fps=fps, guidance=req.guidance, shift=req.shift, sampler=req.sampler, **policy)
        cal = ActionCalibration.beside(model, "inverse_dynamics") if req.model_mode == "inverse_dynamics" else None
        calibrated = cal is not None and need["domain_name"] in cal.scale
        if calibrated:  # the point estimate `kinema eval actions` scores (kinema.model.calibration)
            actions = cal.apply(need["domain_name"], actions)
        result = {"frames": context, "actions": actions, "audio": None, "calibrated": calibrated}
    elif need.get("rollout"):
        result = _roll_out(pipe, req, need, context, progress)
    else:
        outs, scores, kept = critic.best_of(
            pipe, req.model_mode, req.best_of, prompt=req.prompt, seed=req.seed, fps=fps, num_frames=req.num_frames,
            context=context, actions=need.get("actions"), domain_name=need.get("domain_name"), size=req.resolution,
            guidance=req.guidance, num_steps=req.num_steps, shift=req.shift, sampler=req.sampler,
            sound=req.enable_sound, action_guidance=req.action_guidance, strength=req.strength, carry=req.carry,
            progress=progress)
        result = outs[kept]
    seconds = time.time() - t
    paths = write_outputs(out, result, req, context, pipe.audio_tokenizer.cfg.sample_rate)
    if req.best_of > 1:
        from kinema.train.checkpoint import write_json
        from kinema.worlds.preview import contact_sheet, write_png

        rows = [(f"draw {k}: {sc:.2f}{' kept' if k == kept else ''}", o["frames"]) for k, (o, sc) in
                enumerate(zip(outs, scores))]  # every draw, so a person can judge the critic's choice
        paths["candidates"] = str(write_png(Path(out) / "candidates.png",
                                            contact_sheet(rows, columns=min(8, req.num_frames), scale=2)))
        write_json(Path(out) / "critic.json", {
            "question": CAPTION_QUESTION,
            "score": "sum over the prompt's colours c of log P(prompt | clip) - logsumexp over the prompt and it with "
                     "c changed to each colour it does not name (the reasoner's answers to the question; "
                     "log P(prompt | clip) alone when it names none)",
            "kept": kept, "draws": [{"seed": req.seed + k * critic.SEED_STRIDE, "score": round(sc, 4)}
                                    for k, sc in enumerate(scores)]})
        paths["critic"] = str(Path(out) / "critic.json")
    return dict(paths, seconds=round(seconds, 2))


def _cli(args):
    req = GenerateRequest.from_json(args.request) if args.request else GenerateRequest()
    for f in fields(GenerateRequest):
        v = getattr(args, f.name, None)
        if v is not None:
            setattr(req, f.name, v)
    res = generate(req, args.model, args.out, device=args.device, dtype=args.dtype)
    for k, v in res.items():
        print(f"{k}: {v}")


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="generate video / sound / actions with the world model (any mode)")
    p.add_argument("request", nargs="?", help="a JSON file with the request fields (flags override it)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="a world-model checkpoint folder (default: %(default)s)")
    p.add_argument("--out", default="outputs/generate", help="output folder (default: %(default)s)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto picks cuda when there is one")
    p.add_argument("--dtype", default="bf16", choices=["fp32", "bf16"], help="autocast precision (default: bf16)")
    for f in fields(GenerateRequest):
        flags = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        flags += ["--sound"] if f.name == "enable_sound" else []
        if f.type == "bool":
            p.add_argument(*flags, action="store_const", const=True, default=None, help=f.metadata["help"])
        elif f.type == "bool | None":  # on, off, or the default
            p.add_argument(*flags, action=argparse.BooleanOptionalAction, default=None, help=f.metadata["help"])
        else:
            typ = int if f.type.startswith("int") else float if f.type.startswith("float") else str
            shown = "" if f.default in (None, "") else f" (default: {f.default})"
            p.add_argument(*flags, type=typ, default=None, help=f.metadata["help"] + shown)
    p.set_defaults(func=_cli)
