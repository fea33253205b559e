"""Pretraining the tiny base (flashctl_animatediff.pretrain, scripts/pretrain_base.py) and the residual target."""

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

from functools import partial

import numpy as np
import pytest
import torch
from flashctl_animatediff.pretrain import MAX_BYTES, PretrainSettings, pretrain
from flashctl_animatediff.pretrain_data import ClipSource, Pool
from flashctl_synth.actions import ACTIONS
from flashctl_synth.render import render_clip
from safetensors.torch import load_file

from flashctl.context import BuildContext
from flashctl.errors import CheckpointError, ConfigError, FlashctlError, IncompatibleMotionError
from flashctl.model.motion_files import check_compatible
from flashctl.plugins import build_host
from flashctl.progress import ListReporter

F, S = 4, 16  # frames, pixels
SOURCE = ClipSource(prompts={a: ACTIONS[a].prompt for a in ("jumping_jack", "squat")},
                    render=lambda action, seed, split: render_clip(action, frames=F, size=S, seed=seed,
                                                                   split=split)[0])


@pytest.fixture(scope="module")
def registry():
    return build_host().registry


class Builder:
    """``build`` for pretrain that keeps every backbone it made."""

    def __init__(self, registry) -> None:
        self.registry, self.made = registry, []

    def __call__(self, options):
        self.made.append(self.registry.create("backbone", "animatediff", options, BuildContext()))
        return self.made[-1]


class StopAt(ListReporter):
    """Ctrl-C after U-Net step ``at``."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.task, self.step = at, "", 0

    def start(self, task, total=None):
        super().start(task, total)
        self.task, self.step = task, 0

    def advance(self, n=1, **metrics):
        super().advance(n, **metrics)
        self.step += n
        if self.task == "pretrain unet" and metrics and self.step == self.at:
            raise KeyboardInterrupt


def _settings(out, **kw):
    base = {"vae_steps": 2, "steps": 3, "batch": 2, "frames": F, "size": S, "clips_per_action": 2,
            "checkpoint_every": 10, "sample_every": 2, "sample_steps": 2}
    return PretrainSettings(out=out, **{**base, **kw})


def _state(out, stage):
    return json.loads((out / "checkpoints" / stage / "state.json").read_text())


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, registry):
    straight = pretrain(_settings(tmp_path / "a"), SOURCE, Builder(registry))
    with pytest.raises(KeyboardInterrupt):
        pretrain(_settings(tmp_path / "b"), SOURCE, Builder(registry), StopAt(2))
    assert _state(tmp_path / "b", "unet")["step"] == 2  # saved on Ctrl-C although checkpoint_every is 10
    assert not (tmp_path / "b" / "final").exists()
    with pytest.raises(FlashctlError, match="--resume|already holds"):
        pretrain(_settings(tmp_path / "b"), SOURCE, Builder(registry))
    reporter = ListReporter()
    resumed = pretrain(_settings(tmp_path / "b", resume=True), SOURCE, Builder(registry), reporter)
    assert any("resuming 'unet' from step 2" in n for n in reporter.notes())
    a, b = _state(tmp_path / "a", "unet"), _state(tmp_path / "b", "unet")
    assert b["step"] == 3 and len(b["losses"]) == 3 and all(math.isfinite(x) for x in b["losses"])
    assert a["losses"] == pytest.approx(b["losses"], rel=1e-4)  # same batches, noise and optimizer state
    wa = load_file(str(straight / "unet" / "diffusion_pytorch_model.safetensors"))
    wb = load_file(str(resumed / "unet" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)
    assert all(math.isfinite(x) for x in _state(tmp_path / "a", "vae")["losses"])
    assert (tmp_path / "a" / "samples" / "step-2.png").is_file()
    assert (tmp_path / "a" / "samples" / "vae-step-2.png").is_file()
    with pytest.raises(CheckpointError, match="made with size = 16, now 32"):
        pretrain(replace(_settings(tmp_path / "b", resume=True), size=32), SOURCE, Builder(registry))


def test_final_folder_loads_as_the_tiny_base_with_the_same_outputs(tmp_path, registry):
    build = Builder(registry)
    final = pretrain(_settings(tmp_path, steps=2), SOURCE, build)
    trained = build.made[-1]
    provenance = json.loads((final / "provenance.json").read_text())
    assert provenance["unet"]["steps"] == 2 and provenance["vae"]["steps"] == 2
    assert provenance["bytes"] == sum(f.stat().st_size for f in final.rglob("*") if f.is_file()) - \
        (final / "provenance.json").stat().st_size - (final / "README.md").stat().st_size
    assert provenance["bytes"] <= MAX_BYTES
    loaded = registry.create("backbone", "animatediff", {"base": str(final)}, BuildContext())
    assert (loaded.options.target, loaded.options.prediction_type) == ("residual", "v_prediction")  # the base's record
    with pytest.raises(ConfigError, match="options.backbone.animatediff.prediction_type = 'epsilon'.*v_prediction"):
        registry.create("backbone", "animatediff", {"base": str(final), "prediction_type": "epsilon"}, BuildContext())
    scale = loaded.vae.config.scaling_factor
    assert scale == pytest.approx(trained.vae.config.scaling_factor) and scale != 0.18215  # fitted, not default
    video = torch.rand(1, F, 3, S, S, generator=torch.Generator().manual_seed(0)) * 2 - 1  # (B, F, 3, H, W)
    emb = loaded.encode_prompt([SOURCE.prompts["squat"]])
    assert torch.allclose(emb, trained.encode_prompt([SOURCE.prompts["squat"]]))
    z = loaded.encode_video(video)
    assert torch.allclose(z, trained.encode_video(video), atol=1e-5)
    out = loaded.denoise(z, torch.tensor([300]), emb)
    assert torch.allclose(out, trained.denoise(z, torch.tensor([300]), emb), atol=1e-5)
    fresh = registry.create("backbone", "animatediff", {"target": "residual", "prediction_type": "v_prediction"},
                            BuildContext())
    assert not torch.allclose(out, fresh.denoise(z, torch.tensor([300]), emb), atol=1e-3)
    assert loaded.geometry()["base"] != fresh.geometry()["base"]


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_residual_target_diffuses_the_difference_from_frame_0(registry, prediction_type):
    make = lambda target: registry.create(
        "backbone", "animatediff", {"target": target, "prediction_type": prediction_type}, BuildContext())
    residual, latent = make("residual"), make("latent")
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, F, 4, 4, 4, generator=g)  # (B, F, c, h, w) noisy latents, frame 0 the clean reference
    emb, t = torch.randn(2, 77, 32, generator=g), torch.tensor([100, 700])  # (B, seq, dim), (B,)
    abar = residual.objective.alphas_cumprod[t].view(-1, 1, 1, 1, 1)  # (B, 1, 1, 1, 1)
    shifted = torch.cat([z[:, :1], z[:, 1:] - abar.sqrt() * z[:, :1]], dim=1)
    expected = latent.denoise(shifted, t, emb)
    if prediction_type == "v_prediction":  # v of z_f = v of (z_f - z_0) - sqrt(1 - abar) z_0
        expected = torch.cat([expected[:, :1], expected[:, 1:] - (1 - abar).sqrt() * z[:, :1]], dim=1)
    assert torch.allclose(residual.denoise(z, t, emb)[:, 1:], expected[:, 1:], atol=1e-5)
    assert not torch.allclose(residual.denoise(z, t, emb), latent.denoise(z, t, emb), atol=1e-3)
    assert "target" not in latent.geometry()  # the default geometry is unchanged
    with pytest.raises(IncompatibleMotionError, match="base_config_sha256"):
        check_compatible("wave", {"backbone": {"geometry": latent.geometry()}}, residual.geometry())


def test_recolour_is_one_remap_per_clip_and_keeps_motion():
    import importlib.util

    import numpy as np

    path = Path(__file__).resolve().parents[1] / "scripts" / "pretrain_base.py"
    spec = importlib.util.spec_from_file_location("pretrain_script", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    frames[2] = frames[0]  # a frame that repeats: it must stay identical to frame 0 after the remap
    outs = [script.recolour(frames, seed) for seed in range(12)]
    assert all(np.array_equal(o, script.recolour(frames, s)) for s, o in enumerate(outs))  # deterministic
    changed = [o for o in outs if not np.array_equal(o, frames)]
    assert 0 < len(changed) < len(outs)  # about half the clips are remapped
    assert all(np.array_equal(o[2], o[0]) for o in changed)  # same remap on every frame



def test_decoder_stage_trains_the_decoder_only_and_final_takes_its_latest_weights(tmp_path, registry):
    with pytest.raises(ConfigError, match="--decoder-steps 0"):
        pretrain(_settings(tmp_path, stage="decoder"), SOURCE, Builder(registry))
    vae_base = pretrain(_settings(tmp_path, stage="vae"), SOURCE, Builder(registry))
    before = load_file(str(vae_base / "vae" / "diffusion_pytorch_model.safetensors"))
    pretrain(_settings(tmp_path, stage="decoder", decoder_steps=3), SOURCE, Builder(registry))
    tuned = load_file(str(tmp_path / "checkpoints" / "decoder" / "lora.safetensors"))  # the whole VAE's state dict
    assert all(torch.equal(tuned[k], before[k]) for k in before if not k.startswith(("decoder.", "post_quant")))
    assert any(not torch.equal(tuned[k], before[k]) for k in before if k.startswith("decoder."))
    assert (tmp_path / "samples" / "decoder-step-2.png").is_file()
    final = pretrain(_settings(tmp_path, stage="unet", steps=1), SOURCE, Builder(registry))
    shipped = load_file(str(final / "vae" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(shipped[k], tuned[k]) for k in tuned)  # encoder as trained, decoder as fine-tuned
    provenance = json.loads((final / "provenance.json").read_text())
    assert provenance["decoder"]["steps"] == 3 and "decoder alone 3 steps" in (final / "README.md").read_text()


def test_decoder_refit_of_a_finished_base_writes_a_base_with_only_its_decoder_changed(tmp_path, registry):
    """A finished base copied to OUT/vae-base: --stage decoder writes OUT/decoder-base, whose encoder and U-Net
    (the latent space and the motion prior) are the original's, and whose provenance says what was refitted."""
    final = pretrain(_settings(tmp_path / "first", steps=1), SOURCE, Builder(registry))
    shutil.copytree(final, tmp_path / "refit" / "vae-base")
    refit = pretrain(_settings(tmp_path / "refit", stage="decoder", decoder_steps=2), SOURCE, Builder(registry))
    assert refit == tmp_path / "refit" / "decoder-base"
    for part in ("vae", "unet"):
        old, new = (load_file(str(f / part / "diffusion_pytorch_model.safetensors")) for f in (final, refit))
        assert old.keys() == new.keys()
        kept = [k for k in old if part == "unet" or not k.startswith(("decoder.", "post_quant"))]
        assert all(torch.equal(old[k], new[k]) for k in kept)
        if part == "vae":
            assert any(not torch.equal(old[k], new[k]) for k in old if k.startswith("decoder."))
    provenance = json.loads((refit / "provenance.json").read_text())
    assert provenance["unet"]["steps"] == 1 and provenance["decoder_refit"]["steps"] == 2
    assert "decoder alone was refitted (encoder unchanged) 2 steps" in (refit / "README.md").read_text()
    builder = Builder(registry)
    builder({"preset": "tiny", "base": str(refit)})  # loads as a base
    assert torch.equal(builder.made[0].vae.decoder.conv_out.weight,
                       load_file(str(refit / "vae" / "diffusion_pytorch_model.safetensors"))["decoder.conv_out.weight"])


def test_encoder_anchor_refits_the_encoder_near_its_latents_and_only_in_the_decoder_stage(tmp_path, registry):
    with pytest.raises(ConfigError, match="--encoder-anchor"):
        pretrain(_settings(tmp_path / "a", encoder_anchor=1.0), SOURCE, Builder(registry))
    vae_base = pretrain(_settings(tmp_path / "b", stage="vae"), SOURCE, Builder(registry))
    before = load_file(str(vae_base / "vae" / "diffusion_pytorch_model.safetensors"))
    moved = {}
    for anchor in (1.0, 1e4):
        out = tmp_path / f"b{anchor:g}"
        shutil.copytree(vae_base, out / "vae-base")
        refit = pretrain(_settings(out, stage="decoder", decoder_steps=3, encoder_anchor=anchor), SOURCE,
                         Builder(registry))
        after = load_file(str(refit / "vae" / "diffusion_pytorch_model.safetensors"))
        moved[anchor] = sum((after[k] - before[k]).abs().sum().item() for k in before if k.startswith("encoder."))
    assert moved[1.0] > 0  # the encoder trains
    assert moved[1e4] < moved[1.0]  # a stronger pull keeps it nearer the latents the U-Net learned on
    record = json.loads((tmp_path / "b1" / "decoder-base" / "provenance.json").read_text())["decoder_refit"]
    assert record["settings"]["encoder_anchor"] == 1.0 and record["steps"] == 3


def test_a_stage_budget_ends_the_stage_checkpointed_and_resume_goes_on(tmp_path, registry):
    """``unet_minutes``: the U-Net stage stops after the step that passes its budget, final/ is written from
    what was trained, and --resume with no budget finishes the steps."""
    reporter = ListReporter()
    final = pretrain(_settings(tmp_path, steps=3, unet_minutes=1e-9), SOURCE, Builder(registry), reporter)
    assert json.loads((final / "provenance.json").read_text())["unet"]["steps"] == 1
    assert _state(tmp_path, "unet")["step"] == 1 and _state(tmp_path, "vae")["step"] == 2  # only the U-Net's
    assert any("stopping at step 1 of 3" in n for n in reporter.notes())
    assert (tmp_path / "samples" / "step-1.png").is_file()  # its samples at the step it stopped
    again = pretrain(_settings(tmp_path, steps=3, resume=True), SOURCE, Builder(registry))
    assert json.loads((again / "provenance.json").read_text())["unet"]["steps"] == 3


def test_the_script_renders_wide_appearances_and_motion_priors(tmp_path):
    """scripts/pretrain_base.py: --appearance wide takes every other training clip from the pose split (random
    colours), never the held-out pool; the motion priors render; the budgets reach the settings."""
    from flashctl_synth.world import POOLS
    from script_kit import loaded_script

    render = partial(render_clip, frames=F, size=S)
    with loaded_script("scripts/pretrain_base.py") as script:
        args = script.parse(["--out", str(tmp_path), "--appearance", "wide", "--actions", "squat,wander_side",
                             "--unet-minutes", "2.5"])
        clips = {seed: script.training_clip(render, "wander_side", seed, "train", appearance="wide",
                                            recoloured=False) for seed in (0, 1)}
        narrow = script.training_clip(render, "wander_side", 1, "train", appearance="train", recoloured=False)
    assert (args.appearance, args.actions, args.unet_minutes, args.vae_minutes) == ("wide", "squat,wander_side",
                                                                                    2.5, None)
    assert np.array_equal(clips[0], render("wander_side", seed=0, split="train")[0])  # even seeds: the train pool
    assert np.array_equal(clips[1], render("wander_side", seed=1, split="pose")[0])  # odd: a random appearance
    assert not np.array_equal(clips[1], narrow)
    look = render("wander_side", seed=1, split="pose")[1]["appearance"]
    assert tuple(look["shirt"]) not in POOLS["heldout"].cloth_colors + POOLS["train"].cloth_colors


def _render(action, seed, split):
    return render_clip(action, frames=F, size=S, seed=seed, split=split)[0]  # (F, S, S, 3) uint8


def test_a_pool_rendered_up_front_in_processes_draws_the_same_clips():
    source = ClipSource(prompts=SOURCE.prompts, render=_render)  # picklable, as forked workers need
    serial = Pool(source, ("squat", "jumping_jack"), 3, keep=lambda frames: frames)
    parallel = Pool(source, ("squat", "jumping_jack"), 3, keep=lambda frames: frames, workers=2)
    assert len(parallel._cache) == 6  # every clip rendered before the first draw
    for step in range(3):
        drawn = list(zip(serial.draw(0, step, 4), parallel.draw(0, step, 4)))
        assert all(a == b and np.array_equal(x, y) for (a, x), (b, y) in drawn)
