"""`kinema tokenizer train|encode|decode|reconstruct|eval`: the command line of the tokenizers.

Files: `encode` reads a video (mp4 or any format PyAV opens) and writes a
safetensors file holding the latent (CV: "latent"; DV: "indices" and "codes")
plus a JSON header with the tokenizer path, frame count and fps; `decode` reads
that file back into an mp4. Audio: a .wav in, an "audio_latent" out.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

DEFAULT_VIDEO = "checkpoints/tokenizer-cv4x8x8"


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return name


def _train(args):
    from dataclasses import fields

    from kinema.train.config import TrainConfig
    from kinema.tokenize import audio, video
    from kinema.tokenize.train import train_audio_tokenizer, train_video_tokenizer

    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    train = TrainConfig(**overrides)
    train.device = _device(train.device)
    t = time.time()
    if args.preset is None and args.init is None:
        raise ValueError("tokenizer train: give --preset, or --init with a trained tokenizer")
    if args.freeze_encoder and args.init is None:
        raise ValueError("--freeze-encoder trains the decoder of an existing tokenizer: give it with --init")
    if args.init is not None:
        if args.preset is not None or args.no_wavelet or args.orthonormal_wavelet or args.whiten:
            raise ValueError("--init takes the architecture from the checkpoint: leave out --preset, --no-wavelet, "
                             "--orthonormal-wavelet and --whiten")
        from kinema.train.checkpoint import read_json

        if read_json(Path(args.init) / "config.json").get("kind") == audio.KIND:
            out = train_audio_tokenizer(None, args.data, train, heldout=args.heldout, eval_every=args.eval_every,
                                        init=args.init, freeze_encoder=args.freeze_encoder)
        else:  # the video tokenizer, whose loader names any other kind in its error
            out = train_video_tokenizer(None, args.data, train, clip_len=args.clip_len, heldout=args.heldout,
                                        eval_every=args.eval_every, init=args.init, freeze_encoder=args.freeze_encoder)
    elif args.preset.startswith("audio-"):
        cfg = audio.get_preset(args.preset.removeprefix("audio-"))
        out = train_audio_tokenizer(cfg, args.data, train, heldout=args.heldout, eval_every=args.eval_every)
    else:
        cfg = video.get_preset(args.preset)
        if args.no_wavelet and args.orthonormal_wavelet:
            raise ValueError("--no-wavelet and --orthonormal-wavelet are two different ablations: give one")
        cfg.wavelet = not args.no_wavelet
        cfg.wavelet_rescale = not args.orthonormal_wavelet
        cfg.whiten = args.whiten or "none"
        out = train_video_tokenizer(cfg, args.data, train, clip_len=args.clip_len, heldout=args.heldout,
                                    eval_every=args.eval_every)
    print(f"trained {args.preset or args.init} in {(time.time() - t) / 60:.1f} min -> {out}")


def _read_video(path) -> tuple:
    import av

    from kinema.data.video_io import decode_video

    try:
        with av.open(str(path)) as c:
            fps = float(c.streams.video[0].average_rate or 16)
    except (av.error.FFmpegError, IndexError) as e:
        raise ValueError(f"{path}: not a readable video or image ({e})") from e
    return decode_video(path), fps


def _read_wav(path):
    """16-bit PCM mono .wav -> (float32 [N] in [-1, 1], sample rate), with the standard library."""
    import wave

    import numpy as np

    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise ValueError(f"{path}: expected 16-bit PCM mono, got {8 * w.getsampwidth()}-bit x {w.getnchannels()} channels")
            data = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
            return data, w.getframerate()
    except (wave.Error, EOFError) as e:
        raise ValueError(f"{path}: not a readable .wav ({e})") from e


def _write_wav(path, samples, rate: int) -> None:
    import wave

    import numpy as np

    pcm = (np.clip(samples, -1, 1) * 32767).round().astype("<i2")
    tmp = Path(str(path) + ".tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    tmp.replace(path)


def _encode(args):
    import torch
    from safetensors.torch import save_file

    from kinema.tokenize.data import to_model
    from kinema.tokenize.load import load_tokenizer

    model = load_tokenizer(args.tokenizer, device=_device(args.device))
    dev = next(model.parameters()).device
    meta = {"tokenizer": str(args.tokenizer)}
    if model.__class__.__name__ == "AudioTokenizer":
        samples, rate = _read_wav(args.input)
        if rate != model.cfg.sample_rate:
            raise ValueError(f"{args.input}: {rate} Hz; this audio tokenizer expects {model.cfg.sample_rate} Hz mono")
        tensors = {"audio_latent": model.encode(torch.from_numpy(samples)[None].to(dev))}
        meta |= {"num_samples": str(len(samples)), "sample_rate": str(rate)}
    else:
        frames, fps = _read_video(args.input)
        out = model.encode(to_model(frames)[None].to(dev))
        tensors = {"indices": out[0].int(), "codes": out[1]} if model.cfg.discrete else {"latent": out}
        meta |= {"num_frames": str(len(frames)), "fps": str(fps), "height": str(frames.shape[1]), "width": str(frames.shape[2])}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(args.output) + ".tmp")
    save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=meta)
    tmp.replace(args.output)
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in tensors.items())
    print(f"{args.input} -> {shapes} in {args.output}")


def _decode(args):
    from safetensors import SafetensorError, safe_open

    from kinema.data.video_io import encode_video
    from kinema.tokenize.data import to_uint8
    from kinema.tokenize.load import load_tokenizer

    if not Path(args.input).is_file():
        raise FileNotFoundError(f"{args.input}: no such latent file")
    try:
        with safe_open(args.input, "pt") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            tensors = {k: f.get_tensor(k) for k in keys}
    except SafetensorError as e:
        raise ValueError(f"{args.input}: not a latent file written by kinema tokenizer encode ({e})") from None
    tok = args.tokenizer or meta.get("tokenizer")
    if not tok:
        raise ValueError(f"{args.input} does not say which tokenizer made it; pass --tokenizer")
    model = load_tokenizer(tok, device=_device(args.device))
    dev = next(model.parameters()).device
    if "audio_latent" in tensors:
        y = model.decode(tensors["audio_latent"].to(dev), num_samples=int(meta.get("num_samples", 0)) or None)
        _write_wav(args.output, y[0].cpu().numpy(), model.cfg.sample_rate)
        print(f"{args.input} -> {y.shape[1]} samples in {args.output}")
        return
    z = tensors["indices"].long() if "indices" in tensors else tensors.get("latent")
    if z is None:
        raise ValueError(f"{args.input}: expected a 'latent' or 'indices' tensor, found {sorted(keys)}")
    video = model.decode(z.to(dev), num_frames=int(meta["num_frames"]) if "num_frames" in meta else None)
    frames = to_uint8(video[0])
    encode_video(args.output, frames, float(meta.get("fps", 16)), codec="preview" if args.preview else "lossless")
    print(f"{args.input} -> {len(frames)} frames in {args.output}")


def _reconstruct_input(args) -> tuple:
    """(frames [T, H, W, 3] uint8, fps, output stem) of `reconstruct`'s input: an mp4, or one episode of a dataset
    folder. A dataset's mp4 holds its episodes one after another, and a causal tokenizer run across an episode cut
    mixes the two scenes in the latent frame that spans it; reading the episode alone avoids that."""
    path = Path(args.input)
    if not path.is_dir():
        if args.episode is not None or args.camera is not None:
            raise ValueError(f"--episode and --camera pick from a dataset folder; {path} is not one")
        frames, fps = _read_video(path)
        return frames, fps, path.stem
    from kinema.data.reader import EpisodeStore

    store = EpisodeStore(path)
    episode = 0 if args.episode is None else args.episode
    if not 0 <= episode < len(store):
        raise ValueError(f"--episode {episode}: {path} holds episodes 0 to {len(store) - 1}")
    camera = args.camera or store.cameras[0]  # read() names the cameras there are when this one is not
    frames = store.read(episode, cameras=[camera], masks=False, audio=False)[f"frames/{camera}"]
    return frames, store.fps, f"{path.name}_episode{episode}_{camera}"


def _reconstruct(args):
    import numpy as np
    import torch

    from kinema.data.video_io import encode_video
    from kinema.eval.metrics import psnr, ssim
    from kinema.tokenize.data import to_model, to_uint8
    from kinema.tokenize.load import load_tokenizer
    from kinema.worlds.preview import contact_sheet, write_png

    model = load_tokenizer(args.tokenizer, device=_device(args.device))
    frames, fps, stem = _reconstruct_input(args)
    sc = model.cfg.spatial_compression
    H, W = frames.shape[1] // sc * sc, frames.shape[2] // sc * sc
    if (H, W) != frames.shape[1:3]:
        print(f"note: cropping {frames.shape[2]}x{frames.shape[1]} to {W}x{H} (multiples of {sc})")
        frames = frames[:, :H, :W]
    x = to_model(frames)[None].to(next(model.parameters()).device)
    t = time.time()
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
        recon = to_uint8(model.decode(model.encode(x), num_frames=len(frames))[0])
    dt = time.time() - t
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    side = np.concatenate([frames, recon], axis=2)  # original | reconstruction
    mp4 = encode_video(out / f"{stem}_reconstruction.mp4", side, fps, codec="preview")
    err = np.clip(np.abs(frames.astype(np.int16) - recon.astype(np.int16)) * 4, 0, 255).astype(np.uint8)
    png = write_png(out / f"{stem}_reconstruction.png",
                    contact_sheet([("original", frames), ("reconstruction", recon), ("|error| x4", err)], columns=min(9, len(frames))))
    p, s = psnr(recon, frames), ssim(recon, frames)
    print(f"{len(frames)} frames in {dt:.2f} s ({dt * 1000 / len(frames):.1f} ms/frame): PSNR {p.value:.2f} dB, SSIM {s.value:.4f}")
    print(f"side by side: {mp4}\ncontact sheet: {png}")


def _eval(args):
    from kinema.tokenize.evaluate import evaluate_audio, evaluate_h264, evaluate_video, h264_at_bpp, held_out_clips
    from kinema.tokenize.load import load_tokenizer

    results = {}
    t0 = time.time()
    clips = None
    if args.entropy_check < 0:
        raise SystemExit(f"--entropy-check: expected N >= 0 clips, got {args.entropy_check}")
    prior = None
    if args.entropy_model:
        from kinema.model.autoregressive import load_model

        prior = load_model(args.entropy_model, device=_device(args.device))
    for path in args.tokenizer:
        model = load_tokenizer(path, device=_device(args.device))
        t = time.time()
        if model.__class__.__name__ == "AudioTokenizer":
            r = evaluate_audio(model, args.data, episodes=args.episodes)
        else:
            clips = clips or held_out_clips(args.data, args.clip_len, args.episodes)
            r = evaluate_video(model, clips, dtype=args.dtype, entropy_check=args.entropy_check,
                               entropy_model=prior if model.cfg.discrete else None)
            if "entropy_coded" in r:
                r["entropy_coded"]["model"] = str(args.entropy_model)
        r["params"] = sum(p.numel() for p in model.parameters())
        r["seconds"] = time.time() - t
        results[str(path)] = r
    if args.h264_downscale < 1:
        raise SystemExit(f"--h264-downscale: expected a factor >= 1, got {args.h264_downscale}")
    if args.h264:
        clips = clips or held_out_clips(args.data, args.clip_len, args.episodes)
        h = evaluate_h264(clips)
        for r in results.values():
            if "bpp" in r:
                r["h264_at_same_bpp"] = h264_at_bpp(h["curve"], r["bpp"])
            if "entropy_coded" in r:
                r["h264_at_entropy_bpp"] = h264_at_bpp(h["curve"], r["mean"]["bpp_entropy"])
                for scen, v in r["per_scenario"].items():  # each world against its own H.264 curve
                    v["h264_at_entropy_bpp"] = h264_at_bpp(h["curve"], v["bpp_entropy"], scen)
        results["h264"] = h
        if args.h264_downscale > 1:
            small = evaluate_h264(clips, downscale=args.h264_downscale)
            for r in results.values():
                if "entropy_coded" in r:
                    r["h264_small_at_entropy_bpp"] = h264_at_bpp(small["curve"], r["mean"]["bpp_entropy"])
                    for scen, v in r["per_scenario"].items():
                        v["h264_small_at_entropy_bpp"] = h264_at_bpp(small["curve"], v["bpp_entropy"], scen)
            results[f"h264_1/{args.h264_downscale}"] = small
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(out)
    print(_table(results))
    print(f"wrote {out} in {time.time() - t0:.0f} s")


def _table(results: dict) -> str:
    lines = []
    for name, r in results.items():
        if name.startswith("h264"):
            continue
        m = r["mean"]
        head = " ".join(f"{k} {v:.{4 if k.startswith('bpp') else 3}f}" for k, v in m.items())
        extra = f"  bpp {r['bpp']:.4f}" if "bpp" in r else ""
        if "h264_at_same_bpp" in r:
            h = r["h264_at_same_bpp"]
            extra += f"  | H.264 at {h['bpp']:.4f} bpp: psnr {h['psnr']:.3f} ssim {h['ssim']:.3f}"
        lines.append(f"{name}: {head}{extra}")
        if "entropy_coded" in r:
            e = r["entropy_coded"]
            line = (f"    entropy-coded by {e['model']}: {r['mean']['bpp_entropy']:.4f} bpp promised (mean over scenarios); "
                    f"{e['clips']} clips coded and decoded exactly in {e['coded_bits']} bits against "
                    f"{e['promised_bits']:.0f} promised")
            if "h264_at_entropy_bpp" in r:
                h = r["h264_at_entropy_bpp"]
                where = "its lowest rate, " if h["at_lowest_rate"] else ""
                line += f" | H.264 at {where}{h['bpp']:.4f} bpp: psnr {h['psnr']:.3f} ssim {h['ssim']:.3f}"
            if "h264_small_at_entropy_bpp" in r:
                h = r["h264_small_at_entropy_bpp"]
                where = "its lowest rate, " if h["at_lowest_rate"] else ""
                line += f" | H.264 shrunk, at {where}{h['bpp']:.4f} bpp: psnr {h['psnr']:.3f} ssim {h['ssim']:.3f}"
            lines.append(line)
        for s, v in r["per_scenario"].items():
            line = "    " + f"{s:16s} " + " ".join(f"{k} {x:.{4 if k.startswith('bpp') else 3}f}" for k, x in v.items()
                                                 if not k.startswith(("clips", "h264")))
            for key, label in (("h264_at_entropy_bpp", "H.264"), ("h264_small_at_entropy_bpp", "H.264 shrunk")):
                if key in v:
                    h = v[key]
                    line += (f"  | {label} at {'its lowest rate, ' if h['at_lowest_rate'] else ''}{h['bpp']:.4f}: "
                             f"psnr {h['psnr']:.3f}")
            lines.append(line)
    return "\n".join(lines)


def add_parser(sub) -> None:
    from kinema.train.config import FLAG_HELP, add_train_flags

    t = sub.add_parser("tokenizer", help="causal wavelet video tokenizer and audio tokenizer").add_subparsers(
        dest="action", required=True)

    tr = t.add_parser("train", help="train a tokenizer preset on datasets (resumes from OUT)")
    tr.add_argument("--preset", default=None,
                    help="a video preset such as cv4x8x8-small, dv4x8x8-small, cv8x16x16-tiny, or audio-small / audio-tiny")
    tr.add_argument("--init", default=None, help="instead of --preset: start from this (video or audio) tokenizer's weights")
    tr.add_argument("--freeze-encoder", action="store_true",
                    help="with --init: train the decoder only, so its latents (and models trained on them) stay valid")
    tr.add_argument("--data", required=True, help="a LeRobot dataset or a folder of them")
    tr.add_argument("--heldout", default=None, help="held-out datasets for the quality curve in the log")
    tr.add_argument("--clip-len", type=int, default=17, help="frames per training clip (1 + k * temporal compression)")
    tr.add_argument("--eval-every", type=int, default=200, help="steps between held-out PSNR/SNR checks (default: %(default)s)")
    tr.add_argument("--no-wavelet", action="store_true", help="ablation: plain space-to-depth patches instead of Haar")
    tr.add_argument("--orthonormal-wavelet", action="store_true",
                    help="ablation: Haar without Cosmos' 1/(2*sqrt2) rescaling per level (energy-preserving)")
    tr.add_argument("--whiten", choices=("encoder", "both"), default=None,
                    help="divide each patch channel by its RMS on training clips before the encoder (encoder), and "
                         "have the decoder output them so scaled too (both)")
    tr.add_argument("--out", required=True, help=FLAG_HELP["out"])
    add_train_flags(tr, ("steps", "batch_size", "grad_accum", "lr", "warmup", "ema_decay", "dtype", "device", "seed",
                         "ckpt_every", "log_every", "num_workers"), unset=True)
    tr.set_defaults(func=_train)

    e = t.add_parser("encode", help="video file -> latent safetensors")
    e.add_argument("input", help="an mp4 (or image)")
    e.add_argument("output", help="the latents (.safetensors)")
    e.add_argument("--tokenizer", default=DEFAULT_VIDEO, help="a tokenizer checkpoint folder (default: %(default)s)")
    e.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto picks cuda when there is one")
    e.set_defaults(func=_encode)

    d = t.add_parser("decode", help="latent safetensors -> mp4")
    d.add_argument("input", help="latents written by kinema tokenizer encode")
    d.add_argument("output", help="the mp4 to write")
    d.add_argument("--tokenizer", default=None, help="default: the one recorded in the latent file")
    d.add_argument("--preview", action="store_true", help="write a small yuv420 mp4 instead of lossless")
    d.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto picks cuda when there is one")
    d.set_defaults(func=_decode)

    r = t.add_parser("reconstruct", help="encode + decode a video: side-by-side mp4, contact sheet, PSNR/SSIM")
    r.add_argument("input", help="an mp4, or a dataset folder (one episode of it: --episode, --camera)")
    r.add_argument("--episode", type=int, default=None, help="with a dataset folder: which episode (default: 0)")
    r.add_argument("--camera", default=None, help="with a dataset folder: which camera (default: its first)")
    r.add_argument("--tokenizer", default=DEFAULT_VIDEO, help="a tokenizer checkpoint folder (default: %(default)s)")
    r.add_argument("--out", default="outputs/reconstruct", help="output folder (default: %(default)s)")
    r.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"), help="autocast precision (default: %(default)s)")
    r.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto picks cuda when there is one")
    r.set_defaults(func=_reconstruct)

    v = t.add_parser("eval", help="TokenBench-style PSNR/SSIM per scenario on held-out data (+ the H.264 baseline)")
    v.add_argument("--data", required=True, help="held-out datasets (seeds the tokenizer never saw)")
    v.add_argument("--tokenizer", nargs="+", default=[DEFAULT_VIDEO], help="tokenizer checkpoint folders (video or audio)")
    v.add_argument("--clip-len", type=int, default=33, help="frames per clip (default: %(default)s)")
    v.add_argument("--episodes", type=int, default=6, help="episodes per scenario")
    v.add_argument("--h264", action="store_true", help="also sweep H.264 and compare at equal bits per pixel")
    v.add_argument("--h264-downscale", type=int, default=1, metavar="F",
                   help="with --h264: also sweep H.264 on clips shrunk F times (and grown back), which reaches lower "
                        "rates than its coarsest quantizer; each entropy-coded DV rate is set against both curves")
    v.add_argument("--entropy-model", default=None, metavar="AR_CHECKPOINT",
                   help="DV tokenizers: also entropy-code their codes with this autoregressive world model "
                        "(e.g. checkpoints/ar-world-model-small): the rate it promises on every clip, and H.264 there")
    v.add_argument("--entropy-check", type=int, default=1, metavar="N",
                   help="with --entropy-model: range-code and decode the first N clips of each scenario for real "
                        "(default: %(default)s; about 9 s a clip on 2 CPU cores)")
    v.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"), help="autocast precision (default: %(default)s)")
    v.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto picks cuda when there is one")
    v.add_argument("--out", default="outputs/tokenizer_eval.json", help="the report (default: %(default)s)")
    v.set_defaults(func=_eval)
