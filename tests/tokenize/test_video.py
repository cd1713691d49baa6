import pytest
import torch

from kinema.tokenize.video import PRESETS, VideoTokenizer, VideoTokenizerConfig, get_preset

COMPRESSIONS = [("4x8x8", 4, 8), ("8x8x8", 8, 8), ("8x16x16", 8, 16)]


def model(name: str) -> VideoTokenizer:
    torch.manual_seed(0)
    return VideoTokenizer(get_preset(name)).eval()


def video(T=17, H=32, W=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, T, H, W, generator=g) * 2 - 1


@pytest.mark.parametrize("kind", ["cv", "dv"])
@pytest.mark.parametrize("comp,tf,sf", COMPRESSIONS)
def test_shapes_for_every_compression(kind, comp, tf, sf):
    m = model(f"{kind}{comp}-tiny")
    x = video(17, 32, 32)
    out = m.encode(x)
    t, h, w = 1 + 16 // tf, 32 // sf, 32 // sf
    if kind == "cv":
        assert out.shape == (1, 16, t, h, w)
    else:
        indices, codes = out
        assert indices.shape == (1, t, h, w) and indices.dtype == torch.int64
        assert codes.shape == (1, 6, t, h, w)
        assert torch.equal(m.fsq.indices_to_codes(indices), codes)
        assert torch.equal(m.decode(indices), m.decode(codes))
        out = codes
    y = m.decode(out)
    assert y.shape == x.shape and y.abs().max() <= 1


@pytest.mark.parametrize("name", ["cv4x8x8-tiny", "dv8x8x8-tiny", "cv8x16x16-tiny"])
def test_causality_later_frames_never_change_earlier_latents(name):
    m = model(name)
    tf = m.cfg.temporal_compression
    x = video(33)
    for t in (1, 9, 20, 32):
        x2 = x.clone()
        x2[:, :, t] = -x2[:, :, t]
        first_affected = -(-t // tf)  # latent j covers frames (j-1)*tf+1 .. j*tf
        a, b = m.encode(x), m.encode(x2)
        if m.cfg.discrete:  # the indices of earlier latents are unchanged too
            assert torch.equal(a[0][:, :first_affected], b[0][:, :first_affected])
        a, b = m.encode_window(x), m.encode_window(x2)  # the bottleneck before quantization
        assert torch.allclose(a[:, :, :first_affected], b[:, :, :first_affected], atol=1e-6), t
        assert not torch.allclose(a[:, :, first_affected:], b[:, :, first_affected:], atol=1e-4), t


def test_decoder_is_causal_too():
    m = model("cv4x8x8-tiny")
    z = m.encode(video(17))
    z2 = z.clone()
    z2[:, :, 3] += 1.0  # latent 3 covers frames 9..12
    a, b = m.decode(z), m.decode(z2)
    assert torch.allclose(a[:, :, :9], b[:, :, :9], atol=1e-6)
    assert not torch.allclose(a[:, :, 9:13], b[:, :, 9:13], atol=1e-4)


@pytest.mark.parametrize("name", ["cv4x8x8-tiny", "dv4x8x8-tiny"])
def test_image_path_equals_video_path_on_one_frame(name):
    m = model(name)
    x = video(17)
    img = m.encode_image(x[:, :, 0])
    vid = m.encode(x)
    if m.cfg.discrete:
        assert torch.equal(img[0], vid[0][:, :1])
        img, vid = img[1], vid[1]
    assert img.shape[2] == 1
    assert torch.allclose(img, vid[:, :, :1], atol=1e-6)
    assert m.decode_image(img).shape == (1, 3, 32, 32)


def test_odd_lengths_are_padded_and_cropped_back_and_long_videos_windowed():
    cfg = get_preset("cv4x8x8-tiny")
    cfg.window = 9
    m = VideoTokenizer(cfg).eval()
    x = video(22)  # 22 = not 1 + 4k: padded to 25 -> windows of 9, 9, 7 (-> 9)
    z = m.encode(x)
    assert z.shape[2] == 3 + 3 + 3
    assert m.decode(z, num_frames=22).shape == x.shape
    # windows are independent: the first window's latents equal encoding it alone
    assert torch.allclose(z[:, :, :3], m.encode(x[:, :, :9]), atol=1e-6)


LENGTHS = [1, 2, 3, 5, 8, 9, 10, 17, 18, 33, 34, 37, 41, 42, 65, 66, 70, 100]


@pytest.mark.parametrize("name,window", [("cv4x8x8-tiny", 33), ("cv4x8x8-tiny", 9), ("dv8x16x16-tiny", 17)])
def test_latent_frames_counts_what_encode_makes_for_every_length(name, window):
    cfg = get_preset(name)
    cfg.window = window
    torch.manual_seed(0)
    m = VideoTokenizer(cfg).eval()
    x = video(max(LENGTHS), 16, 16)
    for T in LENGTHS:
        z = m.encode(x[:, :, :T])
        t = (z[0] if cfg.discrete else z).shape[-3]  # CV [B, Z, t, h, w]; DV indices [B, t, h, w]
        assert t == m.latent_frames(T), (T, window)
        assert m.decode(z, num_frames=T).shape == (1, 3, T, 16, 16), (T, window)
    assert m.latent_frames(window) == 1 + (window - 1) // cfg.temporal_compression  # decode's latents per window
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        m.latent_frames(0)


def test_bad_inputs_get_clear_errors():
    m = model("cv4x8x8-tiny")
    with pytest.raises(ValueError, match=r"\[B, 3, T, H, W\]"):
        m.encode(torch.zeros(3, 17, 32, 32))
    with pytest.raises(ValueError, match="uint8"):
        m.encode(torch.zeros(1, 3, 17, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        m.encode(torch.full((1, 3, 17, 32, 32), 255.0))
    with pytest.raises(ValueError, match="multiples of 8"):
        m.encode(torch.zeros(1, 3, 17, 30, 32))
    with pytest.raises(ValueError, match="latent must be"):
        m.decode(torch.zeros(1, 6, 3, 4, 4))
    with pytest.raises(ValueError, match="unknown video tokenizer preset"):
        get_preset("cv4x4x4-huge")
    with pytest.raises(ValueError, match="power of two"):
        VideoTokenizerConfig(spatial_compression=12)
    with pytest.raises(ValueError, match="unknown VideoTokenizerConfig keys"):
        VideoTokenizerConfig.from_dict({"chanels": 8})


def test_non_finite_and_empty_videos_get_clear_errors():
    m = model("cv4x8x8-tiny")
    for bad in (float("nan"), float("inf"), -float("inf")):  # NaN slips past a min/max range check
        x = torch.zeros(1, 3, 17, 32, 32)
        x[0, 1, 5, 3, 4] = bad
        with pytest.raises(ValueError, match="1 NaN or infinite values"):
            m.encode(x)
    for shape in ((1, 3, 0, 32, 32), (0, 3, 17, 32, 32)):  # no frames, no clips
        with pytest.raises(ValueError, match="video is empty"):
            m.encode(torch.zeros(shape))
    with pytest.raises(ValueError, match="video is empty"):
        m.encode_image(torch.zeros(0, 3, 32, 32))


@pytest.mark.parametrize("field", ["wavelet", "wavelet_rescale"])
def test_the_ablations_have_the_same_parameter_count(field):
    a = VideoTokenizer(get_preset("cv4x8x8-small"))
    cfg = get_preset("cv4x8x8-small")
    setattr(cfg, field, False)
    b = VideoTokenizer(cfg)
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())
    x = video(9, 16, 16).double()
    assert torch.allclose(b.patcher.unpatch(b.patcher.patch(x)), x, atol=1e-12)
    # both ablations keep the blocks' energy (the first frame counted 4 times); Cosmos' patcher divides it by 64
    energy = (x**2).sum() + 3 * (x[:, :, :1] ** 2).sum()
    assert torch.allclose((b.patcher.patch(x) ** 2).sum(), energy)
    assert torch.allclose((a.patcher.patch(x) ** 2).sum() * 64, energy)


def test_published_configuration_size():
    m = VideoTokenizer(PRESETS["cv4x8x8-cosmos"])
    n = sum(p.numel() for p in m.parameters())
    assert 80e6 < n < 120e6  # Cosmos reports 105M for CV4x8x8 (90M in another count)


def test_tiny_forward_backward_learns():
    torch.manual_seed(0)
    m = VideoTokenizer(get_preset("dv4x8x8-tiny"))
    opt = torch.optim.AdamW(m.parameters(), 3e-3)
    x = video(9, 16, 16)
    losses = []
    for _ in range(10):
        y, _ = m(x)
        loss = (y - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_whitening_gives_every_band_unit_rms_and_keeps_the_parameter_count():
    from kinema.tokenize.video import PATCH_CHANNELS, fit_band_rms

    torch.manual_seed(0)
    clips = torch.cat([video(9, 16, 16, seed=s) for s in range(4)])
    cfg = get_preset("cv4x8x8-tiny")
    cfg.band_rms = fit_band_rms(cfg, clips)
    assert len(cfg.band_rms) == PATCH_CHANNELS
    plain = VideoTokenizer(get_preset("cv4x8x8-tiny"))
    for whiten in ("encoder", "both"):
        cfg.whiten = whiten
        m = VideoTokenizer(VideoTokenizerConfig.from_dict(cfg.to_dict()))  # the JSON round trip keeps the divisors
        assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in plain.parameters())
        rms = (m.patcher.patch(clips) / m.band_scale).square().mean(dim=(0, 2, 3, 4)).sqrt()
        assert torch.allclose(rms, torch.ones(PATCH_CHANNELS), rtol=1e-4)
    # the encoder of a whitened model is the plain encoder reading rescaled patches; "both" rescales the output too
    m.load_state_dict(plain.state_dict())
    with torch.no_grad():
        y = m.patcher.patch(clips)
        assert torch.allclose(m.encode_window(clips), plain.encoder(y / m.band_scale), atol=1e-5)
        z = torch.randn(1, cfg.latent_channels, 3, 2, 2)
        assert torch.allclose(m.decode_window(z), m.patcher.unpatch(plain.decoder(z) * m.band_scale), atol=1e-5)
    with pytest.raises(ValueError, match="band_rms"):
        VideoTokenizerConfig(whiten="encoder")
    with pytest.raises(ValueError, match="whiten must be one of"):
        VideoTokenizerConfig(whiten="pca")
