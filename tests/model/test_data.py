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


def test_world_shards_from_episodes_in_memory_equal_their_datasets_and_train(tmp_path, capsys):
    """The world model's GPU data path: scripts/simulate_latents.py --kind world simulates and encodes an
    EpisodeList; its shard equals, tensor for tensor and clip for clip, the shard of the same episodes written
    as a dataset, and `kinema train --data` takes the folder of shards as it is (from --init: the text
    tokenizer comes from the checkpoint)."""
    import subprocess
    import sys

    import torch

    from kinema.cli import main
    from kinema.model.data import build_latents, latent_folder
    from kinema.tokenize.load import load_tokenizer
    from kinema.train.checkpoint import load_tensors, read_json
    from kinema.worlds.generate import generate

    latents = tmp_path / "latents"
    run = subprocess.run([sys.executable, "scripts/simulate_latents.py", "--kind", "world", "--out", str(latents),
                          "--workers", "1", "push:1:0:random"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    [shard] = latent_folder(latents)
    assert shard.name == "push-random-s0.safetensors"

    generate("push", 1, 0, tmp_path / "data" / "push", policy="random", progress=False)
    tok = [load_tokenizer(f"checkpoints/{n}", kind) for n, kind in (("tokenizer-cv4x8x8", "video_tokenizer"),
                                                                   ("tokenizer-audio", "audio_tokenizer"))]
    [disk] = build_latents(tmp_path / "data", tmp_path / "disk", *tok, progress=False)
    a, b = load_tensors(shard), load_tensors(disk)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ca, cb = read_json(shard.with_suffix(".json"))["clips"], read_json(disk.with_suffix(".json"))["clips"]
    assert ca == cb and len(ca) == 3 * 2  # three 33-frame clips of a 97-frame episode, two cameras

    common = ["--preset", "tiny", "--steps", "1", "--batch-size", "2", "--reason-weight", "0", "--dtype", "fp32",
              "--device", "cpu"]
    assert main(["train", *common, "--data", str(tmp_path / "data"), "--out", str(tmp_path / "first")]) == 0
    assert main(["train", *common, "--data", str(latents), "--init", str(tmp_path / "first" / "final"),
                 "--out", str(tmp_path / "second")]) == 0
    assert (tmp_path / "second" / "final" / "model.safetensors").exists()
    assert not (tmp_path / "second" / "latents").exists()  # the shards were taken where they are
    assert main(["train", *common, "--data", str(latents), "--out", str(tmp_path / "third")]) == 2
    assert "folders of latent shards only" in capsys.readouterr().err  # no text to train a tokenizer on
