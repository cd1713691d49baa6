"""The world-model objective: what it scores, its metrics, and that a tiny model can overfit one batch."""

import json
import math

import numpy as np
import pytest
import torch

from kinema.diffusion import EDM, RectifiedFlow
from kinema.model.sequence import collate
from kinema.model.train import LOSS_WEIGHTS, noised, schedule_for, world_model_loss
from kinema.model.world_model import WorldModel
from tests.model.helpers import mixed_sample, tiny_config

CFG = tiny_config()


def _batch():
    return collate([mixed_sample(CFG, t=3, vision_gen=(False, True, True), seed=1),
                    mixed_sample(CFG, t=2, vision_gen=(False, True), audio=False, rows=0, seed=2)])


def _eval(model, batch, schedule, draws=8):
    """The loss averaged over fixed draws of time and noise."""
    total = 0.0
    with torch.no_grad():
        for s in range(draws):
            torch.manual_seed(100 + s)
            total += float(world_model_loss(model, batch, schedule)[0])
    return total / draws


def test_overfits_one_batch():
    torch.manual_seed(0)
    model = WorldModel(CFG)
    batch, schedule = _batch(), schedule_for(CFG)
    before = _eval(model, batch, schedule)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(30):
        loss, metrics = world_model_loss(model, batch, schedule)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = _eval(model, batch, schedule)
    assert after < 0.9 * before, (before, after)


def test_metrics_per_modality_and_their_weights():
    torch.manual_seed(0)
    model = WorldModel(CFG)
    schedule = schedule_for(CFG)
    loss, m = world_model_loss(model, _batch(), schedule)
    assert set(m) == {"loss/vision", "loss/action", "loss/audio"}
    assert loss.item() == pytest.approx(m["loss/vision"] + m["loss/action"] + 0.5 * m["loss/audio"], rel=1e-5)
    vision_only = collate([mixed_sample(CFG, t=2, vision_gen=(False, True), audio=False, rows=4, action_gen=[False] * 4)])
    _, m = world_model_loss(model, vision_only, schedule)
    assert set(m) == {"loss/vision"}
    actions_only = collate([mixed_sample(CFG, t=2, vision_gen=(False, False), audio=False, rows=4, action_gen=[True] * 4)])
    _, m = world_model_loss(model, actions_only, schedule)
    assert set(m) == {"loss/action"}
    # zero-initialised heads predict v = 0: the loss is E[(eps - x0)^2] over real entries only (~1 + E[x0^2] ~ 2)
    assert 1.0 < m["loss/action"] < 4.0


def test_keep_adds_the_teachers_kl_only_where_it_was_right():
    """world_model_loss(teacher=, keep=): text tokens see no noisy token, so the teacher's answers at them are fixed
    whatever the noise; scored with them as targets every position is held, with shifted targets none is."""
    import copy
    from dataclasses import replace

    from kinema.model.sequence import TEXT

    torch.manual_seed(0)
    model, schedule, batch = WorldModel(CFG), schedule_for(CFG), _batch()
    teacher = copy.deepcopy(model)
    text = batch.kind == TEXT
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.05 * torch.randn_like(p))
        tok, level = noised(schedule, batch, torch.full((2,), 0.5), torch.randn_like(batch.value))
        right = teacher(tok, level, text_at=text)[1].argmax(-1)
    answers = replace(batch, target=torch.full_like(batch.target, -1).masked_scatter(text, right), hold=text)
    _, m = world_model_loss(model, answers, schedule, teacher, keep=1.0)
    assert m["keep/held"] == 1.0 and m["loss/keep"] > 0
    _, m = world_model_loss(model, replace(answers, hold=torch.zeros_like(text)), schedule, teacher, keep=1.0)
    assert m["keep/held"] == 0.0 and m["loss/keep"] == 0.0  # answers not marked to hold (--reason-keep-tasks)
    _, m = world_model_loss(model, replace(answers, target=torch.where(text, (answers.target + 1) % CFG.vocab_size, -1)),
                            schedule, teacher, keep=1.0)
    assert m["keep/held"] == 0.0 and m["loss/keep"] == 0.0
    _, m = world_model_loss(model, answers, schedule, copy.deepcopy(model), keep=1.0)  # the same weights: nothing to keep
    assert m["loss/keep"] == pytest.approx(0.0, abs=1e-5)


def test_a_worlds_own_adapter_keeps_the_shared_adapters_answers():
    """teacher_shared: a question about a world with its own adapter is answered by the teacher through the shared
    adapter alone, so a copy of the student is no teacher of itself there (KL > 0 once the own update is not 0)."""
    import copy
    from dataclasses import replace

    from kinema.model.sequence import TEXT, for_world

    torch.manual_seed(0)
    cfg = replace(CFG, reason_adapter=4, reason_own=("seesaw",), reason_own_rank=2)
    model, schedule = WorldModel(cfg), schedule_for(cfg)
    with torch.no_grad():
        for _, p in model.reason_own_parameters(("seesaw",)):
            p.normal_(0, 0.3)
    q = collate([for_world(cfg, mixed_sample(cfg, n_text=4, t=2, vision_gen=(False, False), audio=False, rows=0,
                                             seed=s), "seesaw") for s in (1, 2)])
    text = q.kind == TEXT
    with torch.no_grad():
        shared = model(replace(q, world=torch.zeros_like(q.world)), torch.zeros(q.kind.shape), text_at=text)[1]
    answers = replace(q, target=torch.full_like(q.target, -1).masked_scatter(text, shared.argmax(-1)), hold=text)
    _, m = world_model_loss(model, answers, schedule, copy.deepcopy(model), keep=1.0, teacher_shared=True)
    assert m["keep/held"] == 1.0 and m["loss/keep"] > 1e-4
    _, m = world_model_loss(model, answers, schedule, copy.deepcopy(model), keep=1.0)  # the own adapter's answers
    assert m["loss/keep"] == pytest.approx(0.0, abs=1e-5)


def test_noised_replaces_only_noisy_values():
    batch = _batch()
    schedule = RectifiedFlow()
    t = torch.tensor([0.25, 0.75])
    noise = torch.randn_like(batch.value)
    tok, level = noised(schedule, batch, t, noise)
    keep = ~batch.gen
    assert torch.equal(tok.value[keep], batch.value[keep])
    xt = (1 - t.view(2, 1, 1)) * batch.value + t.view(2, 1, 1) * noise
    assert torch.allclose(tok.value[batch.gen], xt[batch.gen])
    assert torch.equal(level, t[:, None].expand_as(level))


def test_high_noise_share_draws_those_times_from_the_top_tenth():
    cfg = tiny_config()
    model, levels = WorldModel(cfg), []
    model.register_forward_pre_hook(lambda m, args: levels.append(args[1][:, 0].clone()))
    batch = collate([mixed_sample(cfg, seed=s) for s in range(64)])
    torch.manual_seed(0)
    world_model_loss(model, batch, schedule_for(cfg), high_noise=1.0)
    world_model_loss(model, batch, schedule_for(cfg), high_noise=0.5)
    world_model_loss(model, batch, schedule_for(cfg))
    every, half, none = levels
    assert (every >= 0.9).all() and (every <= 1).all()
    assert 16 < int((half >= 0.9).sum()) < 48 and int((none >= 0.9).sum()) < 16  # the schedule: ~7% of draws


def test_edm_schedule_trains_too():
    cfg = tiny_config(schedule="edm")
    assert isinstance(schedule_for(cfg), EDM)
    torch.manual_seed(0)
    loss, m = world_model_loss(WorldModel(cfg), collate([mixed_sample(cfg, seed=3)]), schedule_for(cfg))
    assert torch.isfinite(loss) and "loss/vision" in m
    loss.backward()


def test_edm_learned_uncertainty_weights_the_loss_per_noise_level():
    """REFERENCE §2: loss * exp(-u(sigma)) + u(sigma). It starts at u = 0 (the plain loss, to the bit), its layer
    gets gradients, and trained alone on a fixed noise level it settles at u = ln(that level's loss), where
    loss * exp(-u) + u is least."""
    cfg = tiny_config(schedule="edm", loss_uncertainty=True)
    batch, schedule = collate([mixed_sample(cfg, seed=3), mixed_sample(cfg, seed=4)]), schedule_for(cfg)
    torch.manual_seed(0)
    model = WorldModel(cfg)
    plain = WorldModel(tiny_config(schedule="edm"))
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("loss_logvar.")})
    torch.manual_seed(1)
    loss, m = world_model_loss(model, batch, schedule)
    torch.manual_seed(1)
    loss0, m0 = world_model_loss(plain, batch, schedule)
    assert torch.equal(loss, loss0) and m["loss/logvar"] == 0.0 and m["loss/vision"] == m0["loss/vision"]
    loss.backward()
    assert model.loss_logvar.out.bias.grad.abs() > 0

    fixed = EDM(p_std=1e-6)  # every sample at sigma = 1
    for p in model.parameters():
        p.requires_grad_(False)
    head = model.loss_logvar.out
    head.requires_grad_(True)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(300):
        torch.manual_seed(2)
        loss, m = world_model_loss(model, batch, fixed)
        opt.zero_grad()
        loss.backward()
        opt.step()
    present = [(m[f"loss/{name}"], w) for name, w in LOSS_WEIGHTS.values() if f"loss/{name}" in m]
    raw = sum(v * w for v, w in present) / sum(w for _, w in present)  # the weighted loss u should match
    assert abs(m["loss/logvar"] - math.log(raw)) < 0.25


def test_the_true_velocity_scores_zero():
    """An oracle that knows x0 and reads x_t and t from its input returns v = eps - x0 = (x_t - x0) / t."""
    batch = _batch()

    def oracle(tok, level):
        v = (tok.value - batch.value) / level[..., None]
        return torch.where(tok.gen[..., None], v, torch.zeros(()))

    torch.manual_seed(0)
    loss, m = world_model_loss(oracle, batch, RectifiedFlow(shift=3.0))
    assert set(m) == {"loss/vision", "loss/action", "loss/audio"}
    assert loss.item() < 1e-8
    wrong = lambda tok, level: -oracle(tok, level)  # noqa: E731
    assert world_model_loss(wrong, batch, RectifiedFlow())[0].item() > 1.0


def test_action_post_training_mixture_draws_only_action_modes():
    import torch as _torch

    from kinema.model.modes import ACTION_MODES, sample_task

    g = _torch.Generator().manual_seed(0)
    draws = [sample_task("tabletop", 9, False, generator=g, mixture="actions") for _ in range(200)]
    assert {d["mode"] for d in draws} <= set(ACTION_MODES)
    assert {d["k"] for d in draws} == {1, 3}
    with pytest.raises(KeyError):
        sample_task("physics", 9, True, generator=g, mixture="actions")


def test_mode_weights_scale_the_mixture_and_bad_ones_are_refused():
    import torch as _torch

    from kinema.model.modes import check_mode_weights, sample_task

    def share(weights):
        g = _torch.Generator().manual_seed(0)
        draws = [sample_task("physics", 9, True, generator=g, mode_weights=weights)["mode"] for _ in range(2000)]
        return draws.count("text2video") / len(draws)

    assert abs(share(None) - 0.25) < 0.04  # the mixture's own weight
    assert abs(share({"text2video": 3.0}) - 0.75 / 1.5) < 0.04  # 0.25·3 of 0.1 + 0.75 + 0.3 + 0.35
    assert share({"text2video": 0.0}) == 0
    with pytest.raises(ValueError, match="text2vid"):
        check_mode_weights({"text2vid": 2.0}, "all")
    with pytest.raises(ValueError, match="physics"):  # nothing left to draw for one family
        check_mode_weights({m: 0.0 for m in ("text2image", "text2video", "image2video", "video2video")}, "all")
    with pytest.raises(ValueError, match="actions"):  # the action mixture trains no text-to-video
        check_mode_weights({"text2video": 2.0}, "actions")


def test_train_cli_then_post_training_adds_the_given_frame_inputs(tmp_path, capsys):
    """`kinema train` end to end on a few episodes with the shipped tokenizers; then `--init` from a checkpoint
    without the given-frame inputs (an older model) with --frame-condition: they start at zero, the rest loads."""
    import shutil

    from kinema.cli import main
    from kinema.model.pipeline import Pipeline
    from kinema.train.checkpoint import load_pretrained, save_tensors, write_json
    from kinema.worlds.generate import generate

    data = tmp_path / "data"
    generate("free_fall", 2, 0, data / "free_fall", size=32, frames=33, progress=False)
    common = ["--preset", "tiny", "--data", str(data), "--steps", "2", "--batch-size", "2", "--reason-weight", "0",
              "--ckpt-every", "1", "--log-every", "1", "--dtype", "fp32", "--device", "cpu"]
    assert main(["train", *common, "--out", str(tmp_path / "run")]) == 0
    raw, state = load_pretrained(tmp_path / "run" / "final")
    assert raw["model"]["frame_condition"] and "frame_in.weight" in state
    # every checkpoint folder it wrote, step checkpoints too, holds the text tokenizer and loads on its own
    steps = sorted((tmp_path / "run" / "checkpoints").glob("step-*"))
    assert steps
    for folder in (tmp_path / "run" / "final", *steps):
        assert (folder / "tokenizer.json").read_bytes() == (tmp_path / "run" / "text" / "tokenizer.json").read_bytes()
    Pipeline.from_pretrained(steps[-1], device="cpu", dtype="fp32", video_tokenizer="checkpoints/tokenizer-cv4x8x8",
                             audio_tokenizer="checkpoints/tokenizer-audio")

    def older(name, weights, model_cfg):
        """The final checkpoint (tokenizer.json and all) with an older model's weights and config."""
        shutil.copytree(tmp_path / "run" / "final", tmp_path / name)
        save_tensors(tmp_path / name / "model.safetensors", weights)
        write_json(tmp_path / name / "config.json", {**raw, "model": model_cfg})

    old = {k: v for k, v in state.items() if not k.startswith(("frame_in.", "moved_in."))}
    older("old", old, {**raw["model"], "frame_condition": False})
    assert main(["train", *common, "--out", str(tmp_path / "post"), "--init", str(tmp_path / "old"),
                 "--frame-condition", "--steps", "1"]) == 0
    raw2, state2 = load_pretrained(tmp_path / "post" / "final")
    assert raw2["model"]["frame_condition"] and "moved_in.weight" in state2
    assert torch.allclose(state2["vision_in.weight"], old["vision_in.weight"], atol=1e-2)  # the rest came from --init
    # a checkpoint with the older two-row action input: --frame-condition widens it, the old rows kept
    A = raw["model"]["max_action_dim"]
    two = {**state, "moved_in.weight": state["moved_in.weight"][:, : 2 * A]}
    older("two", two, {**raw["model"], "cond_rows": 2})
    assert main(["train", *common, "--out", str(tmp_path / "wide"), "--init", str(tmp_path / "two"),
                 "--frame-condition", "--steps", "1", "--lr", "1e-9"]) == 0
    raw3, state3 = load_pretrained(tmp_path / "wide" / "final")
    assert raw3["model"]["cond_rows"] == 3 and state3["moved_in.weight"].shape[1] == 3 * A
    assert torch.allclose(state3["moved_in.weight"][:, : 2 * A].float(), two["moved_in.weight"].float(), atol=1e-2)
    assert not state3["moved_in.weight"][:, 2 * A :].float().abs().gt(1e-3).any()  # the new row starts at zero
    # generator-only post-training: the reasoner's parameters come back bit for bit, the generator's move
    assert main(["train", *common, "--reason-weight", "0.5", "--out", str(tmp_path / "x"), "--init",
                 str(tmp_path / "run" / "final"), "--freeze-reasoner"]) == 2
    assert "--reason-weight 0" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["train", *common, "--out", str(tmp_path / "gen"), "--init", str(tmp_path / "run" / "final"),
                 "--freeze-reasoner", "--mode-weights", "text2video=2", "--steps", "2", "--lr", "1e-2",
                 "--ema-decay", "0"]) == 0
    _, after = load_pretrained(tmp_path / "gen" / "final")
    from kinema.model.config import WorldModelConfig
    from kinema.model.world_model import WorldModel

    reasoner = {n for n, _ in WorldModel(WorldModelConfig.from_dict(raw["model"])).reasoner_parameters()}
    assert all(torch.equal(after[n], state[n]) for n in reasoner)
    assert not torch.equal(after["backbone.layers.0.gen.qkv.weight"], state["backbone.layers.0.gen.qkv.weight"])
    # the reasoner gains its pixel view: the shards keep each clip's keyframes, the new input starts at zero
    # (bias-free, output layer zero) and trains; everything else loads from --init
    assert main(["train", *common, "--reason-weight", "0.5", "--out", str(tmp_path / "pix"), "--init",
                 str(tmp_path / "run" / "final"), "--reason-pixels", "4", "--steps", "2", "--lr", "1e-2",
                 "--ema-decay", "0"]) == 0
    assert "the reasoner's pixel input" in capsys.readouterr().out
    from kinema.model.reason_data import load_reason_shards

    _, clips, _, keys = load_reason_shards(sorted((tmp_path / "pix" / "reason_latents").glob("*.safetensors")))
    assert len(keys) == len(clips) and keys[0].dtype == torch.uint8
    assert keys[0].shape == (1 + (clips[0]["frames"] - 1) // 4, 32, 32, 3)
    # the generator's shards keep them too: a model with the pixel view reads its given frames' pixels
    from kinema.train.checkpoint import load_tensors

    gen_shard = load_tensors(sorted((tmp_path / "pix" / "latents").glob("*.safetensors"))[0])
    t = gen_shard["vision"].shape[2]
    assert gen_shard["keyframes"].dtype == torch.uint8 and gen_shard["keyframes"].shape[1:] == (t, 32, 32, 3)
    raw4, state4 = load_pretrained(tmp_path / "pix" / "final")
    assert raw4["model"]["pixel_cell"] == 4 and state4["pixel_in.0.weight"].shape == (64, 3 * 4 * 4)
    assert state4["pixel_in.2.weight"].float().abs().sum() > 0  # trained away from its zero start
    # the reasoner's adapter: refused without questions only, and on a checkpoint whose generator reads the pixel
    # view; then it starts at zero with a new pixel view of its own, both train, and nothing the generator reads
    # moves (the init: the first run's final)
    assert main(["train", *common, "--reason-weight", "0.5", "--out", str(tmp_path / "y"), "--init",
                 str(tmp_path / "run" / "final"), "--reason-adapter", "4"]) == 2
    assert "--reason-weight 1" in capsys.readouterr().err and not (tmp_path / "y").exists()
    assert main(["train", *common, "--reason-weight", "1", "--out", str(tmp_path / "y"), "--init",
                 str(tmp_path / "pix" / "final"), "--reason-adapter", "4"]) == 2
    assert "pixel view is read by its generator" in capsys.readouterr().err and not (tmp_path / "y").exists()
    assert main(["train", *common, "--reason-weight", "1", "--out", str(tmp_path / "ada"), "--init",
                 str(tmp_path / "run" / "final"), "--reason-adapter", "4", "--reason-pixels", "4", "--steps", "2",
                 "--lr", "1e-2", "--ema-decay", "0"]) == 0
    out = capsys.readouterr().out
    assert "the reasoner's adapter (reason_adapter) is not in the checkpoint" in out and "pixel view, " in out
    raw5, state5 = load_pretrained(tmp_path / "ada" / "final")
    assert raw5["model"]["reason_adapter"] == 4 and raw5["model"]["pixel_cell"] == 4
    assert state5["backbone.layers.0.und.lora.qkv.A"].shape == (4, 64)
    for k in ("backbone.layers.0.und.lora.qkv.B", "pixel_in.2.weight"):  # trained away from their zero start
        assert state5[k].float().abs().sum() > 0, k
    assert not torch.equal(state5["text_out.weight"], state["text_out.weight"])
    assert all(torch.equal(state5[k], v) for k, v in state.items() if not k.startswith(("text_out.", "backbone.norm_und.")))
    # questions alone need no datasets: the adapter run's reasoner shards, carried as a folder, are taken as they are
    # (a GPU machine without the simulator or a video codec trains from them); without --init that is refused
    bare = [a for a in common if a not in ("--data", str(data))]
    assert main(["train", *bare, "--reason-weight", "1", "--reason-data", str(tmp_path / "ada" / "reason_latents"),
                 "--out", str(tmp_path / "z")]) == 2
    assert "--data may be left out only" in capsys.readouterr().err and not (tmp_path / "z").exists()
    assert main(["train", *bare, "--reason-weight", "1", "--reason-data", str(tmp_path / "ada" / "reason_latents"),
                 "--out", str(tmp_path / "carried"), "--init", str(tmp_path / "ada" / "final"), "--reason-adapter",
                 "4", "--reason-pixels", "4", "--steps", "2", "--lr", "1e-2", "--ema-decay", "0"]) == 0
    assert f"{len(clips)} clips" in capsys.readouterr().out
    assert not list((tmp_path / "carried").glob("*latents/*.safetensors"))  # nothing encoded again
    _, state6 = load_pretrained(tmp_path / "carried" / "final")
    assert not torch.equal(state6["backbone.layers.0.und.lora.qkv.B"], state5["backbone.layers.0.und.lora.qkv.B"])
    assert all(torch.equal(state6[k], v) for k, v in state.items() if not k.startswith(("text_out.", "backbone.norm_und.")))
    # a larger rank widens the adapter in place: the learned rank kept, the new rows of A fresh, the new columns of
    # B zero (so the reasoner starts as it was); a smaller rank is refused before anything is written
    ada = ["train", *bare, "--reason-weight", "1", "--reason-data", str(tmp_path / "ada" / "reason_latents"), "--init",
           str(tmp_path / "carried" / "final"), "--reason-pixels", "4", "--steps", "1", "--lr", "1e-9"]
    # --reason-adapter-layers 1: only layer 0's adapter trains; later layers', the pixel view and the head stay
    assert main([*ada, "--out", str(tmp_path / "nolayers"), "--reason-adapter-layers", "1"]) == 2
    assert "with --reason-adapter" in capsys.readouterr().err and not (tmp_path / "nolayers").exists()
    assert main([*ada[:-4], "--steps", "2", "--lr", "1e-2", "--ema-decay", "0", "--out", str(tmp_path / "first"),
                 "--reason-adapter", "4", "--reason-adapter-layers", "1"]) == 0
    assert "the adapter of the first 1 layers" in capsys.readouterr().out
    _, first = load_pretrained(tmp_path / "first" / "final")
    moved = {k for k, v in first.items() if not torch.equal(v, state6[k])}
    assert moved and all(k.startswith("backbone.layers.0.und.lora.") for k in moved)
    # --reason-keep: the starting weights answer beside the student, and their KL is in the log (0 at the first
    # step, where the two are the same weights); a weight below 0 is refused
    keep = [*ada[:-4], "--steps", "3", "--lr", "1e-2", "--ema-decay", "0", "--reason-adapter", "4", "--log-every", "1"]
    assert main([*keep, "--out", str(tmp_path / "keep"), "--reason-keep", "1"]) == 0
    assert "--reason-keep 1.0: answers the starting weights get right are kept" in capsys.readouterr().out
    logged = [json.loads(line) for line in (tmp_path / "keep" / "log.jsonl").read_text().splitlines()]
    kl = [r["loss/keep"] for r in logged if "loss/keep" in r]
    assert len(kl) == 3 and kl[0] == pytest.approx(0.0, abs=1e-4) and all("keep/held" in r for r in logged)
    # --reason-question-data: clips that give only the drilled question (a drill's extra episodes), refused
    # without the question before anything is written
    folder = tmp_path / "ada" / "reason_latents"
    shards = [json.loads(p.read_text())["clips"] for p in sorted(folder.glob("*.json"))]
    asked = shards[0][0]["questions"][0]["question"]
    drill = [*keep[:-2], "--reason-question-data", str(folder)]
    assert main([*drill, "--out", str(tmp_path / "noq")]) == 2
    assert "name it with --reason-question" in capsys.readouterr().err and not (tmp_path / "noq").exists()
    assert main([*drill, "--out", str(tmp_path / "qdata"), "--reason-question", asked,
                 "--reason-question-share", "0.5"]) == 0
    assert f"on {2 * sum(map(len, shards))} clips" in capsys.readouterr().out  # the folder's clips once more
    assert main([*keep, "--out", str(tmp_path / "nokeep"), "--reason-keep", "-1"]) == 2
    assert "--reason-keep -1.0: give a weight > 0 and --init" in capsys.readouterr().err
    assert not (tmp_path / "nokeep").exists()
    assert main([*ada, "--out", str(tmp_path / "narrow"), "--reason-adapter", "2"]) == 2
    assert "adapter has rank 4; give at least that" in capsys.readouterr().err and not (tmp_path / "narrow").exists()
    assert main([*ada, "--out", str(tmp_path / "rank8"), "--reason-adapter", "8"]) == 0
    assert "widens from rank 4 to 8" in capsys.readouterr().out
    raw7, state7 = load_pretrained(tmp_path / "rank8" / "final")
    a, b = state7["backbone.layers.0.und.lora.qkv.A"].float(), state7["backbone.layers.0.und.lora.qkv.B"].float()
    assert raw7["model"]["reason_adapter"] == 8 and a.shape == (8, 64) and b.shape == (3 * 64, 8)
    assert torch.allclose(a[:4], state6["backbone.layers.0.und.lora.qkv.A"].float(), atol=1e-2)
    assert a[4:].abs().sum() > 0 and b[:, 4:].abs().max() < 1e-3
    # --reason-own WORLD: that world's questions take an adapter of its own (an update on top of the shared one, at
    # --reason-own-rank), which starts with no effect and alone trains, on that world's questions only; refused beside
    # --reason-adapter, and for a world the shards lack
    world = shards[0][0]["world"]
    assert main([*ada, "--out", str(tmp_path / "ownada"), "--reason-own", world, "--reason-adapter", "4"]) == 2
    assert "without --reason-adapter" in capsys.readouterr().err and not (tmp_path / "ownada").exists()
    assert main([*ada, "--out", str(tmp_path / "nowhere"), "--reason-own", "atlantis"]) == 2
    assert "no clip in the shards shows ['atlantis']" in capsys.readouterr().err
    assert main([*ada[:-4], "--steps", "2", "--lr", "1e-2", "--ema-decay", "0", "--out", str(tmp_path / "own"),
                 "--reason-own", world, "--reason-own-rank", "2"]) == 0
    out = capsys.readouterr().out
    assert f"(lora_{world}, rank 2) starts with no effect" in out and f"--reason-own {world}:" in out
    raw8, state8 = load_pretrained(tmp_path / "own" / "final")
    assert raw8["model"]["reason_own"] == [world] and raw8["model"]["reason_own_rank"] == 2
    own = {k for k in state8 if k not in state6}
    assert own and all(f".lora_{world}." in k for k in own)
    assert state8[f"backbone.layers.0.und.lora_{world}.qkv.A"].shape == (2, 64)
    assert state8[f"backbone.layers.0.und.lora_{world}.qkv.B"].float().abs().sum() > 0  # trained from zero
    assert all(torch.equal(state8[k], v) for k, v in state6.items())  # everything else bit for bit
    # --reason-keep with --reason-own: the teacher is the shared adapter (so from a trained own adapter the KL is
    # not 0 at the first step), and --reason-keep-tasks holds only the tasks named (none of them: nothing held);
    # an unknown task, or tasks without a teacher, refused before anything is written
    own_keep = [*ada[:-4], "--steps", "1", "--lr", "1e-9", "--ema-decay", "0", "--log-every", "1", "--reason-own", world]
    from_own = [a if a != str(tmp_path / "carried" / "final") else str(tmp_path / "own" / "final") for a in own_keep]
    assert main([*from_own, "--out", str(tmp_path / "ownkeep"), "--reason-keep", "1"]) == 0
    assert "answers the shared adapter get right are kept (KL to them, weight 1.0; tasks: all)" in \
        capsys.readouterr().out
    row = [json.loads(line) for line in (tmp_path / "ownkeep" / "log.jsonl").read_text().splitlines()][0]
    assert "keep/held" in row and "loss/keep" in row
    from kinema.model.reason_data import TASK_OF
    absent = sorted(set(TASK_OF.values()) - {TASK_OF.get(q["type"], q["type"]) for c in shards[0] for q in c["questions"]})
    if absent:  # a task the tiny shards never ask holds nothing
        assert main([*from_own, "--out", str(tmp_path / "ownnone"), "--reason-keep", "1", "--reason-keep-tasks",
                     absent[0]]) == 0
        row = [json.loads(line) for line in (tmp_path / "ownnone" / "log.jsonl").read_text().splitlines()][0]
        assert row["keep/held"] == 0 and row["loss/keep"] == 0
    assert main([*from_own, "--out", str(tmp_path / "badtask"), "--reason-keep", "1", "--reason-keep-tasks",
                 "juggling"]) == 2
    assert "--reason-keep-tasks juggling: expected tasks among" in capsys.readouterr().err
    assert main([*from_own, "--out", str(tmp_path / "noteacher"), "--reason-keep-tasks", "count"]) == 2
    assert "give --reason-keep" in capsys.readouterr().err
    assert not (tmp_path / "badtask").exists() and not (tmp_path / "noteacher").exists()


def test_adapters_average_as_the_updates_they_make():
    """mean_adapters: the mean of B A over rounds of different ranks, exactly at the ranks' sum, or its best
    approximation at a smaller rank; every other tensor is the plain mean; adapters on different layers refused."""
    from kinema.model.train import mean_adapters
    from kinema.train.checkpoint import CheckpointError

    torch.manual_seed(0)
    states = []
    for rank in (4, 8):
        state = WorldModel(tiny_config(reason_adapter=rank)).state_dict()
        states.append({k: torch.randn_like(v) if k.endswith(".B") else v.clone() for k, v in state.items()})
    site = "backbone.layers.0.und.lora.gate_up"
    updates = [s[site + ".B"] @ s[site + ".A"] for s in states]
    mean = (updates[0] + updates[1]) / 2
    exact = mean_adapters(states, ["a", "b"])
    assert exact[site + ".A"].shape[0] == 12
    assert torch.allclose(exact[site + ".B"] @ exact[site + ".A"], mean, atol=1e-5)
    # averaging the factors instead is not the mean update (same ranks, so it can be done at all)
    same = [states[0], {k: torch.randn_like(v) if ".lora." in k else v for k, v in states[0].items()}]
    factors = {k: (same[0][k] + same[1][k]) / 2 for k in (site + ".A", site + ".B")}
    products = (same[0][site + ".B"] @ same[0][site + ".A"] + same[1][site + ".B"] @ same[1][site + ".A"]) / 2
    assert not torch.allclose(factors[site + ".B"] @ factors[site + ".A"], products, atol=1e-2)
    # rank 5: the best rank-5 approximation of the mean update (its error is the dropped singular values')
    small = mean_adapters(states, ["a", "b"], rank=5)
    assert small[site + ".A"].shape[0] == 5 and small[site + ".B"].shape[1] == 5
    tail = torch.linalg.svdvals(mean)[5:].square().sum().sqrt()
    assert torch.allclose(torch.linalg.matrix_norm(small[site + ".B"] @ small[site + ".A"] - mean), tail, rtol=1e-3)
    key = "backbone.layers.0.und.qkv.weight"
    twice = {k: v if ".lora." in k else states[0][k] * 2 if v.is_floating_point() else v for k, v in states[1].items()}
    assert torch.allclose(mean_adapters([states[0], twice], ["a", "b"])[key], 1.5 * states[0][key])
    with pytest.raises(CheckpointError, match="cover different layers"):
        mean_adapters([states[0], {k: v for k, v in states[1].items() if "layers.0.und.lora" not in k}], ["a", "b"])


def test_graft_takes_the_named_layers_and_projections_of_the_adapter():
    """graft_adapter: the adapter of the layers and projections named comes from the donor, every other tensor
    (other layers' adapters, the base weights, the head) stays; an unknown projection or a donor without the
    tensor is refused."""
    from kinema.model.train import graft_adapter
    from kinema.train.checkpoint import CheckpointError

    torch.manual_seed(0)
    state = WorldModel(tiny_config(reason_adapter=4)).state_dict()
    donor = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
    out = graft_adapter(state, donor, [0], ["qkv", "proj"])
    moved = {k for k in state if not torch.equal(out[k], state[k])}
    assert moved == {f"backbone.layers.0.und.lora.{p}.{f}" for p in ("qkv", "proj") for f in "AB"}
    assert all(torch.equal(out[k], donor[k]) for k in moved)
    with pytest.raises(ValueError, match="unknown adapter projections"):
        graft_adapter(state, donor, [0], ["mlp"])
    with pytest.raises(CheckpointError, match="has no adapter tensor"):
        graft_adapter(state, {k: v for k, v in donor.items() if ".lora." not in k}, [0])


def test_reason_adapter_layers_trains_only_the_first_layers_adapter():
    """adapter_parameters(first_layers=N): the adapters of layers 0..N-1 only (not the pixel view, norm or head)."""
    model = WorldModel(tiny_config(reason_adapter=4))
    names = {n for n, _ in model.adapter_parameters(first_layers=1)}
    assert names and all(n.startswith("backbone.layers.0.und.lora.") for n in names)
    assert names < {n for n, _ in model.adapter_parameters()}


def test_a_registered_embodiment_trains_from_its_episodes(tmp_path, capsys):
    """A user's robot: 7-D actions no built-in embodiment takes. Refused with a clear error until registered with
    --embodiment; then its slot gets statistics (and action names) from its episodes, fresh or with --init, where
    the starting checkpoint's embodiments keep theirs."""
    from kinema.cli import main
    from kinema.data.lerobot import write_dataset
    from kinema.data.reader import EpisodeStore
    from kinema.train.checkpoint import load_pretrained
    from kinema.worlds.generate import generate

    generate("push", 2, 0, tmp_path / "src", size=32, frames=33, progress=False)
    store, eps = EpisodeStore(tmp_path / "src"), []
    for i in range(len(store)):
        ep = store.episode(i)
        ep.action = (ep.action[:, :7] * 3 + 1).astype("float32")  # not the arm's numbers any more
        ep.info = dict(ep.info, action_names=[f"joint_{j}" for j in range(7)])
        eps.append(ep)
    write_dataset(tmp_path / "data" / "my_arm", eps, progress=False)
    common = ["--preset", "tiny", "--data", str(tmp_path / "data"), "--steps", "1", "--batch-size", "2",
              "--reason-weight", "0", "--dtype", "fp32", "--device", "cpu"]
    assert main(["train", *common, "--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert "7-D actions" in err and "--embodiment NAME:7" in err
    assert main(["train", *common, "--embodiment", "my_arm:7:at:x", "--out", str(tmp_path / "bad")]) == 2
    assert "expected NAME:DIM[:after|at]" in capsys.readouterr().err

    assert main(["train", *common, "--embodiment", "my_arm:7", "--out", str(tmp_path / "run")]) == 0
    raw, _ = load_pretrained(tmp_path / "run" / "final")
    arm = raw["model"]["embodiments"][2]
    assert (arm["name"], arm["dim"], arm["timing"]) == ("my_arm", 7, "after")
    assert arm["action_names"] == [f"joint_{j}" for j in range(7)]  # taken from its episodes
    # statistics over the clips' rows: the one 33-frame clip of each episode
    assert np.allclose(arm["mean"], np.concatenate([ep.action[:33] for ep in eps]).mean(0), atol=1e-5)

    # --init: a checkpoint that has never seen it (trained on the built-in arm) gains it; its own statistics stay
    generate("push", 2, 1, tmp_path / "arm" / "push", size=32, frames=33, progress=False)
    base = [*common[:2], "--data", str(tmp_path / "arm"), *common[4:]]
    assert main(["train", *base, "--out", str(tmp_path / "base")]) == 0
    before, _ = load_pretrained(tmp_path / "base" / "final")
    assert main(["train", *common, "--init", str(tmp_path / "base" / "final"), "--embodiment", "my_arm:7",
                 "--out", str(tmp_path / "post")]) == 0
    after, _ = load_pretrained(tmp_path / "post" / "final")
    assert after["model"]["embodiments"][:2] == before["model"]["embodiments"][:2]
    assert np.allclose(after["model"]["embodiments"][2]["mean"], arm["mean"], atol=1e-5)
    capsys.readouterr()
    assert main(["train", *common, "--init", str(tmp_path / "post" / "final"), "--embodiment", "other:5",
                 "--out", str(tmp_path / "none")]) == 2  # the episodes are my_arm's (by name): none is other's
    assert "--embodiment other: no episode in --data has their actions" in capsys.readouterr().err
    assert main(["train", *common, "--init", str(tmp_path / "post" / "final"), "--embodiment", "my_arm:7",
                 "--out", str(tmp_path / "again")]) == 2
    assert "embodiment 'my_arm' is already registered" in capsys.readouterr().err


def test_inverse_adapter_trains_alone_on_inverse_dynamics(tmp_path, capsys):
    """--inverse-adapter: refused without --init, or with another mixture or mode weights (it draws inverse dynamics
    alone); then it starts at zero and is the only thing that moves."""
    from kinema.cli import main
    from kinema.train.checkpoint import load_pretrained
    from kinema.worlds.generate import generate

    generate("push", 2, 0, tmp_path / "data" / "push", size=32, frames=33, progress=False)
    common = ["--preset", "tiny", "--data", str(tmp_path / "data"), "--batch-size", "2", "--reason-weight", "0",
              "--dtype", "fp32", "--device", "cpu", "--ema-decay", "0"]
    assert main(["train", *common, "--steps", "1", "--out", str(tmp_path / "base")]) == 0
    init = ["--init", str(tmp_path / "base" / "final")]
    for bad, said in ((["--mixture", "actions"], "--init"), ([*init], "--mixture actions"),
                      ([*init, "--mixture", "actions", "--mode-weights", "policy=2"], "no --mode-weights")):
        capsys.readouterr()
        assert main(["train", *common, "--steps", "1", "--inverse-adapter", "4", *bad, "--out", str(tmp_path / "x")]) == 2
        assert said in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["train", *common, *init, "--mixture", "actions", "--inverse-adapter", "4", "--steps", "2", "--lr",
                 "1e-2", "--out", str(tmp_path / "inv")]) == 0
    assert "the generator's inverse-dynamics adapter (inverse_adapter) is not in the checkpoint" in capsys.readouterr().out
    _, before = load_pretrained(tmp_path / "base" / "final")
    raw, after = load_pretrained(tmp_path / "inv" / "final")
    assert raw["model"]["inverse_adapter"] == 4 and raw["model"]["inverse_context"] == 0
    moved = {k for k in after if k not in before or not torch.equal(after[k], before[k])}
    assert moved == {k for k in after if ".gen.inverse." in k}
    assert after["backbone.layers.0.gen.inverse.qkv.B"].float().abs().sum() > 0  # trained away from zero
    # --inverse-context: the reasoner's adapter for inverse dynamics' given frames joins it, from that checkpoint
    assert main(["train", *common, *init, "--mixture", "actions", "--inverse-context", "4", "--steps", "1",
                 "--out", str(tmp_path / "x")]) == 2
    assert "give --inverse-adapter too" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["train", *common, "--init", str(tmp_path / "inv" / "final"), "--mixture", "actions",
                 "--inverse-adapter", "4", "--inverse-context", "4", "--steps", "2", "--lr", "1e-2",
                 "--out", str(tmp_path / "ctx")]) == 0
    assert "the reasoner's inverse-dynamics adapter (inverse_context) is not in" in capsys.readouterr().out
    raw, ctx = load_pretrained(tmp_path / "ctx" / "final")
    assert raw["model"]["inverse_context"] == 4
    moved = {k for k in ctx if k not in after or not torch.equal(ctx[k], after[k])}
    assert moved == {k for k in ctx if ".inverse." in k}
    assert ctx["backbone.layers.0.und.inverse.qkv.B"].float().abs().sum() > 0
    # --inverse-own: the arm's own adapters start as the shared ones and alone train; the shared ones (the camera's)
    # stay bit for bit
    ctx_init = ["--init", str(tmp_path / "ctx" / "final"), "--mixture", "actions"]
    for bad, said in ((["--inverse-own", "single_arm"], "give --inverse-adapter too"),
                      (["--inverse-adapter", "4", "--inverse-own", "hexapod"], "'hexapod': not an embodiment")):
        assert main(["train", *common, *ctx_init, *bad, "--steps", "1", "--out", str(tmp_path / "x")]) == 2
        assert said in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["train", *common, *ctx_init, "--inverse-adapter", "4", "--inverse-own", "single_arm", "--steps", "2",
                 "--lr", "1e-2", "--out", str(tmp_path / "own")]) == 0
    assert "single_arm's own inverse-dynamics adapters (inverse_0) start as the shared ones" in capsys.readouterr().out
    raw, own = load_pretrained(tmp_path / "own" / "final")
    assert raw["model"]["inverse_own"] == ["single_arm"] and raw["model"]["inverse_context"] == 4
    assert {k for k in own if k not in ctx} == {k.replace(".inverse.", ".inverse_0.") for k in ctx if ".inverse." in k}
    assert all(torch.equal(own[k], ctx[k]) for k in ctx)  # everything it had, the shared adapters too, is as it was
    key = "backbone.layers.0.und.inverse_0.qkv.B"
    assert not torch.equal(own[key], ctx[key.replace("inverse_0", "inverse")])  # trained on from the shared copy


def test_train_with_edm_learns_its_loss_uncertainty(tmp_path):
    from kinema.cli import main
    from kinema.train.checkpoint import load_pretrained
    from kinema.worlds.generate import generate

    generate("free_fall", 2, 0, tmp_path / "data" / "free_fall", size=32, frames=33, progress=False)
    assert main(["train", "--preset", "tiny", "--schedule", "edm", "--data", str(tmp_path / "data"), "--steps", "2",
                 "--batch-size", "2", "--reason-weight", "0", "--dtype", "fp32", "--device", "cpu", "--out",
                 str(tmp_path / "run")]) == 0
    raw, state = load_pretrained(tmp_path / "run" / "final")
    assert raw["model"]["schedule"] == "edm" and raw["model"]["loss_uncertainty"]
    assert "loss_logvar.out.weight" in state
    assert "loss/logvar" in (tmp_path / "run" / "log.jsonl").read_text()
