"""The MoT backbone and the world model: context never sees noise, the K/V cache is exact, experts get the
gradients their tokens give."""

from dataclasses import replace

import pytest
import torch

from kinema.model.sequence import ACTION, AUDIO, VISION, build, collate
from tests.model.helpers import grads, mixed_sample, tiny_config, tiny_model

CFG = tiny_config()


@pytest.fixture(scope="module")
def model():
    return tiny_model(CFG)


def _hidden(model, tok, level):
    h, _ = model.backbone(model.embed(tok, level), tok.gen, tok.group, tok.valid, tok.pos)
    return h


def _batch():
    """Three samples of different lengths: text + vision (clean and noisy) + noisy audio + actions; a shorter one;
    and one whose clean tokens come after noisy ones in time (all frames and the audio given, actions generated)."""
    a = mixed_sample(CFG, n_text=5, t=3, vision_gen=(False, True, True), seed=1)
    b = mixed_sample(CFG, n_text=2, t=2, vision_gen=(False, True), audio=False, seed=2, grid=(2, 4))
    c = mixed_sample(CFG, n_text=3, t=3, vision_gen=(False, False, False), audio_gen=False, action_gen=[True] * 8,
                     seed=3)
    assert len({len(a), len(b), len(c)}) == 3
    return [a, b, c]


@torch.no_grad()
def test_noisy_values_do_not_change_context_hidden_states(model):
    batch = collate(_batch())
    level = torch.full(batch.kind.shape, 0.7)
    h = _hidden(model, batch, level)
    g = torch.Generator().manual_seed(5)
    other = torch.where(batch.gen[..., None], torch.randn(batch.value.shape, generator=g) * 3, batch.value)
    h2 = _hidden(model, replace(batch, value=other), torch.full(batch.kind.shape, 0.2))
    ctx = ~batch.gen & batch.valid
    assert torch.allclose(h[ctx], h2[ctx], atol=1e-6, rtol=0)
    assert (h[batch.gen] - h2[batch.gen]).abs().max() > 1e-2  # the noisy tokens did change
    # ... while changing the context changes the noisy tokens' states (they do attend it)
    ctx_values = torch.where((~batch.gen)[..., None], batch.value + 1.0, batch.value)
    h3 = _hidden(model, replace(batch, value=ctx_values), level)
    assert (h[batch.gen] - h3[batch.gen]).abs().max() > 1e-3


@torch.no_grad()
def test_cached_context_gives_the_full_sequence_outputs(model):
    samples = _batch()
    full = collate(samples, multiple=1)
    level = torch.full(full.kind.shape, 0.6)
    out_full = model(full, level)
    ctx = collate([s.select(~s.gen) for s in samples])
    noisy = collate([s.select(s.gen) for s in samples])
    cache = model.encode_context(ctx)
    assert len(cache.layers) == CFG.depth and cache.layers[0].k.shape[2] == ctx.kind.shape[1]
    out_cached = model(noisy, torch.full(noisy.kind.shape, 0.6), cache=cache)
    for b, s in enumerate(samples):
        want = out_full[b, : len(s)][s.gen]
        got = out_cached[b, : int(s.gen.sum())]
        assert want.abs().max() > 1e-2  # the heads are live: the comparison means something
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (b, (got - want).abs().max())
    # without the cache the noisy tokens alone give something else (the context matters)
    alone = model(noisy, torch.full(noisy.kind.shape, 0.6))
    assert not torch.allclose(alone[0, : int(samples[0].gen.sum())], out_full[0][samples[0].gen], atol=1e-3)
    with pytest.raises(ValueError, match="clean context tokens only"):
        model.encode_context(full)


def test_gradients_reach_both_experts(model):
    model.zero_grad()
    batch = collate(_batch())
    out = model(batch, torch.full(batch.kind.shape, 0.5))
    (out[batch.gen] ** 2).sum().backward()
    gn = grads(model)
    last = CFG.depth - 1
    for i in range(CFG.depth):
        gen = {n: v for n, v in gn.items() if n.startswith(f"backbone.layers.{i}.gen.")}
        und = {n: v for n, v in gn.items() if n.startswith(f"backbone.layers.{i}.und.")}
        assert gen and all(v > 0 for v in gen.values()), gen
        assert gn[f"backbone.layers.{i}.und.qkv.weight"] > 0  # context K/V feed the noisy tokens at every layer
        if i < last:
            assert all(v > 0 for v in und.values()), und
        else:  # the context's last-layer outputs reach no noisy token
            for n in ("proj.weight", "mlp.gate_up.weight", "mlp.down.weight", "norm2.weight"):
                assert und[f"backbone.layers.{i}.und.{n}"] == 0, n
    assert gn["backbone.norm_und.weight"] == 0 and gn["backbone.norm_gen.weight"] > 0
    assert gn["text_embed.weight"] > 0 and gn["vision_in.weight"] > 0 and gn["action_in.weight"] > 0
    assert gn["vision_out.weight"] > 0 and gn["audio_out.weight"] > 0 and gn["action_out.weight"] > 0
    model.zero_grad()


def test_only_noisy_vision_gives_no_action_head_gradient(model):
    model.zero_grad()
    tok = mixed_sample(CFG, t=3, vision_gen=(False, True, True), audio=False, action_gen=[False] * 8)
    assert not tok.gen[tok.kind == ACTION].any() and tok.gen[tok.kind == VISION].any()
    batch = collate([tok])
    out = model(batch, torch.full(batch.kind.shape, 0.5))
    (out[batch.gen] ** 2).sum().backward()
    gn = grads(model)
    assert gn["action_out.weight"] == 0 and gn["action_out.bias"] == 0 and gn["audio_out.weight"] == 0
    assert gn["action_in.weight"] > 0  # the given actions are context
    assert all(v > 0 for n, v in gn.items() if ".gen." in n)
    model.zero_grad()


def test_all_noisy_sample_without_context_leaves_the_reasoner_alone(model):
    model.zero_grad()
    tok = build(CFG, vision=torch.randn(CFG.latent_channels, 2, 4, 4), vision_gen=[True, True],
                audio=torch.randn(CFG.audio_channels, 6), audio_gen=True)
    assert tok.gen.all()
    batch = collate([tok])
    out = model(batch, torch.full(batch.kind.shape, 0.5))
    (out ** 2).sum().backward()
    und = {n: p.grad for n, p in model.named_parameters() if ".und." in n or "norm_und" in n}
    assert und and all(g is None or not g.any() for g in und.values())
    assert model.text_embed.weight.grad is None or not model.text_embed.weight.grad.any()
    assert all(v > 0 for n, v in grads(model).items() if ".gen." in n)
    model.zero_grad()


def test_domain_layers_route_each_embodiment_to_its_slot(model):
    """Action tokens of embodiment s use slot s of the action layers only."""
    model.zero_grad()
    tok = mixed_sample(CFG, t=2, vision_gen=(False, True), audio=False, domain=2, action_gen=[True] * 4)
    assert (tok.domain[tok.kind == ACTION] == 2).all() and tok.dims[tok.kind == ACTION][0] == 3
    batch = collate([tok])
    out = model(batch, torch.full(batch.kind.shape, 0.5))
    out[batch.gen & (batch.kind == ACTION)].sum().backward()
    w_in, w_out = model.action_in.weight.grad, model.action_out.weight.grad
    assert w_out[2].abs().sum() > 0 and w_out[[0, 1, 3]].abs().sum() == 0
    assert w_in[2].abs().sum() > 0 and w_in[[0, 1, 3]].abs().sum() == 0
    model.zero_grad()


def test_given_frame_input_reaches_noisy_vision_only(model):
    tok = mixed_sample(CFG, n_text=3, t=3, vision_gen=(False, True, True), seed=4)
    assert tok.cond[tok.gen & (tok.kind == VISION)].abs().sum() > 0
    other = replace(tok, cond=tok.cond + torch.randn(tok.cond.shape))
    batches = [collate([x]) for x in (tok, other)]
    level = torch.full(batches[0].kind.shape, 0.5)
    n = len(tok)
    with torch.no_grad():
        a, b = (model(x, level)[0, :n] for x in batches)
        ha, hb = (_hidden(model, x, level)[0, :n] for x in batches)
    noisy_vision = tok.gen & (tok.kind == VISION)
    assert not torch.allclose(a[noisy_vision], b[noisy_vision])
    assert torch.equal(ha[~tok.gen], hb[~tok.gen])  # context never reads it


def test_a_config_without_frame_condition_has_no_frame_input():
    from kinema.model.world_model import WorldModel

    old = WorldModel(replace(CFG, frame_condition=False))
    assert old.frame_in is None and not any(k.startswith("frame_in.") for k in old.state_dict())
    assert WorldModel(CFG).frame_in is not None


@torch.no_grad()
def test_reasoner_parameters_are_all_that_context_hidden_states_read():
    """--freeze-reasoner's promise: perturbing every other parameter leaves context tokens (what the reasoner
    answers from) exactly as they were; perturbing a reasoner parameter does not."""
    m = tiny_model(CFG)
    fd = mixed_sample(CFG, t=3, vision_gen=(False, True, True), action_gen=[False] * 8, seed=4)  # clean actions
    batch = collate([*_batch(), fd])
    level = torch.full(batch.kind.shape, 0.7)
    context = batch.valid & ~batch.gen
    assert (context & (batch.kind == ACTION)).any() and (context & (batch.kind == AUDIO)).any()
    before = _hidden(m, batch, level)[context]
    reasoner = {n for n, _ in m.reasoner_parameters()}
    assert any(".und." in n for n in reasoner) and not any(".gen." in n for n in reasoner)
    for name, p in m.named_parameters():
        if name not in reasoner:
            p.add_(torch.randn_like(p))
    h = _hidden(m, batch, level)
    assert torch.equal(h[context], before) and not torch.allclose(h[batch.gen], _hidden(tiny_model(CFG), batch, level)[batch.gen])
    dict(m.named_parameters())["backbone.layers.0.und.qkv.weight"].add_(0.1)
    assert not torch.allclose(_hidden(m, batch, level)[context], before)


@torch.no_grad()
def test_reason_adapter_moves_questions_only():
    """--reason-adapter's promise: changing the adapter (and text head) leaves every generator output and every
    non-question context state bit for bit as they were, while a question's answer logits move; an adapter
    at its zero start changes nothing at all."""
    cfg = replace(CFG, reason_adapter=4)
    m = tiny_model(cfg)
    base = tiny_model(CFG)
    missing, unexpected = base.load_state_dict(m.state_dict(), strict=False)
    assert not missing and unexpected and all(".lora." in k for k in unexpected)
    batch = collate(_batch())
    level = torch.full(batch.kind.shape, 0.7)
    q = collate([mixed_sample(cfg, n_text=4, t=2, vision_gen=(False, False), audio=False, rows=0, seed=9)], multiple=1)
    at = torch.zeros_like(q.valid)
    at[0, -3:] = True  # the last text tokens are scored: a question
    question = lambda mm: mm(q, torch.zeros(q.kind.shape), text_at=at)[1]
    assert torch.equal(m(batch, level), base(batch, level))  # B = 0: the adapted model starts as the base one
    assert torch.equal(question(m), question(base))
    adapter = {n for n, _ in m.adapter_parameters()}
    assert any(".lora." in n for n in adapter) and "text_out.weight" in adapter
    before_gen, before_q = m(batch, level), question(m)
    for name, p in m.named_parameters():
        if name in adapter:
            p.add_(torch.randn_like(p) * 0.1)
    assert torch.equal(m(batch, level), before_gen)
    ctx = collate([s.select(~s.gen) for s in _batch()])
    for a, b in zip(m.encode_context(ctx).layers, base.encode_context(ctx).layers):  # what the generator reads
        assert torch.equal(a.k, b.k) and torch.equal(a.v, b.v)
    assert not torch.allclose(question(m), before_q)
    # a question's logits through forward are those of reason() over the same tokens (both take the adapter)
    assert torch.allclose(question(m)[-1], m.reason(q)[0][0], atol=1e-5)
    assert not torch.allclose(question(m)[-1], base.reason(q)[0][0], atol=1e-3)


@torch.no_grad()
def test_a_world_with_a_reasoner_adapter_of_its_own_leaves_the_other_worlds_bit_for_bit():
    """config.reason_own: questions marked with an own world (tok.world, sequence.for_world) take its adapter
    (site lora_seesaw, an update on top of the shared one), every other question the shared one alone; moving the
    own site's weights moves only its questions' answers (through forward with scored text and through reason(),
    cached or not), and neither site moves a generator output."""
    from kinema.model.reasoner import _cat, _text_token
    from kinema.model.sequence import for_world

    cfg = replace(CFG, reason_adapter=4, reason_own=("seesaw",), reason_own_rank=2)
    assert cfg.reason_sites == ("lora", "lora_seesaw") and cfg.reason_slot("seesaw") == 1 and cfg.reason_slot("x") == 0
    m = tiny_model(cfg)
    for _, p in m.adapter_parameters():
        p.normal_(0, 0.3)
    for _, p in m.reason_own_parameters(("seesaw",)):
        p.normal_(0, 0.3)
    assert {n.split(".")[4] for n, _ in m.reason_own_parameters(("seesaw",))} == {"lora_seesaw"}
    qs = [for_world(cfg, mixed_sample(cfg, n_text=4, t=2, vision_gen=(False, False), audio=False, rows=0, seed=s), w)
          for s, w in ((9, "seesaw"), (10, "dominoes"), (11, None))]
    assert [int(q.world.max()) for q in qs] == [1, 0, 0]
    batch = collate(_batch())
    level = torch.full(batch.kind.shape, 0.7)

    def answers():
        out = []
        for q in qs:
            one = collate([q], multiple=1)
            at = torch.zeros_like(one.valid)
            at[0, -3:] = True
            full = m(one, torch.zeros(one.kind.shape), text_at=at)[1]
            assert torch.allclose(full[-1], m.reason(one)[0][0], atol=1e-5)  # forward and reason take one adapter
            nxt = _text_token(cfg, 3, float(q.pos.max()) + 1, int(q.group.max()) + 1, int(q.world.max()))
            cached = m.reason(collate([nxt], multiple=1), m.reason(one)[1])[0]
            assert torch.allclose(cached, m.reason(collate([_cat(q, nxt)], multiple=1))[0], atol=1e-5)  # one adapter
            out.append(full)
        return out

    before, gen = answers(), m(batch, level)
    for site, moved in (("lora_seesaw", [True, False, False]), ("lora", [True, True, True])):  # own: on top of shared
        for name, p in m.named_parameters():
            if f".{site}." in name:
                p.add_(0.2)
        after = answers()
        assert [not torch.equal(a, b) for a, b in zip(after, before)] == moved, site
        assert torch.equal(m(batch, level), gen)  # the generator never reads a question adapter
        before = after
    with pytest.raises(ValueError, match="give reason_adapter too"):
        replace(CFG, reason_own=("seesaw",))
    with pytest.raises(ValueError, match="distinct world names"):
        replace(CFG, reason_adapter=4, reason_own=("seesaw", "seesaw"))


@torch.no_grad()
def test_inverse_context_adapter_gives_inverse_dynamics_a_context_of_its_own():
    """config.inverse_context: an inverse-dynamics sample's clean tokens run the reasoner through an adapter of its
    own, so its context cache is its own: cached sampling equals the full sequence when the cache is made with the
    same samples marked, and differs when it is not; every other sample's context is the base model's."""
    cfg = replace(CFG, inverse_adapter=4, inverse_context=4)
    m, base = tiny_model(cfg), tiny_model(CFG)
    m.load_state_dict(base.state_dict(), strict=False)
    names = {n for n, _ in m.inverse_parameters()}
    assert any(".und.inverse." in n for n in names) and any(".gen.inverse." in n for n in names)
    for _, p in m.inverse_parameters():
        p.normal_(0, 0.3)
    samples = _batch()
    full = collate(samples, multiple=1)
    ctx = collate([s.select(~s.gen) for s in samples])
    noisy = collate([s.select(s.gen) for s in samples])
    inverse = m.inverse_samples(noisy)
    assert list(inverse) == ["inverse"]  # one site: no embodiment has adapters of its own
    assert inverse["inverse"][:, 0].tolist() == [False, False, True]  # the third generates actions and nothing else
    out_full = m(full, torch.full(full.kind.shape, 0.6))
    level = torch.full(noisy.kind.shape, 0.6)
    out_cached = m(noisy, level, cache=m.encode_context(ctx, inverse=inverse))
    out_unmarked = m(noisy, level, cache=m.encode_context(ctx))
    for b, s in enumerate(samples):
        want, n = out_full[b, : len(s)][s.gen], int(s.gen.sum())
        assert torch.allclose(out_cached[b, :n], want, atol=1e-5, rtol=1e-4), b
        assert torch.allclose(out_unmarked[b, :n], want, atol=1e-5, rtol=1e-4) == (b < 2), b
    for a, c in zip(m.encode_context(ctx, inverse=inverse).layers, base.encode_context(ctx).layers):
        assert torch.equal(a.k[:2], c.k[:2]) and not torch.allclose(a.k[2], c.k[2], atol=1e-3)
    with pytest.raises(ValueError, match="give inverse_adapter too"):
        replace(CFG, inverse_context=4)


@torch.no_grad()
def test_an_embodiment_with_inverse_adapters_of_its_own_leaves_the_others_bit_for_bit():
    """config.inverse_own: the camera's inverse-dynamics samples take adapters of their own (site inverse_1, both
    experts), the arm's the shared ones; moving one site's weights moves only its embodiment's outputs, and each
    sample's cached context is the full sequence's."""
    cfg = replace(CFG, inverse_adapter=4, inverse_context=4, inverse_own=("camera",))
    assert cfg.inverse_sites == ("inverse", "inverse_1")
    m = tiny_model(cfg)
    for _, p in m.inverse_parameters():
        p.normal_(0, 0.3)
    assert {n.split(".")[4] for n, _ in m.inverse_parameters(("inverse_1",))} == {"inverse_1"}
    samples = [mixed_sample(cfg, n_text=3, t=3, vision_gen=(False,) * 3, audio_gen=False, action_gen=[True] * 8,
                            domain=d, seed=d) for d in (0, 1)] + [_batch()[0]]
    full = collate(samples, multiple=1)
    level = torch.full(full.kind.shape, 0.6)
    sites = m.inverse_samples(collate([s.select(s.gen) for s in samples]))
    assert {k: v[:, 0].tolist() for k, v in sites.items()} == {"inverse": [True, False, False],
                                                                "inverse_1": [False, True, False]}

    def outputs():
        out = m(full, level)
        return [out[b, : len(s)][s.gen] for b, s in enumerate(samples)]

    before = outputs()
    ctx, noisy = collate([s.select(~s.gen) for s in samples]), collate([s.select(s.gen) for s in samples])
    cached = m(noisy, torch.full(noisy.kind.shape, 0.6), cache=m.encode_context(ctx, inverse=sites))
    for b, s in enumerate(samples):
        assert torch.allclose(cached[b, : int(s.gen.sum())], before[b], atol=1e-5, rtol=1e-4), b
    for site, moves in (("inverse_1", 1), ("inverse", 0)):
        for _, p in m.inverse_parameters((site,)):
            p.add_(0.2)
        after = outputs()
        for b in range(3):
            assert torch.equal(after[b], before[b]) == (b != moves), (site, b)
        before = after
    with pytest.raises(ValueError, match="not a registered embodiment"):
        replace(CFG, inverse_adapter=4, inverse_own=("hexapod",))
    with pytest.raises(ValueError, match="give inverse_adapter too"):
        replace(CFG, inverse_own=("camera",))
