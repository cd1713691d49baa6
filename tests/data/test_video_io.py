"""mp4 encode/decode: exact lossless round trip, keyframes, seeking into packed files, errors."""

import av
import numpy as np
import pytest

from kinema.data.video_io import decode_video, encode_video, encode_video_bytes, probe_video

from .conftest import squares_video


@pytest.fixture
def clip():
    frames, _ = squares_video(np.random.default_rng(0), 20, 32, 48)
    return frames


def test_lossless_round_trip_is_exact(tmp_path, clip):
    path = encode_video(tmp_path / "a.mp4", clip, 16)
    out = decode_video(path)
    assert out.dtype == np.uint8 and out.shape == clip.shape
    assert np.array_equal(out, clip)
    assert not list(tmp_path.glob("*.tmp"))


def test_lossless_exact_on_noise_and_odd_size(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (4, 17, 23, 3), dtype=np.uint8)
    assert np.array_equal(decode_video(encode_video(tmp_path / "n.mp4", noise, 15.0)), noise)


def test_yuv444_is_near_exact_and_preview_plays(tmp_path, clip):
    out = decode_video(encode_video(tmp_path / "y.mp4", clip, 16, codec="yuv444"))
    assert np.abs(out.astype(int) - clip).max() <= 2
    prev = decode_video(encode_video(tmp_path / "p.mp4", clip, 16, codec="preview"))
    assert prev.shape == clip.shape and np.abs(prev.astype(float) - clip).mean() < 8  # lossy, chroma halved


def test_preview_needs_even_size(tmp_path, clip):
    with pytest.raises(ValueError, match="even"):
        encode_video(tmp_path / "odd.mp4", clip[:, :31], 16, codec="preview")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("fps", [16, 15.0, 29.97])
def test_seek_into_packed_episodes(tmp_path, fps):
    rng = np.random.default_rng(2)
    parts = [squares_video(rng, n, 32, 32)[0] for n in (7, 12, 9)]
    starts = [0, 7, 19]
    path = encode_video(tmp_path / "packed.mp4", np.concatenate(parts), fps, keyframes=starts)
    probe = probe_video(path)
    assert probe["keyframes"] == starts and probe["frames"] == 28
    for start, part in zip(starts, parts):
        assert np.array_equal(decode_video(path, start, len(part)), part)
    # a start between keyframes decodes forward from the previous one
    assert np.array_equal(decode_video(path, 10, 5), parts[1][3:8])
    assert np.array_equal(decode_video(path, 25), parts[2][6:])


def test_timestamps_are_frame_indices(tmp_path, clip):
    path = encode_video(tmp_path / "t.mp4", clip[:5], 29.97)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        times = [float(f.pts * s.time_base) for f in c.decode(s)]
    assert np.allclose(times, np.arange(5) / 29.97, atol=1e-6)


def test_bytes_round_trip(clip):
    data = encode_video_bytes(clip, 16, keyframes=(0, 10))
    assert np.array_equal(decode_video(data, 10, 10), clip[10:])


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        decode_video(tmp_path / "nope.mp4")


def test_truncated_file_names_it(tmp_path, clip):
    path = encode_video(tmp_path / "t.mp4", clip, 16)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="t.mp4"):
        decode_video(path)


def test_too_few_frames_names_file_and_range(tmp_path, clip):
    path = encode_video(tmp_path / "s.mp4", clip, 16)
    with pytest.raises(ValueError, match=r"s\.mp4.*\[15, 25\)"):
        decode_video(path, 15, 10)


def test_failed_encode_leaves_nothing(tmp_path, clip):
    with pytest.raises(ValueError):
        encode_video(tmp_path / "bad.mp4", clip.astype(np.float32), 16)
    path = encode_video(tmp_path / "keep.mp4", clip, 16)
    with pytest.raises(ValueError):  # a bad re-encode leaves the old file intact
        encode_video(path, clip[:, :31], 16, codec="preview")
    assert np.array_equal(decode_video(path), clip)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]


def test_decode_audio_reads_the_sound_track_resampled_or_none(tmp_path):
    from kinema.data.video_io import decode_audio, encode_video_with_audio

    frames = np.zeros((8, 16, 16, 3), np.uint8)
    t = np.arange(8000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)  # 0.5 s at 16 kHz
    clip = encode_video_with_audio(tmp_path / "a.mp4", frames, 16.0, tone)
    back = decode_audio(clip, 16000)
    assert abs(len(back) - len(tone)) <= 2048  # AAC frames pad the ends
    lag = int(np.argmax(np.correlate(back[:4000], tone[:2000], "valid")))
    assert np.corrcoef(back[lag : lag + 6000], tone[:6000])[0, 1] > 0.95
    at_8k = decode_audio(clip, 8000)
    assert abs(len(at_8k) - len(tone) // 2) <= 1024
    assert decode_audio(encode_video_with_audio(tmp_path / "silent.mp4", frames, 16.0, None), 16000) is None
    with pytest.raises(FileNotFoundError, match="does not exist"):
        decode_audio(tmp_path / "missing.mp4", 16000)
