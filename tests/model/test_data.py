from kinema.model.data import shard_name


def test_a_dataset_simulated_again_with_new_answers_gets_a_new_shard(tmp_path):
    root = tmp_path / "stable_stack"
    (root / "meta" / "episodes").mkdir(parents=True)
    (root / "meta" / "info.json").write_text("{}")
    ep = root / "meta" / "episodes" / "file-000.parquet"
    ep.write_bytes(b"qa: 0.03 s")
    first = shard_name(root)
    assert shard_name(root) == first and first.startswith("stable_stack-")
    ep.write_bytes(b"qa: there is no collision")
    assert shard_name(root) != first


def test_the_policy_mode_is_drawn_only_on_the_experts_clips(tiny_pipeline, tmp_path):
    import copy

    import torch

    from kinema.model.data import ClipTasks, build_latents, statistics
    from kinema.model.sequence import ACTION
    from kinema.worlds.generate import generate

    p = tiny_pipeline
    for policy in ("expert", "random"):
        generate("push", 1, 0, tmp_path / "data" / f"push-{policy}", size=32, frames=33, policy=policy,
                 progress=False)
    shards = build_latents(tmp_path / "data", tmp_path / "latents", p.video_tokenizer, p.audio_tokenizer,
                           progress=False)
    config = copy.deepcopy(p.config)  # the session's pipeline keeps its own statistics
    statistics(shards, config)
    ds = ClipTasks(shards, config, p.text, mode_weights={"policy": 50.0})
    torch.manual_seed(0)
    drawn = {}
    for i, m in enumerate(ds.clips):
        toks = [ds[i] for _ in range(20)]
        gens = [tok.gen[tok.kind == ACTION] for tok in toks]
        # the policy is the one mode whose action rows are part given, part generated
        drawn[m["policy"]] = sum(bool(g.any() and not g.all()) for g in gens)
    assert drawn["expert"] > 10 and drawn["random"] == 0
