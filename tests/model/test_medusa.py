"""Medusa decoding (tiny preset, fp32): greedy Medusa gives exactly plain greedy's codes, whether the guesses
are wrong (random heads), right (forced), right on a side branch or copied from the frame before; the tree,
the head targets, fine-tuning."""

import pytest
import torch

from kinema.model.ar_config import get_preset
from kinema.model.autoregressive import ARWorldModel, collate, sequence
from kinema.model.decoding import SamplingParams
from kinema.model.medusa import (COPY, COPY_CHAIN, DEFAULT_TREE, HEAD_TREE, HEADS_AND_COPY, WIDE_TREE, Tree, freeze_for_medusa, head_targets, medusa_generate,
                                 medusa_objective)

GREEDY = SamplingParams(temperature=0)
V = 64000


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ARWorldModel(get_preset("tiny", medusa_heads=4)).eval()


def ctx(t=1, seed=0):
    return torch.randint(0, V, (1, t, 4, 4), generator=torch.Generator().manual_seed(seed))


def reference(model, context, T, actions=None):
    """Plain greedy codes and the same clip in sequence order (what the oracle proposer reads)."""
    codes = model.generate(context, T, actions=actions, params=GREEDY)
    tok = sequence(model.config, codes, actions)
    return codes, tok.index[0]


def oracle(seq, heads, ranks=None, right=None):
    """A proposer that knows the plain-greedy sequence: the true code of position p+1+j at rank ranks[j] of
    head j (heads from `right` on guess wrong), wrong codes elsewhere."""
    g = torch.Generator().manual_seed(1)
    ranks = ranks or [0] * heads

    def propose(last, p):
        cand = torch.randint(0, V, (heads, 3), generator=g)
        for j in range(heads):
            true = seq[p + 1 + j] if p + 1 + j < len(seq) else 0
            cand[j] = (true + 1 + torch.arange(3)) % V  # all wrong ...
            if j < (heads if right is None else right):
                cand[j, ranks[j]] = true  # ... but this one
        return cand

    return propose


@pytest.mark.parametrize("with_actions", [False, True])
def test_medusa_greedy_equals_plain_greedy_with_random_heads(model, with_actions):
    acts = torch.randn(1, 12, 10) if with_actions else None
    want, _ = reference(model, ctx(), 3, acts)
    got, stats = medusa_generate(model, ctx(), 3, actions=acts, tree=HEADS_AND_COPY)
    assert torch.equal(got, want)
    assert torch.equal(medusa_generate(model, ctx(), 3, actions=acts)[0], want)  # the default tree (copy chain)
    assert stats["mean_accepted"] >= 1 and stats["tokens"] <= 2 * 16 and stats["forwards"] >= 16


@pytest.mark.parametrize("with_actions", [False, True])
def test_medusa_accepts_forced_right_guesses_and_stays_exact(model, with_actions):
    acts = torch.randn(1, 12, 10) if with_actions else None
    want, seq = reference(model, ctx(seed=2), 3, acts)
    got, stats = medusa_generate(model, ctx(seed=2), 3, actions=acts, propose=oracle(seq, 4), tree=WIDE_TREE)
    assert torch.equal(got, want)
    # every forward accepts its root and up to 4 guesses: 5 codes per forward until a run of codes ends
    assert stats["mean_accepted"] > 3 and max(stats["accepted"]) == 5
    assert stats["forwards"] < 16


def test_medusa_takes_a_side_branch_and_partial_paths(model):
    want, seq = reference(model, ctx(seed=3), 3)
    # the right code is head 0's second guess, the others' first: the tree's path (1, 0, 0) ends at depth 3
    got, stats = medusa_generate(model, ctx(seed=3), 3, propose=oracle(seq, 4, ranks=[1, 0, 0, 0]), tree=WIDE_TREE)
    assert torch.equal(got, want) and max(stats["accepted"]) == 4
    # only the first two heads are right: at most root + 2 per forward
    got, stats = medusa_generate(model, ctx(seed=3), 3, propose=oracle(seq, 4, right=2), tree=WIDE_TREE)
    assert torch.equal(got, want) and max(stats["accepted"]) == 3 and stats["mean_accepted"] > 2


def test_medusa_with_longer_context_and_the_copy_chain(model):
    want, seq = reference(model, ctx(t=2, seed=4), 4)
    got, stats = medusa_generate(model, ctx(t=2, seed=4), 4, propose=oracle(seq, 4), tree=HEAD_TREE)
    assert torch.equal(got, want) and torch.equal(got[:, :2], ctx(t=2, seed=4)) and max(stats["accepted"]) == 5
    # this random model's greedy codes settle into repeating frames (want[:, 3] == want[:, 2]): there the copy
    # chain's guesses (the code one latent frame back) are right, 8 deep, beyond what the 4 heads reach
    assert torch.equal(want[:, 3], want[:, 2])
    deep = [(COPY,) * d for d in range(1, 9)]
    got, stats = medusa_generate(model, ctx(t=2, seed=4), 4, propose=oracle(seq, 4), tree=HEAD_TREE + deep)
    assert torch.equal(got, want) and max(stats["accepted"]) == 9
    got, stats = medusa_generate(model, ctx(t=2, seed=4), 4, tree=deep)  # no heads run
    assert torch.equal(got, want) and max(stats["accepted"]) == 9
    # the gate: where the root differs from its code one frame back, a plain step instead of the chain
    ungated, st0 = medusa_generate(model, ctx(t=2, seed=4), 4, tree=deep, gate_copies=False)
    assert torch.equal(ungated, want) and st0["plain"] < stats["plain"]
    assert stats["tokens"] == st0["tokens"] == want[:, 2:].numel()


def test_medusa_input_checks(model):
    with pytest.raises(ValueError, match="one clip"):
        medusa_generate(model, ctx().expand(2, -1, -1, -1), 3)
    plain = ARWorldModel(get_preset("tiny")).eval()
    with pytest.raises(ValueError, match="no Medusa heads"):
        medusa_generate(plain, ctx(), 2, tree=HEAD_TREE)
    assert torch.equal(medusa_generate(plain, ctx(), 2)[0], plain.generate(ctx(), 2, params=GREEDY))  # copy chain


def test_tree_structure():
    assert Tree(HEAD_TREE, 5).max_depth == 5 and len(Tree(HEAD_TREE, 5)) == 9
    assert DEFAULT_TREE == COPY_CHAIN
    both = Tree(HEADS_AND_COPY, 2)  # head paths deeper than 2 heads dropped, the copy chain kept
    assert len(both) == 1 + 5 + len(COPY_CHAIN) and both.max_depth == len(COPY_CHAIN) and both.max_rank == 2
    copies = (both.rank == COPY).nonzero().squeeze(1)
    assert both.parent[copies[0]] == 0 and (both.parent[copies[1:]] == copies[:-1]).all()  # a chain off the root
    tree = Tree(WIDE_TREE, 3)
    assert tree.max_depth == 3 and len(tree) == 1 + 3 + 4 + 4
    assert tree.depth.tolist() == sorted(tree.depth.tolist())  # a depth limit keeps a prefix
    assert tree.nodes_within(1) == 4 and tree.nodes_within(0) == 1
    # node of path (1, 0): its parent is (1,), its ancestors the root and (1,)
    i = 1 + 3 + 2  # depth-2 paths sorted: (0,0), (0,1), (1,0), (2,0)
    assert tree.parent[i] == 2 and tree.ancestors[i].nonzero().squeeze(1).tolist() == [0, 2, i]
    with pytest.raises(ValueError, match="no parent path"):
        Tree([(0,), (1, 1)], 3)


def test_head_targets_never_cross_an_action_block():
    cfg = get_preset("tiny")
    idx = ctx(t=3)[0]
    tok = collate([sequence(cfg, idx, torch.randn(9, 10))])
    seq = tok.index[0]
    t0, t2 = head_targets(tok, 0)[0], head_targets(tok, 2)[0]
    assert t0[0] == seq[2] and t2[0] == seq[4]
    assert t0[13] == seq[15] and t0[14] == -1  # position 15 is the last code before the actions
    assert t2[11] == seq[15] and t2[12] == -1
    assert t0[19] == seq[21] and t0[18] == -1  # 19: the last action row, 20: the first code of frame 1
    assert (t0[tok.valid[0].sum() - 2 :] == -1).all()


def test_medusa_fine_tuning_trains_only_the_last_layer_and_heads():
    torch.manual_seed(0)
    m = ARWorldModel(get_preset("tiny", medusa_heads=3))
    m.medusa.init_from(m.head.proj)
    names = freeze_for_medusa(m, train_layers=1)
    assert all(n.startswith(("backbone.layers.1.", "backbone.norm_und", "medusa.")) for n in names)
    tok = collate([sequence(m.config, ctx(t=3, seed=5)[0]),
                   sequence(m.config, ctx(t=3, seed=6)[0], torch.randn(9, 10))])
    h, _ = m(tok)
    loss, metrics = medusa_objective(m, h, tok, positions=40, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert {"ce", "z", "medusa/ce0", "medusa/ce2"} <= set(metrics)
    for n, p in m.named_parameters():
        if n in names:
            assert p.grad is not None, n
        else:
            assert p.grad is None, n
    assert m.medusa.blocks[0].linear.weight.grad.abs().sum() > 0
