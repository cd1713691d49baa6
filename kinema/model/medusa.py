"""Medusa decoding for the autoregressive world model: heads guess several codes ahead, one forward pass
checks the guesses, and greedy decoding keeps exactly the codes that plain greedy decoding would produce.

Legend: B batch, K Medusa heads, N tree nodes, D width, r head rank, V vocabulary, Lc cached tokens,
P scored positions.

Heads. The base head turns the hidden state of the last token run (position q) into code q+1; Medusa head j
(0-based) turns the same hidden state into code q+2+j:

    u_j = proj_j(h + SiLU(Linear_j(h)))  ->  logits = u_j @ W.T + bias    (W, bias: the base head's, shared)

The residual block starts as the identity (Linear_j = 0) and proj_j as a copy of the base projection, so
every head starts out guessing the base head's own next code (Medusa-1). Fine-tuning freezes the backbone
except its last layer(s) and trains those with the heads, on the base loss plus 0.8^j-weighted head losses.

Tree. A fixed sparse tree of candidate paths (`HEAD_TREE`, `WIDE_TREE`: rank of the guess at each depth,
e.g. (0, 1) = head 0's best then head 1's second best). Rank COPY (-1) instead guesses the code at the same
place one latent frame back, already decoded: most of a video's codes repeat from frame to frame (the
model's own greedy codes equal that code 67% of the time on held-out clips), so a chain of such guesses is
a cheap draft that the heads need not learn (prompt-lookup drafting, a branch of the same tree). A copy-only
tree is gated: it runs only when the root itself repeated its code one frame back (the place holds still, so
the next places likely do); otherwise the step is a plain one-code forward, cheaper than a tree that would
mostly be rejected. Node 0 is the root, the base head's greedy code. All
nodes run in ONE forward pass against the KV cache, each at its own sequence position and seeing the cache, its
ancestors and itself (an explicit attention mask). A guess is accepted when it equals the base head's
greedy choice at its parent and its parent is accepted; the deepest accepted node's path is kept, the cache
trimmed to it (Cache.keep), and
the base head's choice after the path's last node becomes the next root. Guesses never cross an action
block (action rows are given, not generated): the tree is cut to the codes left before the next one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kinema.model.autoregressive import ARTokens, ARWorldModel
from kinema.model.lm_head_loss import head_lm_loss

# Trees: paths of (rank at depth 1, rank at depth 2, ...; COPY: the code one latent frame back). On this CPU a
# verification forward of n nodes costs about 1.2 + 0.08·n plain decoding steps, and running the heads
# about 0.5 more, so trees are narrow. HEAD_TREE: the best chain through all five heads plus the second
# guesses near the root (9 nodes); of five head trees timed on held-out clips it was within 5% of the
# fastest. WIDE_TREE (21 nodes) suits devices where a forward of 20 tokens costs what one does (GPUs).
COPY = -1  # a rank meaning: the code at the same place one latent frame back
HEAD_TREE = [(0,), (1,), (0, 0), (1, 0), (0, 1), (0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0, 0)]
COPY_CHAIN = [(COPY,) * d for d in range(1, 13)]  # 12 deep: the fastest of 6-24 with the first model, within 4% of 16 now
HEADS_AND_COPY = HEAD_TREE + COPY_CHAIN
# The default is what ran fastest on this CPU (benchmarks/decode.py, held-out clips): the copy chain alone.
# Every head costs one more 64,000-code logit row read of the output matrix per step, and here that costs
# about half a plain decoding step, more than the extra codes the heads get accepted. HEADS_AND_COPY accepts
# the most codes per forward: the tree for devices where a forward of 17 tokens costs what one does.
DEFAULT_TREE = COPY_CHAIN
WIDE_TREE = [
    (0,), (1,), (2,),
    (0, 0), (0, 1), (1, 0), (2, 0),
    (0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0),
    (0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 0),
    (0, 0, 0, 0, 0), (0, 0, 0, 0, 1),
    (0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0, 0, 0, 0),
]
HEAD_WEIGHT = 0.8  # loss weight of head j: 0.8^j (Medusa-1)


class ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.linear = nn.Linear(width, width)
        nn.init.zeros_(self.linear.weight), nn.init.zeros_(self.linear.bias)  # starts as the identity

    def forward(self, h):
        return h + F.silu(self.linear(h))


class MedusaHeads(nn.Module):
    """h [..., D] -> u [K, ..., r]: each head's projection, to be multiplied by the base head's W."""

    def __init__(self, heads: int, width: int, rank: int):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(width) for _ in range(heads))
        self.proj = nn.ModuleList(nn.Linear(width, rank, bias=False) for _ in range(heads))

    def __len__(self) -> int:
        return len(self.blocks)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.stack([p(b(h)) for b, p in zip(self.blocks, self.proj)])

    @torch.no_grad()
    def init_from(self, base_proj: nn.Linear) -> None:
        for p in self.proj:
            p.weight.copy_(base_proj.weight)


# ------------------------------------------------------------------ the tree


class Tree:
    """A candidate tree from paths of ranks (COPY: the code one latent frame back): node 0 is the root; nodes
    sorted by depth (so a depth limit keeps a prefix of them). Paths that need a head beyond `heads` are
    dropped (copy guesses need none)."""

    def __init__(self, paths, heads: int):
        paths = sorted({tuple(int(r) for r in p) for p in paths
                        if len(p) > 0 and all(r == COPY or d < heads for d, r in enumerate(p))}, key=lambda p: (len(p), p))
        for p in paths:
            if len(p) > 1 and p[:-1] not in paths:
                raise ValueError(f"tree: path {p} has no parent path {p[:-1]} (every prefix must be a path)")
            if min(p) < COPY:
                raise ValueError(f"tree: ranks must be >= 0 or COPY ({COPY}), got {p}")
        node = {(): 0}
        for p in paths:
            node[p] = len(node)
        N = len(node)
        self.depth = torch.tensor([0] + [len(p) for p in paths])
        self.rank = torch.tensor([0] + [p[-1] for p in paths])
        self.parent = torch.tensor([-1] + [node[p[:-1]] for p in paths])
        self.ancestors = torch.eye(N, dtype=torch.bool)  # [N, N]: node i sees node j (itself and its ancestors)
        for p, i in node.items():
            for k in range(len(p)):
                self.ancestors[i, node[p[:k]]] = True
        self.max_rank = max(0, int(self.rank.max())) + 1
        self.max_depth = int(self.depth.max())

    def __len__(self) -> int:
        return len(self.depth)

    def nodes_within(self, depth: int) -> int:
        """How many nodes (a prefix) have depth <= `depth`."""
        return int((self.depth <= depth).sum())


def medusa_proposals(model: ARWorldModel, last: torch.Tensor, top: int, heads: int | None = None) -> torch.Tensor:
    """The first `heads` heads' `top` best codes: last [D] -> [heads, top]. Only the heads a tree uses pay
    for their 64,000-code logits."""
    u = model.medusa(last)[:heads]  # [heads, r]
    return model.head.decode_logits(u, model.codebook).topk(top, dim=-1).indices


# ------------------------------------------------------------------ decoding


def greedy_code(logits: torch.Tensor) -> torch.Tensor:
    """argmax over the last axis (the first of equal maxima, as argmax), by max(): 3x faster on [n, 64000]."""
    return logits.max(-1).indices


@torch.no_grad()
def medusa_generate(model: ARWorldModel, context: torch.Tensor, num_latent_frames: int, *, actions=None,
                    domain: int = 0, fps: float = 16.0, tree=None, propose=None,
                    gate_copies: bool = True) -> tuple[torch.Tensor, dict]:
    """Greedy decoding with Medusa: context int [1, tc, h, w] -> (indices [1, T, h, w], stats), the same
    codes as model.generate(..., params=SamplingParams(temperature=0)).

    propose(last [D], p) -> [K, top] candidate codes for positions p+1 .. p+K (p: the sequence position of the
    root) replaces the heads (tests force them right this way). stats: forwards (tree verifications), tokens
    (codes they produced), mean_accepted (codes per verification forward, the root included), accepted (that
    count per forward), plain (forwards of the root alone, counted in both). gate_copies: see `gate` below.
    """
    if context.dim() != 4 or context.shape[0] != 1:
        raise ValueError(f"context: Medusa decoding takes one clip, [1, tc, h, w]; got {tuple(context.shape)}")
    tree_paths = DEFAULT_TREE if tree is None else tree
    head_paths = [p for p in tree_paths if any(r != COPY for r in p)]
    if not head_paths:
        K = 0
    elif model.medusa is not None:
        K = len(model.medusa)
    elif propose is not None:
        K = max(len(p) for p in head_paths)
    else:
        raise ValueError("this model has no Medusa heads (config.medusa_heads = 0): fine-tune them with "
                         "`kinema ar medusa`, pass propose=, or decode with the copy chain alone (tree=COPY_CHAIN)")
    tok, first = model.prepare(context, num_latent_frames, actions, domain, fps)
    h, w = context.shape[2:]
    L = len(tok)
    code = ~tok.is_action[0]
    tree = Tree(tree_paths, K)  # head j guesses depth j + 1
    dev = tok.index.device
    t_depth, t_rank, t_parent, t_anc = (x.to(dev) for x in (tree.depth, tree.rank, tree.parent, tree.ancestors))
    if propose is None:
        used = max((int(d) for d, r in zip(tree.depth, tree.rank) if r != COPY), default=0)  # deepest head guess
        propose = lambda last, p: medusa_proposals(model, last, tree.max_rank, used)  # noqa: E731
    # run_end[p]: one past the last code of the run of consecutive codes from p; next_code[p]: the first code >= p
    run_end, next_code = torch.full((L + 1,), L), torch.full((L + 1,), L)
    for p in range(L - 1, -1, -1):
        run_end[p] = run_end[p + 1] if code[p] and p + 1 < L and code[p + 1] else p + 1
        next_code[p] = p if code[p] else next_code[p + 1]
    # back[p]: the place of the code at the same (row, column) one latent frame before code p (-1 if none)
    code_pos, back = code.nonzero().squeeze(1), torch.full((L,), -1, dtype=torch.long)
    back[code_pos[h * w :]] = code_pos[: -h * w] if len(code_pos) > h * w else back[:0]
    # a copy-only tree guesses ahead only where the root repeated its own code one frame back (a place that
    # holds still: the next ones likely do too); elsewhere a plain one-code step is cheaper than a tree forward
    gate = K == 0 and gate_copies
    hidden, kv = model(tok.slice(0, first), keep_cache=True)
    kv = kv.reserve(L + len(tree))
    last, done, root = hidden[0, -1], first, None
    accepted, plain = [], 0
    while done < L:
        if root is None:  # after a prefill or an action block; otherwise the verification already chose it
            root = greedy_code(model.logits(last))
        depth = min(tree.max_depth, int(run_end[done]) - done - 1)  # guesses stay inside this run of codes
        if gate and back[done] >= 0 and int(tok.index[0, back[done]]) != int(root):
            depth = 0
        if depth == 0:  # nothing to guess (the run's last code, or no copy worth trying): a plain step, which
            tok.index[0, done] = root  # also runs the action block after the run's last code
            accepted.append(1)
            plain += 1
            nxt = int(next_code[done + 1])
            if nxt == L:
                break
            hidden, kv = model(tok.slice(done, nxt), cache=kv, keep_cache=True)
            last, done, root = hidden[0, -1], nxt, None
            continue
        n = tree.nodes_within(depth)
        d, r = t_depth[:n], t_rank[:n]
        if K:
            cand = propose(last, done)  # [K, top]
            head_guess = cand[(d - 1).clamp(0, len(cand) - 1), r.clamp(0, cand.shape[1] - 1)]
        else:  # a copy-only tree: no head to run
            head_guess = torch.zeros_like(d)
        copy_guess = tok.index[0, back[done + d].clamp_min(0)]  # decoded: one frame back is > depth codes back
        tokens = torch.where(d == 0, root, torch.where(r == COPY, copy_guess, head_guess))  # [n]
        Lc = len(kv)
        # each node at the sequence position of its depth, in the group of that position (what the accepted
        # path's tokens keep in the cache: a plain causal chain)
        nodes = ARTokens(index=tokens[None], is_action=torch.zeros(1, n, dtype=torch.bool, device=dev),
                         action=tok.action.new_zeros(1, n, tok.action.shape[-1]),
                         domain=torch.zeros(1, n, dtype=torch.long, device=dev), pos=tok.pos[:, done + d],
                         valid=torch.ones(1, n, dtype=torch.bool, device=dev), group=(done + d)[None],
                         target=torch.full((1, n), -1, device=dev))
        mask = torch.cat([torch.ones(n, Lc, dtype=torch.bool, device=dev), t_anc[:n, :n]], 1)[None, None]
        hidden, kv_all = model(nodes, cache=kv, keep_cache=True, attn_mask=mask)
        greedy = greedy_code(model.logits(hidden[0]))  # [n]: the base head's choice after each node
        ok = (tokens == greedy[t_parent[:n].clamp_min(0)]).tolist()
        ok[0] = True  # the root is the base head's own choice
        for i in range(1, n):  # parents come first: accepted = right guess under an accepted parent
            ok[i] = ok[i] and ok[int(t_parent[i])]
        best = max(range(n), key=lambda i: (int(d[i]) if ok[i] else -1, -i))  # the deepest (first on ties)
        path_t = t_anc[best, :n].nonzero().squeeze(1)  # its root-to-node path (node order is depth order)
        path = path_t.tolist()
        kv = kv_all.keep(Lc, Lc + path_t)
        tok.index[0, done : done + len(path)] = tokens[path_t]
        accepted.append(len(path))
        last, done, root = hidden[0, path[-1]], done + len(path), greedy[path[-1]]  # the next root
        if done < L and not code[done]:  # an action block: given, run it before the next code
            nxt = int(next_code[done])
            if nxt == L:
                break
            hidden, kv = model(tok.slice(done, nxt), cache=kv, keep_cache=True)
            last, done, root = hidden[0, -1], nxt, None
    stats = dict(forwards=len(accepted), plain=plain, tokens=sum(accepted), accepted=accepted,
                 mean_accepted=sum(accepted) / max(1, len(accepted)))
    return model.codes_of(tok, num_latent_frames, h, w), stats


# ------------------------------------------------------------------ fine-tuning


def freeze_for_medusa(model: ARWorldModel, train_layers: int = 1) -> list[str]:
    """Freeze everything but the last `train_layers` backbone layers, the final norm and the Medusa heads;
    -> the names left trainable."""
    if model.medusa is None:
        raise ValueError("the model has no Medusa heads (config.medusa_heads = 0)")
    if not 0 <= train_layers <= len(model.backbone.layers):
        raise ValueError(f"train_layers: expected 0..{len(model.backbone.layers)}, got {train_layers}")
    depth = len(model.backbone.layers)
    keep = tuple(f"backbone.layers.{i}." for i in range(depth - train_layers, depth))
    keep += ("backbone.norm_und.", "medusa.")
    names = []
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(keep))
        if p.requires_grad:
            names.append(name)
    return names


def head_targets(tok: ARTokens, j: int) -> torch.Tensor:
    """Target of head j at every position q: the code at q+2+j when q+1 .. q+2+j are all codes (a guess never
    crosses an action block or padding), else -1. -> [B, L]"""
    B, L = tok.index.shape
    ok = (~tok.is_action & tok.valid).long()
    breaks = torch.cat([torch.zeros(B, 1, dtype=torch.long, device=ok.device), (1 - ok).cumsum(1)], 1)  # [B, L+1]
    q = torch.arange(L, device=ok.device)
    a, b = (q + 1).clamp_max(L), (q + 3 + j).clamp_max(L)
    inside = (q + 2 + j < L) & (breaks[:, b] - breaks[:, a] == 0)
    src = (q + 2 + j).clamp_max(L - 1)
    return torch.where(inside, tok.index[:, src], -1)


def medusa_objective(model: ARWorldModel, h: torch.Tensor, tok: ARTokens, positions: int = 512,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """Base LM loss (the unfrozen last layer must stay a good base model) + sum_j 0.8^j · (CE_j + z-loss) of
    head j, all on the same `positions` random positions of the batch: every head pays a full 64,000-way
    softmax per position, and a sample of positions is plenty to train K small heads."""
    cand = (head_targets(tok, 0) >= 0).reshape(-1).nonzero().squeeze(1)
    pick = cand[torch.randperm(len(cand), generator=generator, device=cand.device)[:positions]]
    hs = h.reshape(-1, h.shape[-1])[pick]
    W, bias, zw = model.head.weight(model.codebook), model.head.bias, model.config.z_weight
    total, m = head_lm_loss(model.head.proj(hs), W, bias, tok.target.reshape(-1)[pick], zw)
    metrics = {"ce": m["ce"], "z": m["z"]}
    u = model.medusa(hs)  # [K, P, r]
    for j in range(len(model.medusa)):
        t = head_targets(tok, j).reshape(-1)[pick]
        sel = t >= 0
        if not sel.any():
            continue
        loss, m = head_lm_loss(u[j][sel], W, bias, t[sel], zw)
        total = total + HEAD_WEIGHT**j * loss
        metrics[f"medusa/ce{j}"] = m["ce"]
    return total, metrics
