"""Training: the LAMP-style loss, LoRA-only gradients, the ablation switches and the train pipeline's saved motion."""

import json

import pytest
import torch
from safetensors import safe_open

from flashctl.context import BuildContext
from flashctl.errors import ConfigError, TrainingDivergedError
from flashctl.model import flash
from flashctl.model.lora import add_motion_lora
from flashctl.model.motion_alignment import CorrespondenceAlignProcessor, MotionAlignProcessor
from flashctl.pipeline.train import train
from flashctl.progress import ListReporter
from flashctl.video import frames_to_tensor
from motion_kit import make_action, tiny_config

from flashctl_animatediff.backbone import build_backbone
from flashctl_animatediff import AnimateDiffOptions


PLAIN = {"mam": {"motion_align": False, "correspondence_align": False}}  # plain: both alignments off
SMALL = {"backbone": {"animatediff": {"channels": [16, 32], "vae_channels": [8, 8, 8]}}}


def _clip_latents(backbone):
    video = torch.rand(1, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1  # (B, F, 3, H, W)
    return backbone.encode_video(video), backbone.encode_prompt(["a square slides right"])


def test_only_lora_gets_gradients_and_frame_zero_is_ignored():
    backbone = build_backbone(AnimateDiffOptions(), BuildContext())
    params = add_motion_lora(backbone, rank=4, alpha=4)
    latents, emb = _clip_latents(backbone)
    flash.training_loss(backbone, latents, emb, torch.Generator().manual_seed(0)).backward()
    with_grad = [n for n, p in backbone.unet.named_parameters() if p.grad is not None]
    assert with_grad and all(".lora_" in n for n in with_grad)
    assert {id(p) for p in params} == {id(p) for p in backbone.unet.parameters() if p.requires_grad}
    assert any(p.grad.abs().sum() > 0 for p in params)
    # the loss ignores frame 0: the target/prediction there may be anything
    objective = backbone.objective
    noise, t = objective.draw(latents, torch.Generator().manual_seed(1))
    with torch.no_grad():
        base = flash.denoising_loss(backbone, objective, latents, noise, t, emb)
        noise0 = noise.clone()
        noise0[:, 0] += 5.0  # frame 0 is never noised, and its error is not counted
        assert torch.equal(flash.denoising_loss(backbone, objective, latents, noise0, t, emb), base)


def test_training_loss_decreases_on_one_clip():
    torch.manual_seed(0)
    backbone = build_backbone(AnimateDiffOptions(), BuildContext())
    params = add_motion_lora(backbone, rank=8, alpha=8)
    latents, emb = _clip_latents(backbone)
    fixed = latents.expand(4, -1, -1, -1, -1)  # 4 fixed (noise, timestep) draws for evaluation

    def held_out() -> float:
        with torch.no_grad():
            return flash.training_loss(backbone, fixed, emb, torch.Generator().manual_seed(123)).item()

    before = held_out()
    optimizer = torch.optim.AdamW(params, lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        flash.training_loss(backbone, latents, emb, generator).backward()
        optimizer.step()
        optimizer.zero_grad()
    assert held_out() < 0.98 * before


def test_train_pipeline_saves_a_complete_motion(tmp_path, host):
    config = tiny_config(tmp_path, train={"strong_augment": True, "mam": {"motion_align": True, "correspondence_align": True},
                                          "augmentations": ["invert", "grayscale"]})
    library = make_action(config)
    reporter = ListReporter()
    result = train(config, library, "slide", host, reporter=reporter, steps=3)
    assert result.steps == 3 and result.weights_dir == library.weights_dir("slide")
    assert ("start", ("train", 3)) in reporter.events
    losses = [m["loss"] for kind, (n, m) in (e for e in reporter.events if e[0] == "advance") if m]
    assert len(losses) == 3 and result.final_loss == losses[-1]

    weights = library.weights_config("slide")
    assert weights["backbone"]["name"] == "animatediff" and weights["backbone"]["options"]["preset"] == "tiny"
    assert weights["backbone"]["geometry"]["downsample"] == 4
    assert (weights["frames"], weights["size"], weights["lora"]["rank"]) == (4, 32, 8)
    with safe_open(str(result.weights_dir / "lora.safetensors"), framework="pt") as fh:
        keys, meta = list(fh.keys()), fh.metadata()
    assert keys and all("lora_" in k for k in keys)
    assert meta["action"] == "slide" and meta["backbone"] == "animatediff"

    prov = json.loads((library.path("slide") / "provenance.json").read_text())
    assert prov["losses"] == losses and prov["seed"] == 0
    assert prov["config"]["train"]["augmentations"] == ["invert", "grayscale"]
    assert [a["name"] for a in prov["components"]["augmentations"]] == ["invert", "grayscale"]
    assert prov["mam"]["ablation"] == "#5" and prov["mam"]["augmented_weight"] == 2.0  # lambdas default to 1
    assert set(prov["mam"]["layers"].values()) == {"motion", "correspondence"}
    assert set(prov["files"]) == {"weights/config.json", "weights/lora.safetensors", "weights/README.md", "preview.gif"}
    assert library.verify("slide") == []  # every hash in provenance matches the files on disk
    assert (library.path("slide") / "preview.gif").stat().st_size > 0


def test_extra_lora_targets_are_trained_recorded_and_loaded_back(tmp_path, host):
    from flashctl.pipeline.animate import load_animator

    extra = r".*attentions\.\d+\.transformer_blocks\.\d+\.attn2\.to_k"  # the spatial text cross-attention keys
    config = tiny_config(tmp_path, train={"lora_extra_targets": [extra], "lr": 1e-2})
    library = make_action(config)
    result = train(config, library, "slide", host, steps=2)
    with safe_open(str(result.weights_dir / "lora.safetensors"), framework="pt") as fh:
        saved = {k: fh.get_tensor(k) for k in fh.keys()}
    extra_keys = [k for k in saved if ".attn2.to_k." in k and "motion_modules" not in k]
    assert extra_keys and any(saved[k].abs().sum() > 0 for k in extra_keys if "lora_B" in k)  # trained
    assert library.weights_config("slide")["lora"]["targets"][-1] == extra
    loaded = dict(load_animator(config, library, "slide", host).model.backbone.unet.named_parameters())
    for key in extra_keys:  # peft keys drop the adapter name; the module path is the same
        name = key.replace(".weight", ".motion.weight")
        assert torch.equal(loaded[name].detach(), saved[key]), key


def test_extra_targets_may_be_layers_diffusers_calls_by_keyword(tmp_path, host):
    # the motion modules call proj_in/proj_out as proj_in(input=...); a LoRA'd layer must accept that
    extra = r".*motion_modules\.\d+\.proj_(in|out)"
    config = tiny_config(tmp_path, train={"lora_extra_targets": [extra], "lr": 1e-2})
    library = make_action(config)
    result = train(config, library, "slide", host, steps=2)
    with safe_open(str(result.weights_dir / "lora.safetensors"), framework="pt") as fh:
        trained = [k for k in fh.keys() if ".proj_in.lora_B" in k or ".proj_out.lora_B" in k]
        assert trained and all(fh.get_tensor(k).abs().sum() > 0 for k in trained)


@pytest.mark.parametrize("feed_forward", [True, False])
def test_motion_lora_wraps_the_motion_modules_feed_forward_by_default(tmp_path, host, feed_forward):
    options = {"backbone": {"animatediff": {} if feed_forward else {"lora_feed_forward": False}}}
    config = tiny_config(tmp_path, train={"lr": 1e-2}, options=options)
    library = make_action(config)
    result = train(config, library, "slide", host, steps=2)
    with safe_open(str(result.weights_dir / "lora.safetensors"), framework="pt") as fh:
        ff = [k for k in fh.keys() if "motion_modules" in k and ".ff.net." in k and "lora_B" in k]
        assert bool(ff) == feed_forward and all(fh.get_tensor(k).abs().sum() > 0 for k in ff)  # trained
        assert any(".attn1.to_q.lora_B" in k for k in fh.keys())  # temporal attention either way
    assert any(r"\.ff\.net\." in t for t in library.weights_config("slide")["lora"]["targets"]) == feed_forward


def test_an_extra_target_that_matches_no_layer_is_refused_by_name(tmp_path, host):
    config = tiny_config(tmp_path, train={"lora_extra_targets": [r".*motion_modules\.\d+\.to_qq"]})
    library = make_action(config)
    with pytest.raises(ConfigError, match=r"lora_extra_targets: '\.\*motion_modules.*to_qq' matches no layer") as err:
        train(config, library, "slide", host, steps=1)
    assert "motion_modules" in err.value.hint and not library.is_trained("slide")


def test_preview_samples_with_the_animate_guidance(tmp_path, host, monkeypatch):
    calls = []
    real_sample = flash.sample

    def spy(*args, **kwargs):
        calls.append(args)  # (backbone, decoder, image, prompt_emb, frames, steps, scheduler, scale, negative, gen)
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(flash, "sample", spy)
    config = tiny_config(tmp_path, animate={"guidance_scale": 3.0, "negative_prompt": "blurry"})
    train(config, make_action(config), "slide", host, steps=1)
    (call,) = calls
    assert call[7] == 3.0 and call[8].shape == call[3].shape  # the preview looks like what animate will render


def test_divergence_keeps_the_saved_motion(tmp_path, host, monkeypatch):
    config = tiny_config(tmp_path, train=PLAIN)
    library = make_action(config)
    train(config, library, "slide", host, steps=1)
    before = {p.name: p.read_bytes() for p in library.weights_dir("slide").iterdir()}
    monkeypatch.setattr(flash, "training_loss", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(TrainingDivergedError, match="diverged at step 1"):
        train(config, library, "slide", host, steps=2)
    assert {p.name: p.read_bytes() for p in library.weights_dir("slide").iterdir()} == before


def test_motion_changing_augmentation_is_refused(tmp_path, host):
    config = tiny_config(tmp_path, train={"strong_augment": True, "augmentations": ["invert", "hflip"]})
    library = make_action(config)
    with pytest.raises(ConfigError, match=r"train.augmentations\[1\].*'hflip'.*does not preserve motion"):
        train(config, library, "slide", host, steps=1)
    assert not library.is_trained("slide")


def test_resume_continues_from_the_last_checkpoint(tmp_path, host, monkeypatch):
    config = tiny_config(tmp_path, train={"checkpoint_every": 1, **PLAIN})
    library = make_action(config)
    real, calls = flash.training_loss, []

    def fails_on_second_step(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) == 2 else loss

    monkeypatch.setattr(flash, "training_loss", fails_on_second_step)
    with pytest.raises(TrainingDivergedError, match="step 2"):
        train(config, library, "slide", host, steps=3)
    assert not library.is_trained("slide")
    monkeypatch.setattr(flash, "training_loss", real)
    reporter = ListReporter()
    result = train(config, library, "slide", host, steps=3, resume=True, reporter=reporter)
    prov = library.provenance("slide")
    assert prov["resumed_from_step"] == 1 and len(prov["losses"]) == 3 and result.steps == 3
    assert any("resuming 'slide' from step 1" in n for n in reporter.notes())
    assert not (library.cache_dir("slide") / "checkpoint" / "state.json").exists()  # cleared after the save


ROWS = {  # METHOD.md's ablation table: strong augment, motion align, correspondence align, DED
    "#1": {"strong_augment": False, **PLAIN, "detail_decoder": False},
    "#2": {"strong_augment": True, **PLAIN, "detail_decoder": False},
    "#3": {"strong_augment": True, "mam": {"motion_align": True, "correspondence_align": False}, "detail_decoder": False},
    "#4": {"strong_augment": True, "mam": {"motion_align": False, "correspondence_align": True}, "detail_decoder": False},
    "#5": {"strong_augment": True, "mam": {"motion_align": True, "correspondence_align": True}, "detail_decoder": False},
    "#6": {"strong_augment": True, "mam": {"motion_align": True, "correspondence_align": True}, "detail_decoder": True},
}


@pytest.mark.parametrize("row", ROWS)
def test_every_ablation_row_trains_from_config_alone(tmp_path, host, monkeypatch, row):
    switches = ROWS[row]
    # gradient checkpointing re-runs the MAM forwards during backward: train must keep them aligned there
    mam = {**switches["mam"], "lambda_motion": 0.5, "lambda_corr": 2.0}
    config = tiny_config(tmp_path, train={**switches, "mam": mam, "augmentations": ["invert"], "batch_size": 2,
                                          "gradient_checkpointing": True},
                         options=SMALL, model={"decoder": "detail-enhance" if switches["detail_decoder"] else "vae"})
    library = make_action(config)
    real, calls = flash.training_loss, []

    def recording(backbone, x, emb, generator, augmented=None, augmented_weight=1.0):
        kinds = {type(p) for p in backbone.unet.attn_processors.values()}
        calls.append((backbone, x, augmented, augmented_weight, kinds))
        return real(backbone, x, emb, generator, augmented=augmented, augmented_weight=augmented_weight)

    monkeypatch.setattr(flash, "training_loss", recording)
    train(config, library, "slide", host, steps=1)
    (backbone, x, augmented, weight, kinds), = calls
    assert (MotionAlignProcessor in kinds) == switches["mam"]["motion_align"]
    assert (CorrespondenceAlignProcessor in kinds) == switches["mam"]["correspondence_align"]
    assert weight == {"#1": 0.0, "#2": 1.0, "#3": 0.5, "#4": 2.0, "#5": 2.5, "#6": 2.5}[row]
    prov = library.provenance("slide")
    assert prov["mam"]["ablation"] == row and prov["train"]["detail_decoder"] == switches["detail_decoder"]
    assert sorted(set(prov["mam"]["layers"].values())) == [k for k in ("correspondence", "motion")
                                                           if switches["mam"][f"{k}_align"]]
    # MAM is training-only: the backbone that sampled the preview runs the stock processors again
    assert not any(isinstance(p, (MotionAlignProcessor, CorrespondenceAlignProcessor))
                   for p in backbone.unet.attn_processors.values())
    if not switches["strong_augment"]:
        assert augmented is None and x.shape[0] == 2
        return
    # x~ pairs up with x: each row is the same clip, inverted (the one augmentation allowed here), re-encoded
    clips = torch.stack([frames_to_tensor(c) for c in library.load_frames("slide")[0]])  # (N, F, 3, S, S)
    plain, inverted = backbone.encode_video(clips), backbone.encode_video(-clips)  # (N, F, c, h, w)
    for b in range(x.shape[0]):
        i = next(i for i in range(len(clips)) if torch.allclose(x[b], plain[i], atol=1e-5))
        torch.testing.assert_close(augmented[b], inverted[i], atol=1e-5, rtol=1e-5)


def test_align_switch_without_strong_augment_is_refused(tmp_path, host):
    config = tiny_config(tmp_path)
    library = make_action(config)
    toml = library.path("slide") / "motion.toml"  # the action's own [train] asks for MAM without the copies
    toml.write_text(toml.read_text() + "\n[train.mam]\nmotion_align = true\n")
    with pytest.raises(ConfigError, match=r"train.mam.motion_align = true needs train.strong_augment = true"):
        train(config, library, "slide", host, steps=1)
    assert not library.is_trained("slide")
