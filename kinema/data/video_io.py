"""Encode and decode mp4 video with PyAV (H.264), exactly when asked to.

Legend: T frames, H height, W width. Frames on disk and in memory are
uint8 [T, H, W, 3] RGB.

Codec presets (`CODECS`):
  "lossless"  libx264rgb, rgb24, qp=0: bit-exact round trip (about 70 bytes per
              64x64 frame of a simulated scene). The default for datasets.
  "yuv444"    libx264, yuv444p, qp=0: only the RGB<->YUV rounding is lost
              (max error 1-2 per channel); plays in more players.
  "preview"   libx264, yuv420p, crf 18: for people to watch; needs even H and W.

Timestamps: the stream time base is 1/fps (fps as an exact Fraction, so 15.0,
16 or 29.97 all work) and a frame's pts is its index. An I-frame (IDR) is forced
at every index in `keyframes` and nowhere else (huge GOP, no scene-cut
keyframes), so each episode packed into one file starts at a keyframe and a
reader can seek straight to it: `decode_video(path, start, count)` seeks to the
nearest keyframe at or before `start` and decodes forward.

Files are written atomically: to `<name>.tmp` in the same folder, then
`os.replace`d onto the final name, so a killed writer never leaves half an mp4
under the final name.
"""

from __future__ import annotations

import io
import math
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

CODECS: dict[str, dict] = {
    "lossless": {"codec": "libx264rgb", "pix_fmt": "rgb24", "options": {"qp": "0"}},
    "yuv444": {"codec": "libx264", "pix_fmt": "yuv444p", "options": {"qp": "0"}},
    "preview": {"codec": "libx264", "pix_fmt": "yuv420p", "options": {"crf": "18"}, "even_size": True},
}
# Keyframes only where asked: forced I-frames become IDR (seekable), no scene cuts.
_COMMON_OPTIONS = {"forced-idr": "1", "sc_threshold": "0"}
_HUGE_GOP = 100_000


def frame_rate(fps: float) -> Fraction:
    """fps (int, float or Fraction) -> exact rational rate, e.g. 29.97 -> 2997/100."""
    try:
        ok = math.isfinite(float(fps)) and float(fps) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"fps must be a positive finite number, got {fps!r}")
    if isinstance(fps, Fraction):
        return fps
    return Fraction(float(fps)).limit_denominator(100_000)


def _check_codec(codec: str, height: int, width: int, label) -> dict:
    if codec not in CODECS:
        raise ValueError(f"unknown codec preset {codec!r} for {label}; choose one of {sorted(CODECS)}")
    preset = CODECS[codec]
    if preset.get("even_size") and (height % 2 or width % 2):
        raise ValueError(
            f"codec {codec!r} (yuv420p) needs even frame sizes, got {height}x{width} for {label}; "
            "use codec='lossless' or 'yuv444'"
        )
    return preset


def _add_stream(container, codec: str, rate: Fraction, height: int, width: int):
    """An H.264 stream of the preset `codec`: time base 1/rate, keyframes only where forced."""
    preset = CODECS[codec]
    stream = container.add_stream(preset["codec"], rate=rate)
    stream.width, stream.height = int(width), int(height)
    stream.pix_fmt = preset["pix_fmt"]
    stream.time_base = 1 / rate
    stream.codec_context.gop_size = _HUGE_GOP
    stream.options = {**preset["options"], **_COMMON_OPTIONS}
    return stream


def _encode(container, stream, frames: np.ndarray | None, keys=frozenset(), first_pts: int = 0, time_base=None) -> None:
    """Encode frames uint8 [T, H, W, 3] (pts = first_pts + i in `time_base` =
    1/fps; I-frame at local indices in `keys`) and mux the packets; frames=None
    flushes the encoder. (The stream's own time base is no use here: the muxer
    changes it once the header is written.)"""
    if frames is None:
        for packet in stream.encode():
            container.mux(packet)
        return
    for i, image in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        vf.pts, vf.time_base = first_pts + i, time_base
        vf.pict_type = av.video.frame.PictureType.I if i in keys else av.video.frame.PictureType.NONE
        for packet in stream.encode(vf):
            container.mux(packet)


def _check_frames(frames: np.ndarray, what: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{what}: expected uint8 frames [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    return frames


class VideoWriter:
    """Streams frames into one mp4, published atomically by `close()`.

    `write(frames)` appends uint8 [T, H, W, 3] frames and, by default, forces a
    keyframe on the first one, so that each call (one episode) can be seeked to.
    Used as a context manager, the file is published on success and the
    temporary file removed on an exception.
    """

    def __init__(self, path: str | os.PathLike, fps: float, height: int, width: int, *, codec: str = "lossless"):
        _check_codec(codec, height, width, path)
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.shape = (int(height), int(width), 3)
        self.rate = frame_rate(fps)
        self.frames_written = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.tmp), mode="w", format="mp4")
        try:
            self._stream = _add_stream(self._container, codec, self.rate, height, width)
        except Exception:
            self.abort()
            raise

    def write(self, frames: np.ndarray, *, keyframe: bool = True, keyframes=None) -> None:
        """Append frames uint8 [T, H, W, 3]; force an I-frame at local index 0
        (`keyframe`) or at each local index in `keyframes`."""
        frames = _check_frames(frames, f"frames for {self.path}")
        if frames.shape[1:] != self.shape:
            want = ", ".join(map(str, self.shape))
            raise ValueError(f"frames for {self.path}: expected [T, {want}], got {list(frames.shape)}")
        keys = set(keyframes) if keyframes is not None else ({0} if keyframe else set())
        _encode(self._container, self._stream, frames, keys, self.frames_written, 1 / self.rate)
        self.frames_written += len(frames)

    def close(self) -> Path:
        """Flush the encoder, finish the mp4 and move it onto its final name."""
        if self.frames_written == 0:
            self.abort()
            raise ValueError(f"video {self.path}: no frames were written")
        try:
            _encode(self._container, self._stream, None)
            self._container.close()
            with open(self.tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        except Exception:
            self.abort()
            raise
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the unfinished file; the final name is left untouched."""
        try:
            self._container.close()
        except Exception:
            pass
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def encode_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    *,
    codec: str = "lossless",
    keyframes=(0,),
) -> Path:
    """Write frames uint8 [T, H, W, 3] to an mp4 at `path`, atomically.

    An I-frame is forced at every index in `keyframes` (e.g. each episode start
    of a packed file) and nowhere else. Returns the path.
    """
    frames = _check_frames(frames, f"frames for {path}")
    if len(frames) == 0:
        raise ValueError(f"frames for {path}: no frames to encode")
    with VideoWriter(path, fps, frames.shape[1], frames.shape[2], codec=codec) as writer:
        writer.write(frames, keyframes=keyframes)
    return Path(path)


def encode_video_bytes(frames: np.ndarray, fps: float, *, codec: str = "lossless", keyframes=(0,)) -> bytes:
    """Same as `encode_video` but returns the mp4 file's bytes (for tar shards)."""
    frames = _check_frames(frames, "frames")
    if len(frames) == 0:
        raise ValueError("frames: no frames to encode")
    _check_codec(codec, frames.shape[1], frames.shape[2], "<mp4 bytes>")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        rate = frame_rate(fps)
        stream = _add_stream(container, codec, rate, frames.shape[1], frames.shape[2])
        _encode(container, stream, frames, set(keyframes), 0, 1 / rate)
        _encode(container, stream, None)
    return buf.getvalue()


def decode_video(
    path: str | os.PathLike | bytes, start: int = 0, count: int | None = None, *, name: str | None = None
) -> np.ndarray:
    """Decode frames [start, start + count) -> uint8 [count, H, W, 3].

    `path` is a file, or the bytes of an mp4 (then `name` labels it in errors).
    Seeks to the nearest keyframe at or before `start`, then decodes forward.
    `count=None` decodes to the end. Raises FileNotFoundError for a missing file
    and ValueError, naming the file, for a corrupt/truncated file or when it
    holds fewer frames than asked.
    """
    if isinstance(path, (bytes, bytearray, memoryview)):
        source, label = io.BytesIO(bytes(path)), name or "<mp4 bytes>"
    else:
        source = label = str(path)
        if not os.path.isfile(source):
            raise FileNotFoundError(f"video file {label} does not exist")
    if start < 0 or (count is not None and count < 0):
        raise ValueError(f"video {label}: bad frame range start={start} count={count}")
    want = f"frames [{start}, {start + count})" if count is not None else f"frames from {start} to the end"
    if count == 0:
        return _empty_frames(source, label)
    out: list[np.ndarray] = []
    try:
        with av.open(source, mode="r") as container:
            if not container.streams.video:
                raise ValueError(f"video {label} has no video stream (expected {want})")
            stream = container.streams.video[0]
            rate = frame_rate(stream.average_rate or stream.guessed_rate)
            tb = stream.time_base
            if start > 0:
                container.seek(math.floor(start / rate / tb), stream=stream, backward=True, any_frame=False)
            expected = start
            for frame in container.decode(stream):
                index = round(frame.pts * tb * rate) if frame.pts is not None else None
                if index is None or index < start:
                    continue
                if index != expected:
                    raise ValueError(
                        f"video {label}: frame {expected} is missing (next decoded frame is {index}); expected {want}"
                    )
                out.append(_to_rgb(frame))
                expected += 1
                if count is not None and len(out) == count:
                    break
    except av.FFmpegError as e:
        raise ValueError(f"cannot decode video {label}: corrupt or truncated mp4 ({e}); expected {want}") from e
    if count is not None and len(out) < count:
        raise ValueError(f"video {label} holds only {len(out)} of the {want} asked for (corrupt, truncated or too short)")
    if not out:
        raise ValueError(f"video {label} has no {want}")
    return np.stack(out)


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame -> uint8 [H, W, 3] RGB. The lossless preset decodes to
    planar gbrp, which PyAV reorders to RGB itself, ~8x faster than swscale."""
    if frame.format.name == "gbrp":
        rgb = frame.to_ndarray()
        if rgb.shape == (frame.height, frame.width, 3):
            return rgb
    return frame.to_ndarray(format="rgb24")


def _empty_frames(source, label: str) -> np.ndarray:
    try:
        with av.open(source, mode="r") as container:
            stream = container.streams.video[0]
            return np.zeros((0, stream.height, stream.width, 3), np.uint8)
    except (av.FFmpegError, IndexError) as e:
        raise ValueError(f"cannot read video {label}: corrupt or truncated mp4 ({e})") from e


def probe_video(path: str | os.PathLike) -> dict:
    """Cheap facts about an mp4 without decoding pixels: frames (packets
    demuxed, so a truncated file shows), keyframes (frame indices), height,
    width, fps, codec. Raises like `decode_video`."""
    label = str(path)
    if not os.path.isfile(label):
        raise FileNotFoundError(f"video file {label} does not exist")
    try:
        with av.open(label, mode="r") as container:
            if not container.streams.video:
                raise ValueError(f"video {label} has no video stream")
            stream = container.streams.video[0]
            rate = frame_rate(stream.average_rate or stream.guessed_rate)
            tb = stream.time_base
            pts, keys = [], []
            for packet in container.demux(stream):
                if packet.size == 0 or packet.pts is None:
                    continue
                pts.append(round(packet.pts * tb * rate))
                if packet.is_keyframe:
                    keys.append(pts[-1])
            return {
                "frames": len(pts),
                "keyframes": sorted(keys),
                "height": stream.height,
                "width": stream.width,
                "fps": rate,
                "codec": stream.codec_context.name,
                "header_frames": stream.frames,
            }
    except av.FFmpegError as e:
        raise ValueError(f"cannot read video {label}: corrupt or truncated mp4 ({e})") from e


def encode_video_with_audio(path: str | os.PathLike, frames: np.ndarray, fps: float, audio: np.ndarray | None,
                            sample_rate: int = 16000, *, codec: str = "yuv444") -> Path:
    """frames uint8 [T, H, W, 3] and mono audio f32 [N] in [-1, 1] -> one mp4 (H.264 + AAC), atomically.

    audio=None writes the video alone. Used for generated clips, where sound is muxed in for people to hear.
    """
    frames = _check_frames(frames, f"frames for {path}")
    if len(frames) == 0:
        raise ValueError(f"frames for {path}: no frames to encode")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    rate = frame_rate(fps)
    _check_codec(codec, frames.shape[1], frames.shape[2], path)
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            video = _add_stream(container, codec, rate, frames.shape[1], frames.shape[2])
            sound = None
            if audio is not None:
                sound = container.add_stream("aac", rate=int(sample_rate), layout="mono")
            _encode(container, video, frames, {0}, 0, 1 / rate)
            _encode(container, video, None)
            if sound is not None:
                samples = np.clip(np.asarray(audio, np.float32), -1, 1)[None]  # [1, N] planar
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout="mono")
                af.sample_rate, af.pts = int(sample_rate), 0
                for packet in [*sound.encode(af), *sound.encode(None)]:
                    container.mux(packet)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def decode_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray | None:
    """The first audio stream of a media file as mono f32 [N] at sample_rate (resampled by FFmpeg), or None
    when the file has no sound."""
    label = str(path)
    if not os.path.isfile(label):
        raise FileNotFoundError(f"media file {label} does not exist")
    try:
        with av.open(label, mode="r") as container:
            if not container.streams.audio:
                return None
            resampler = av.AudioResampler(format="flt", layout="mono", rate=int(sample_rate))
            chunks = []
            for frame in container.decode(container.streams.audio[0]):
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    except av.FFmpegError as e:
        raise ValueError(f"cannot read the sound of {label}: corrupt or truncated file ({e})") from e
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
