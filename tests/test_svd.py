"""The Stable Video Diffusion backbone (`svd`): conditioning, MAM hooks, schedule, training, sampling, loading."""

import json
import math
import re
import subprocess
import sys

import pytest
import torch
from diffusers import EulerDiscreteScheduler
from diffusers.models.attention_processor import AttnProcessor2_0

from flashctl.context import BuildContext
from flashctl.errors import ConfigError, WeightsNotFoundError
from flashctl.model import flash
from flashctl.model.cross_frame import CrossFrameAttnProcessor
from flashctl.model.interfaces import Backbone
from flashctl.model.lora import add_motion_lora
from flashctl_svd.schedule import noise_condition

F, S = 4, 32  # frames, pixels


@pytest.fixture(scope="module")
def backbone(host):
    return host.registry.create("backbone", "svd", {}, BuildContext())


def _video(seed: int, frames: int = F) -> torch.Tensor:
    return torch.rand(1, frames, 3, S, S, generator=torch.Generator().manual_seed(seed)) * 2 - 1  # (B, F, 3, H, W)


def test_importing_the_plugin_does_not_import_torch():
    code = ("import sys, flashctl_svd; from flashctl.registry import Registry, Register; r = Registry(); "
            "flashctl_svd.register_backbones(register=Register(r, 'backbone', 'svd', '')); "
            "print(r.names('backbone'), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["['svd']", "False"]


def test_tiny_backbone_from_the_registry_has_the_right_shapes(backbone):
    assert isinstance(backbone, Backbone)
    geo = backbone.geometry()
    down, c = geo["downsample"], geo["latent_channels"]
    assert (geo["backbone"], geo["preset"], down, c) == ("svd", "tiny", 4, 4)
    latents = backbone.encode_video(_video(0))
    assert latents.shape == (1, F, c, S // down, S // down)
    assert backbone.decode_latents(latents).shape == (1, F, 3, S, S)
    weights = backbone.encode_prompt(["a person kicks", "", "  "])
    assert weights.shape == (3, 1, 1) and weights.flatten().tolist() == [1.0, 0.0, 0.0]
    assert backbone.denoise(latents, torch.tensor([500]), weights[:1]).shape == latents.shape


def test_options_reject_widths_group_norm_cannot_split(host):
    with pytest.raises(ConfigError) as info:
        host.registry.create("backbone", "svd", {"channels": [32, 48]}, BuildContext())
    assert "channels" in info.value.message and "48" in info.value.message
    with pytest.raises(ConfigError):
        host.registry.create("backbone", "svd", {"sigma_min": 5.0, "sigma_max": 1.0}, BuildContext())


def test_cross_frame_processors_sit_on_exactly_the_spatial_self_attention(backbone):
    procs = backbone.unet.attn_processors
    modules = [n for n, _ in backbone.unet.named_modules()]
    assert backbone.spatial_attention and backbone.temporal_attention
    for name, proc in procs.items():
        assert isinstance(proc, CrossFrameAttnProcessor) == (name in backbone.spatial_attention), name
    assert all(".transformer_blocks." in n and n.endswith("attn1.processor") for n in backbone.spatial_attention)
    assert all(".temporal_transformer_blocks." in n and n.endswith("attn1.processor")
               for n in backbone.temporal_attention)
    spatial_blocks = {n for n in modules if re.fullmatch(r".*\.attentions\.\d+\.transformer_blocks\.\d+", n)}
    temporal_blocks = {n for n in modules if re.fullmatch(r".*\.temporal_transformer_blocks\.\d+", n)}
    assert {n.rsplit(".", 2)[0] for n in backbone.spatial_attention} == spatial_blocks
    assert {n.rsplit(".", 2)[0] for n in backbone.temporal_attention} == temporal_blocks


def test_one_frame_matches_stock_processors(backbone):
    latents = backbone.encode_video(_video(1, frames=1))  # (1, 1, c, h, w)
    weight = backbone.encode_prompt(["wave"])
    ours = backbone.denoise(latents, torch.tensor([300]), weight)
    saved = backbone.unet.attn_processors
    try:
        backbone.unet.set_attn_processor(AttnProcessor2_0())
        stock = backbone.denoise(latents, torch.tensor([300]), weight)
        many = backbone.denoise(backbone.encode_video(_video(1)), torch.tensor([300]), weight)
    finally:
        backbone.unet.set_attn_processor(saved)
    assert torch.equal(ours, stock)
    assert not torch.allclose(backbone.denoise(backbone.encode_video(_video(1)), torch.tensor([300]), weight), many)


def test_denoise_feeds_the_unet_svd_conditioning_from_frame_zero(backbone):
    latents = backbone.encode_video(_video(2))  # (1, F, c, h, w)
    t, o, scale = torch.tensor([400]), backbone.options, backbone.vae.config.scaling_factor
    reference = latents[:, :1] / scale  # (1, 1, c, h, w): SVD concatenates the unscaled latent
    time_ids = torch.tensor([[o.fps - 1, o.motion_bucket_id, o.noise_aug_strength]])
    c_noise = torch.tensor([(math.log(o.sigma_min) + 400 / 999 * math.log(o.sigma_max / o.sigma_min)) / 4])

    def unet(cond, emb):
        return backbone.unet(torch.cat([latents, cond.expand_as(latents)], dim=2), c_noise,
                             encoder_hidden_states=emb, added_time_ids=time_ids).sample

    embedding = backbone.image_embedding(latents[:, 0])  # (1, 1, dim)
    assert embedding.shape == (1, 1, backbone.image_encoder.config.projection_dim)
    conditioned = backbone.denoise(latents, t, backbone.encode_prompt(["kick"]))
    torch.testing.assert_close(conditioned, unet(reference, embedding))
    unconditional = backbone.denoise(latents, t, backbone.encode_prompt([""]))
    torch.testing.assert_close(unconditional, unet(torch.zeros_like(reference), torch.zeros_like(embedding)))
    assert not torch.allclose(conditioned, unconditional)
    other = backbone.encode_video(_video(3))[:, 0]
    assert not torch.allclose(backbone.image_embedding(other), embedding)  # the cache follows frame 0
    torch.testing.assert_close(backbone.image_embedding(latents[:, 0]), embedding)


def test_schedule_is_svd_edm_in_vp_form(backbone):
    o, objective = backbone.options, backbone.objective
    ddpm = objective.scheduler
    t = torch.tensor([0, 250, 999])
    sigma = ((1 - ddpm.alphas_cumprod[t]) / ddpm.alphas_cumprod[t]).sqrt()  # the noise level add_noise applies
    torch.testing.assert_close(torch.exp(4 * noise_condition(t, o.sigma_min, o.sigma_max)), sigma, rtol=2e-2, atol=0)
    torch.testing.assert_close(sigma[[0, 2]], torch.tensor([o.sigma_min, o.sigma_max]), rtol=2e-2, atol=0)
    # EDM v-scaling recovers x0 from the VP-form noisy latent and v-target flashctl trains on
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 2, 4, 4, 4, generator=gen), torch.randn(3, 2, 4, 4, 4, generator=gen)
    x_sigma = objective.add_noise(x0, noise, t) * (sigma**2 + 1).sqrt().view(3, 1, 1, 1, 1)
    v = objective.target(x0, noise, t)
    s = sigma.view(3, 1, 1, 1, 1)
    torch.testing.assert_close(x_sigma / (s**2 + 1) - s / (s**2 + 1).sqrt() * v, x0, rtol=0, atol=1e-3)
    # the Euler sampler steps through Karras sigmas from sigma_max and passes indices denoise maps back
    euler = objective.sampler("euler")
    assert isinstance(euler, EulerDiscreteScheduler)
    euler.set_timesteps(5)
    torch.testing.assert_close(euler.sigmas[0], torch.tensor(o.sigma_max), rtol=1e-3, atol=0)
    torch.testing.assert_close(4 * noise_condition(euler.timesteps, o.sigma_min, o.sigma_max),
                               euler.sigmas[:-1].log(), rtol=0, atol=2e-2)


def test_training_loss_is_finite_and_only_lora_learns(host):
    fresh = host.registry.create("backbone", "svd", {}, BuildContext())
    params = add_motion_lora(fresh, rank=2, alpha=2)
    wrapped = {n for n, m in fresh.unet.named_modules() if hasattr(m, "lora_A")}
    expected = {f"{n.rsplit('.', 1)[0]}.{p}" for n in fresh.temporal_attention
                for p in ("to_q", "to_k", "to_v", "to_out.0")}
    expected |= {n.replace(".processor", ".to_q") for n in fresh.spatial_attention}
    assert wrapped == expected
    latents = torch.cat([fresh.encode_video(_video(4)), fresh.encode_video(_video(5))])  # (2, F, c, h, w)
    loss = flash.training_loss(fresh, latents, fresh.encode_prompt(["kick"]), torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    loss.backward()
    with_grad = {n for n, p in fresh.unet.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad and all(".lora_" in n for n in with_grad)
    assert any("temporal_transformer_blocks" in n for n in with_grad)
    assert any(".transformer_blocks." in n and "temporal" not in n for n in with_grad)
    assert {id(p) for p in params} == {id(p) for p in fresh.unet.parameters() if p.requires_grad}


def test_sampling_gives_a_video_that_starts_at_the_reference(host, backbone):
    decoder = host.registry.create("decoder", "vae", {}, BuildContext())
    decoder.attach(backbone)
    reference = _video(6, frames=1)[:, 0]  # (1, 3, H, W)
    ref_latent = backbone.encode_video(reference[:, None])[:, 0]  # (1, c, h, w)
    weight = backbone.encode_prompt(["kick"])
    scheduler = backbone.objective.sampler("euler")
    latents = flash.sample_latents(backbone, ref_latent, weight, F, 3, scheduler,
                                   generator=torch.Generator().manual_seed(0))
    assert latents.shape == (1, F, *ref_latent.shape[1:]) and torch.isfinite(latents).all()
    assert torch.equal(latents[:, 0], ref_latent)
    video = flash.sample(backbone, decoder, reference, weight, F, 3, backbone.objective.sampler("euler"),
                         generator=torch.Generator().manual_seed(0))
    assert video.shape == (1, F, 3, S, S)
    torch.testing.assert_close(video, backbone.decode_latents(latents))
    recon = backbone.decode_latents(ref_latent[:, None])[0, 0]  # (3, H, W): the reference through the VAE
    errors = [(video[0, k] - recon).pow(2).mean().item() for k in range(F)]
    assert errors[0] == min(errors)


def test_svd_preset_offline_without_a_folder_names_it(host, tmp_path):
    missing = tmp_path / "svd-base"
    with pytest.raises(WeightsNotFoundError) as info:
        host.registry.create("backbone", "svd", {"preset": "svd", "base": str(missing)}, BuildContext())
    assert str(missing) in info.value.message and str(missing) in info.value.hint
    (missing / "unet").mkdir(parents=True)
    with pytest.raises(WeightsNotFoundError) as info:
        host.registry.create("backbone", "svd", {"preset": "svd", "base": str(missing)}, BuildContext())
    assert "vae/" in info.value.message and "image_encoder/" in info.value.message


def test_svd_preset_loads_a_saved_folder_with_identical_outputs(host, backbone, tmp_path):
    digest = backbone.geometry()["base_config_sha256"]
    base = backbone.save_pretrained(tmp_path / "base")
    unet_config = json.loads((base / "unet" / "config.json").read_text())
    assert unet_config["_class_name"] == "UNetSpatioTemporalConditionModel"  # diffusers can load it too
    loaded = host.registry.create("backbone", "svd", {"preset": "svd", "base": str(base)}, BuildContext())
    geo = loaded.geometry()
    assert geo["preset"] == "svd" and geo["base"] == str(base)
    assert geo["base_config_sha256"] == digest
    latents = backbone.encode_video(_video(7))
    torch.testing.assert_close(loaded.encode_video(_video(7)), latents)
    weight = backbone.encode_prompt(["kick"])
    t = torch.tensor([250])
    torch.testing.assert_close(loaded.image_embedding(latents[:, 0]), backbone.image_embedding(latents[:, 0]))
    torch.testing.assert_close(loaded.denoise(latents, t, weight), backbone.denoise(latents, t, weight))


def test_detail_decoder_refuses_the_temporal_vae_with_a_clear_error(host, backbone):
    decoder = host.registry.create("decoder", "detail-enhance", {}, BuildContext())
    with pytest.raises(ConfigError) as info:
        decoder.attach(backbone)
    assert "AutoencoderKLTemporalDecoder" in info.value.message and 'model.decoder = "vae"' in info.value.hint


def test_the_default_config_with_only_the_backbone_switched_to_svd_trains_and_animates(tmp_path, host):
    """Every preset's default config trains: the built-in defaults with only ``model.backbone = "svd"``."""
    from flashctl.config import FlashConfig
    from flashctl.pipeline.animate import load_animator
    from flashctl.pipeline.train import train
    from motion_kit import FPS, FRAMES, SIZE, make_action

    config = FlashConfig.model_validate({"source": str(tmp_path / "flashctl.toml"), "model": {"backbone": "svd"},
                                         "prepare": {"frames": FRAMES, "size": SIZE, "fps": FPS}})  # the clips' size
    assert config.model.decoder == "vae" and not config.train.detail_decoder  # defaults, untouched
    library = make_action(config, "slide")
    result = train(config, library, "slide", host, steps=2)
    assert result.steps == 2 and math.isfinite(result.final_loss)
    video = load_animator(config.model_copy(update={"animate": config.animate.model_copy(update={"steps": 2})}),
                          library, "slide", host).render(torch.zeros(SIZE, SIZE, 3, dtype=torch.uint8).numpy(), seed=0)
    assert video.shape == (FRAMES, SIZE, SIZE, 3)


def test_detail_enhance_with_svd_is_one_error_with_one_fix(tmp_path, host):
    from flashctl.config import FlashConfig
    from flashctl.pipeline.train import train
    from motion_kit import FPS, FRAMES, SIZE, make_action

    config = FlashConfig.model_validate({"source": str(tmp_path / "flashctl.toml"),
                                         "model": {"backbone": "svd", "decoder": "detail-enhance"},
                                         "train": {"detail_decoder": True},
                                         "prepare": {"frames": FRAMES, "size": SIZE, "fps": FPS}})
    with pytest.raises(ConfigError) as info:
        train(config, make_action(config, "slide"), "slide", host, steps=1)
    err = info.value
    assert "\n" not in str(err) and "AutoencoderKLTemporalDecoder" in err.message
    assert 'use model.decoder = "vae" with svd' in err.hint and "detail-enhance" not in err.hint
