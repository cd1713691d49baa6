"""The autoregressive world model (tiny preset, fp32): sequence layout, KV cache vs recomputation, the
reasoner-only MoT and its explicit mask, the chunked LM objective, checkpoints, the predictor, bad inputs."""

import numpy as np
import pytest
import torch

from kinema.model.ar_config import KIND, ARConfig, get_preset
from kinema.model.autoregressive import ARWorldModel, collate, load_model, sequence
from kinema.model.decoding import SamplingParams
from kinema.model.lm_loss import lm_loss
from kinema.model.mot import Cache, MoT, Router, attention_mask
from kinema.train.checkpoint import save_pretrained

GREEDY = SamplingParams(temperature=0)
V = 64000


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ARWorldModel(get_preset("tiny")).eval()


def codes(t, h=4, w=4, B=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (t, h, w) if B is None else (B, t, h, w), generator=g)


# ------------------------------------------------------------------ layout


def test_sequence_layout_positions_and_targets():
    cfg = get_preset("tiny")
    idx = codes(3)
    acts = torch.randn(9, 10)
    tok = sequence(cfg, idx, acts, domain=0, fps=16.0)
    # frame 0 (16 codes) | 4 action rows | frame 1 | 4 rows | frame 2
    assert len(tok) == 3 * 16 + 2 * 4
    assert tok.is_action.tolist() == [False] * 16 + [True] * 4 + [False] * 16 + [True] * 4 + [False] * 16
    code = ~tok.is_action
    assert torch.equal(tok.index[code], idx.reshape(-1))
    assert torch.equal(tok.action[tok.is_action][:, :10], acts[:8])  # rows 0..7 (row 8 would be frame 9)
    # codes: (latent frame, row, column) at 16 fps; action row r at video frame r + 1, a quarter per frame
    assert tok.pos[code][1].tolist() == [0.0, 0.0, 1.0] and tok.pos[code][16 + 5].tolist() == [1.0, 1.0, 1.0]
    assert tok.pos[tok.is_action][:, 0].tolist() == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    assert torch.equal(tok.group, torch.arange(len(tok)))
    # each token's target is the next token's code, -1 where the next token is an action (or the end)
    assert tok.target[15] == -1 and tok.target[19] == idx[1, 0, 0] and tok.target[0] == idx[0, 0, 1]
    assert tok.target[-1] == -1 and (tok.target >= 0).sum() == 3 * 16 - 1
    # at 8 fps one latent frame is twice the time
    assert sequence(cfg, idx, fps=8.0).pos[16, 0] == 2.0


def test_collate_pads_clips_of_different_lengths():
    cfg = get_preset("tiny")
    a, b = sequence(cfg, codes(3)), sequence(cfg, codes(3), torch.randn(9, 10))
    batch = collate([a, b])
    assert batch.index.shape == (2, 64) and batch.action.shape == (2, 64, cfg.max_action_dim)
    assert batch.valid[0].sum() == 48 and batch.valid[1].sum() == 56
    assert (batch.target[0, 48:] == -1).all() and torch.equal(batch.group[0], torch.arange(64))


# ------------------------------------------------------------------ the reasoner-only MoT


def test_reasoner_only_mot_has_no_generator_weights_and_refuses_generator_tokens():
    both, und = MoT(32, 2, 2, 64), MoT(32, 2, 2, 64, experts=("und",))
    names = [n for n, _ in und.named_parameters()]
    assert not any(".gen." in n or "norm_gen" in n for n in names)
    assert set(names) == {n for n, _ in both.named_parameters() if ".gen." not in n and "norm_gen" not in n}
    x, pos = torch.randn(1, 5, 32), torch.zeros(1, 5, 3)
    valid, group = torch.ones(1, 5, dtype=torch.bool), torch.arange(5)[None]
    gen = torch.zeros(1, 5, dtype=torch.bool)
    und(x, gen, group, valid, pos)  # all reasoner tokens: fine
    gen[0, 3] = True
    with pytest.raises(ValueError, match="1 tokens are marked for the generator expert"):
        und(x, gen, group, valid, pos)
    with pytest.raises(ValueError, match="generator expert"):
        Router(gen, experts=("und",))
    with pytest.raises(ValueError, match="experts"):
        MoT(32, 2, 2, 64, experts=("gen",))


def test_default_mot_keeps_its_parameter_names():
    names = [n for n, _ in MoT(32, 1, 2, 64).named_parameters()]
    assert "layers.0.gen.qkv.weight" in names and "norm_gen.weight" in names and "layers.0.und.qkv.weight" in names


def _mot_inputs(B=2, L=7, D=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, L, D, generator=g), torch.zeros(B, L, dtype=torch.bool), torch.arange(L).expand(B, L),
            torch.ones(B, L, dtype=torch.bool), torch.randn(B, L, 3, generator=g))


@torch.no_grad()
def test_explicit_mask_equals_the_group_mask_when_it_says_the_same():
    torch.manual_seed(0)
    mot = MoT(32, 2, 2, 64, experts=("und",)).eval()
    x, gen, group, valid, pos = _mot_inputs()
    ref, _ = mot(x, gen, group, valid, pos)
    causal = torch.ones(7, 7, dtype=torch.bool).tril()[None, None]
    assert torch.equal(causal, attention_mask(group, valid, group, valid)[:1])
    out, _ = mot(x, gen, group, valid, pos, attn_mask=causal)
    assert torch.allclose(out, ref, atol=1e-6)
    # against a cache: 4 cached tokens, 3 new ones
    _, cache = mot(x[:, :4], gen[:, :4], group[:, :4], valid[:, :4], pos[:, :4], keep_cache=True)
    want = torch.ones(7, 7, dtype=torch.bool).tril()[4:][None, None]  # [1, 1, 3, 4 + 3]
    out, _ = mot(x[:, 4:], gen[:, 4:], group[:, 4:], valid[:, 4:], pos[:, 4:], cache=cache, attn_mask=want)
    assert torch.allclose(out, ref[:, 4:], atol=1e-5)
    # a different pattern gives a different answer (the mask is really used)
    out, _ = mot(x, gen, group, valid, pos, attn_mask=torch.ones(1, 1, 7, 7, dtype=torch.bool))
    assert not torch.allclose(out[:, :-1], ref[:, :-1], atol=1e-3)
    with pytest.raises(ValueError, match=r"attn_mask: expected bool \[2 or 1, 1, 7, 7\]"):
        mot(x, gen, group, valid, pos, attn_mask=torch.ones(1, 7, 7, dtype=torch.bool))


@torch.no_grad()
def test_reserved_cache_extends_in_place_and_keep_moves_rows():
    torch.manual_seed(0)
    mot = MoT(32, 2, 2, 64, experts=("und",)).eval()
    x, gen, group, valid, pos = _mot_inputs(L=8)
    ref, full = mot(x, gen, group, valid, pos, keep_cache=True)
    _, c = mot(x[:, :3], gen[:, :3], group[:, :3], valid[:, :3], pos[:, :3], keep_cache=True)
    c = c.reserve(10)
    buf = c.layers[0].buf_k
    outs = []
    for i in range(3, 8):
        o, c = mot(x[:, i : i + 1], gen[:, :1], group[:, i : i + 1], valid[:, :1], pos[:, i : i + 1], cache=c,
                   keep_cache=True)
        outs.append(o)
    assert c.layers[0].buf_k is buf and c.layers[0].k.data_ptr() == buf.data_ptr()  # no copy of the past
    assert torch.allclose(torch.cat(outs, 1), ref[:, 3:], atol=1e-5)
    for a, b in zip(c.layers, full.layers):
        assert torch.allclose(a.k, b.k, atol=1e-5) and torch.allclose(a.v, b.v, atol=1e-5)
    kept = c.keep(3, torch.tensor([5, 7]))
    assert len(kept) == 5 and kept.group[0].tolist() == [0, 1, 2, 5, 7]
    assert torch.allclose(kept.layers[1].k[:, :, 3:], full.layers[1].k[:, :, [5, 7]], atol=1e-5)
    unreserved = Cache([type(lc)(lc.k.clone(), lc.v.clone()) for lc in full.layers], full.group, full.valid)
    assert torch.allclose(unreserved.keep(3, torch.tensor([5, 7])).layers[1].v, kept.layers[1].v, atol=1e-5)
    with pytest.raises(ValueError, match="extra: expected positions in"):
        c.keep(3, torch.tensor([2]))
    with pytest.raises(ValueError, match="capacity"):
        c.reserve(2)


# ------------------------------------------------------------------ decoding


@pytest.mark.parametrize("with_actions", [False, True])
def test_kv_cache_decoding_equals_full_recomputation(model, with_actions):
    ctx = codes(1, B=2, seed=1)
    acts = torch.randn(2, 12, 10) if with_actions else None
    a = model.generate(ctx, 3, actions=acts, params=GREEDY)
    b = model.generate(ctx, 3, actions=acts, params=GREEDY, cache=False)
    assert a.shape == (2, 3, 4, 4) and torch.equal(a[:, :1], ctx)
    assert torch.equal(a, b)
    assert not torch.equal(a[0, 1:], a[1, 1:])  # the two clips did not collapse into one


@torch.no_grad()
def test_cached_hidden_states_equal_the_full_forward(model):
    tok = sequence(model.config, codes(3, B=1, seed=2), torch.randn(1, 9, 10))
    full, _ = model(tok)
    h, cache = model(tok.slice(0, 20), keep_cache=True)
    cache = cache.reserve(len(tok))
    parts = [h]
    for a in range(20, len(tok), 7):
        h, cache = model(tok.slice(a, min(a + 7, len(tok))), cache=cache, keep_cache=True)
        parts.append(h)
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_sampling_with_a_seed_reproduces(model):
    ctx = codes(1, B=1, seed=3)
    p = SamplingParams(temperature=1.0, top_p=0.8, seed=5)
    a, b = model.generate(ctx, 2, params=p), model.generate(ctx, 2, params=p)
    c = model.generate(ctx, 2, params=SamplingParams(temperature=1.0, top_p=0.8, seed=6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a, model.generate(ctx, 2, params=p, cache=False))  # the same draws without the cache


# ------------------------------------------------------------------ objective


def test_chunked_objective_equals_one_lm_loss_and_its_gradient():
    torch.manual_seed(0)
    m = ARWorldModel(get_preset("tiny"))
    tok = collate([sequence(m.config, codes(2, seed=4)), sequence(m.config, codes(3, seed=5), torch.randn(9, 10))])
    h, _ = m(tok)
    loss, met = m.lm_objective(h, tok.target, chunk=13)
    grads = torch.autograd.grad(loss, [m.head.proj.weight, m.backbone.layers[0].und.qkv.weight])
    h, _ = m(tok)
    sel = tok.target >= 0
    ref, rm = lm_loss(m.logits(h[sel]), tok.target[sel], m.config.z_weight)
    ref_grads = torch.autograd.grad(ref, [m.head.proj.weight, m.backbone.layers[0].und.qkv.weight])
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    assert met["ce"] == pytest.approx(rm["ce"], rel=1e-5) and met["z"] == pytest.approx(rm["z"], rel=1e-5)
    for g, r in zip(grads, ref_grads):
        assert torch.allclose(g, r, atol=1e-6, rtol=1e-4)
    assert met["ce"] == pytest.approx(np.log(V), abs=0.1)  # a fresh model knows nothing


def test_a_few_steps_learn_one_clip():
    torch.manual_seed(0)
    m = ARWorldModel(get_preset("tiny"))
    tok = collate([sequence(m.config, codes(2, seed=6))])
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        h, _ = m(tok)
        loss, _ = m.lm_objective(h, tok.target)
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first - 2.0


def test_output_head_weight_is_cached_only_while_weights_stand_still(model):
    with torch.no_grad():
        w1 = model.head.weight(model.codebook)
        assert model.head.weight(model.codebook) is w1
        p = model.head.code_mlp[0].bias
        p.add_(1.0)
        w2 = model.head.weight(model.codebook)
        p.sub_(1.0)
    assert w2 is not w1 and not torch.allclose(w1, w2)
    assert w1.shape == (V, model.config.head_rank)


# ------------------------------------------------------------------ checkpoints and inputs


def test_code_grid_is_the_fsq_codebook(model):
    from kinema.nn.fsq import FSQ

    assert torch.equal(model.codebook, FSQ(model.config.fsq_levels).indices_to_codes(torch.arange(V)))


def test_config_presets_and_size():
    for name in ("tiny", "small", "base"):
        cfg = get_preset(name)
        assert ARConfig.from_dict(cfg.to_dict()) == cfg and cfg.vocab_size == V
    with torch.device("meta"):
        small = ARWorldModel(get_preset("small", medusa_heads=5))
    n = small.num_parameters()
    assert 4e6 < n < 7.5e6, n  # a few million: 2 bytes each stays under 15 MB
    with pytest.raises(ValueError, match="unknown autoregressive"):
        get_preset("huge")


def test_save_load_round_trip(tmp_path, model):
    path = tmp_path / "ar"
    save_pretrained(path, model.state_dict(), {"kind": KIND, "model": model.config.to_dict()})
    loaded = load_model(path)
    assert loaded.config == model.config
    ctx = codes(1, B=1, seed=7)
    assert torch.equal(loaded.generate(ctx, 2, params=GREEDY), model.generate(ctx, 2, params=GREEDY))
    save_pretrained(tmp_path / "bf16", model.state_dict(), {"kind": KIND, "model": model.config.to_dict()},
                    dtype=torch.bfloat16)
    assert load_model(tmp_path / "bf16").head.bias.dtype == torch.float32
    save_pretrained(tmp_path / "other", model.state_dict(), {"kind": "world_model", "model": {}})
    with pytest.raises(ValueError, match="expected 'ar_world_model'"):
        load_model(tmp_path / "other")


def test_bad_inputs_get_clear_errors(model):
    cfg = model.config
    with pytest.raises(ValueError, match=r"FSQ indices must lie in \[0, 64000\), got \[0, 64000\]"):
        model.generate(torch.full((1, 1, 4, 4), 64000).index_fill(3, torch.tensor([0]), 0), 2)
    with pytest.raises(ValueError, match=r"context: expected \[B, t, h, w\]"):
        model.generate(codes(1), 2)
    with pytest.raises(ValueError, match="integer tensor"):
        model.generate(codes(1, B=1).float(), 2)
    with pytest.raises(ValueError, match="more than the 2 given latent frames"):
        model.generate(codes(2, B=1), 2)
    with pytest.raises(ValueError, match="at least 8 rows"):
        model.generate(codes(1, B=1), 3, actions=torch.randn(1, 5, 10))
    with pytest.raises(ValueError, match="at most 16 numbers"):
        sequence(cfg, codes(2), torch.randn(4, 17))
    with pytest.raises(ValueError, match="domain"):
        sequence(cfg, codes(2), torch.randn(4, 10), domain=9)
    with pytest.raises(ValueError, match="no scored token"):
        model.lm_objective(torch.zeros(1, 3, cfg.width), torch.full((1, 3), -1))


# ------------------------------------------------------------------ the predictor


@pytest.fixture(scope="module")
def saved_ar(tmp_path_factory, model):
    from kinema.tokenize import video

    root = tmp_path_factory.mktemp("ar")
    torch.manual_seed(0)
    vt = video.VideoTokenizer(video.get_preset("dv4x8x8-tiny"))
    save_pretrained(root / "tok-dv", vt.state_dict(), {"kind": video.KIND, "model": vt.cfg.to_dict()})
    cfg = ARConfig.from_dict({**model.config.to_dict(), "video_tokenizer": "tok-dv"})
    save_pretrained(root / "ar", model.state_dict(), {"kind": KIND, "model": cfg.to_dict()})
    return root / "ar"


def test_predictor_through_the_registry_rolls_out_past_one_window(saved_ar):
    from kinema.eval.predictor import PredictionRequest, get_predictor, predict_checked

    pred = get_predictor(str(saved_ar), device="cpu", temperature=0.0, max_context=5)
    assert type(pred).__name__ == "ARWorldModelPredictor" and not pred.uses_oracle
    pred.seed = 3  # eval actions --samples draws seeds through this attribute
    assert pred.params.seed == 3 and pred.seed == 3
    rng = np.random.default_rng(0)
    ctx = rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    pred.model.config.clip_frames = 9  # a short window so the rollout needs two of them (tiny and fast)
    try:
        out = predict_checked(pred, PredictionRequest(context=ctx, num_frames=10, fps=16.0, camera="front"))
        assert out.shape == (10, 32, 32, 3) and out.dtype == np.uint8
        acts = rng.normal(size=(16, 10)).astype(np.float32)
        req = PredictionRequest(context=ctx, num_frames=10, fps=16.0, camera="front", actions=acts,
                                action_names=pred.model.config.embodiments[0].action_names)
        with_actions = predict_checked(pred, req)
        assert with_actions.shape == (10, 32, 32, 3)
    finally:
        pred.model.config.clip_frames = 33


def test_predictor_carries_the_last_given_frames_detail_as_the_diffusion_models_does(saved_ar):
    from kinema.eval.predictor import PredictionRequest, get_predictor
    from kinema.model.carry import carry_detail

    ctx = np.random.default_rng(1).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    req = PredictionRequest(context=ctx, num_frames=4, fps=16.0, camera="front")
    on, off = (get_predictor(str(saved_ar), device="cpu", temperature=0.0, carry=c) for c in (True, False))
    assert (on.name, off.name, on.sampling, off.sampling) == ("ar_world_model_t0_carry", "ar_world_model_t0_nocarry",
                                                              {"carry": True}, None)
    plain = off.predict(req)
    last = off._decode(off._encode(ctx), 5)[-1]  # the last given frame's round trip (greedy: the same codes)
    made = on.predict(req)
    assert np.array_equal(made, np.clip(plain.astype(int) + ctx[-1].astype(int) - last, 0, 255))
    fed = PredictionRequest(context=np.concatenate([ctx, made]), given=5, num_frames=4, fps=16.0, camera="front")
    assert np.array_equal(on.predict(fed), carry_detail(off.predict(fed), ctx[-1], last))


def test_predictor_refuses_medusa_without_heads(saved_ar):
    from kinema.model.ar_predictor import load_predictor

    with pytest.raises(ValueError, match="no Medusa heads"):
        load_predictor(saved_ar, device="cpu", temperature=0.0, medusa=True)
    with pytest.raises(ValueError, match="greedy"):
        load_predictor(saved_ar, device="cpu", medusa=True, temperature=0.7)  # left at its default it becomes 0


def test_fused_head_loss_under_bf16_and_its_checks():
    from kinema.model.lm_head_loss import head_lm_loss

    g = torch.Generator().manual_seed(0)
    u, W, b = torch.randn(50, 16, generator=g), torch.randn(V, 16, generator=g) * 0.1, torch.randn(V, generator=g)
    t = torch.randint(0, V, (50,), generator=g)
    ref, rm = lm_loss(u @ W.T + b, t)
    ub = u.bfloat16().requires_grad_()
    loss, m = head_lm_loss(ub, W, b, t, chunk=7)
    loss.backward()
    assert ub.grad.dtype == torch.bfloat16 and float(loss.detach()) == pytest.approx(float(ref), rel=1e-2)
    assert m["ce"] == pytest.approx(rm["ce"], rel=1e-2)
    with pytest.raises(ValueError, match=r"target: expected indices in \[0, 64000\)"):
        head_lm_loss(u, W, b, torch.full((50,), V))
    with pytest.raises(ValueError, match="expected u"):
        head_lm_loss(u, W[:, :8], b, t)
