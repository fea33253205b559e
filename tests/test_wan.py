"""The Wan backbone (`wan`, tiny preset): frames, shapes, conditioning, flow matching, LoRA, determinism."""

import subprocess
import sys

import pytest
import torch

from flashctl.context import BuildContext
from flashctl.errors import ConfigError
from flashctl.model import flash
from flashctl.model.interfaces import Backbone
from flashctl.model.lora import add_motion_lora
from flashctl.model.objectives import FlowMatchingObjective

F, S = 5, 32  # video frames (4k+1), pixels
LATENT_F = 2  # (F - 1) / 4 + 1


def _video(seed: int, frames: int = F) -> torch.Tensor:
    return torch.rand(1, frames, 3, S, S, generator=torch.Generator().manual_seed(seed)) * 2 - 1  # (B, F, 3, H, W)


@pytest.fixture(scope="module")
def backbone(host):
    return host.registry.create("backbone", "wan", {}, BuildContext())


def test_the_entry_point_registers_wan_without_importing_torch():
    code = ("import sys; from importlib.metadata import entry_points; "
            "(ep,) = [e for e in entry_points(group='flashctl') if e.name == 'wan']; "
            "from flashctl.registry import Registry, Register; r = Registry(); "
            "ep.load().register_backbones(register=Register(r, 'backbone', 'wan', '')); "
            "print(ep.value, r.names('backbone'), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["flashctl_wan", "['wan']", "False"]


def test_tiny_backbone_has_the_right_shapes(backbone):
    assert isinstance(backbone, Backbone)
    geo = backbone.geometry()
    down, c = geo["downsample"], geo["latent_channels"]
    assert (geo["backbone"], geo["preset"], down, c, geo["temporal_downsample"]) == ("wan", "tiny", 4, 4, 4)
    latents = backbone.encode_video(_video(0))  # (1, F', c, h, w)
    assert latents.shape == (1, LATENT_F, c, S // down, S // down)
    assert backbone.decode_latents(latents).shape == (1, F, 3, S, S)
    emb = backbone.encode_prompt(["a person kicks", ""])  # (2, seq, dim)
    assert emb.shape == (2, backbone.options.prompt_tokens, backbone.options.text_dim)
    assert emb[1, 1:].abs().sum() == 0  # past the prompt's tokens: zeros, as Wan's pipelines pad
    assert backbone.denoise(latents, torch.tensor([500.0]), emb[:1]).shape == latents.shape


@pytest.mark.parametrize("frames", [2, 8, 16])
def test_frame_counts_that_are_not_4k_plus_1_are_one_clear_error(backbone, frames):
    with pytest.raises(ConfigError) as info:
        backbone.encode_video(_video(1, frames))
    assert f"got {frames}" in info.value.message and "prepare.frames = 5, 9, 13, 17" in info.value.hint
    with pytest.raises(ConfigError):
        backbone.latent_frames(frames)
    assert [backbone.latent_frames(f) for f in (1, 5, 9, 13, 17)] == [1, 2, 3, 4, 5]


def test_a_still_image_encodes_to_the_clips_first_latent_frame(backbone):
    clip = _video(2)
    torch.testing.assert_close(backbone.encode_video(clip[:, :1])[:, 0], backbone.encode_video(clip)[:, 0])


def test_frame_zero_tokens_get_timestep_zero_like_wan22_ti2v(backbone):
    latents = backbone.encode_video(_video(3))  # (1, 2, c, 8, 8): 4x4 tokens per latent frame
    t = backbone.token_timesteps(torch.tensor([700.0]), latents)  # (1, 32)
    assert t.shape == (1, LATENT_F * 16)
    assert t[0, :16].eq(0).all() and t[0, 16:].eq(700).all()
    # the noisy frames are conditioned on their own timestep
    emb = backbone.encode_prompt(["kick"])
    one, two = backbone.denoise(latents, torch.tensor([100.0]), emb), backbone.denoise(latents, torch.tensor([900.0]), emb)
    assert not torch.allclose(one[:, 1:], two[:, 1:])


def test_objective_is_flow_matching_and_its_sampler_round_trips(backbone):
    objective = backbone.objective
    assert isinstance(objective, FlowMatchingObjective) and objective.shift == backbone.options.shift
    x0 = backbone.encode_video(_video(4))  # (1, F', c, h, w)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([400.0])
    noisy = objective.add_noise(x0, noise, t)
    torch.testing.assert_close(noisy - 0.4 * objective.target(x0, noise, t), x0)  # x_s - s * v = x0
    # Euler with the exact velocity of the straight path lands on x0 from the first timestep
    sampler = objective.sampler("euler")
    sampler.set_timesteps(4)
    latents = objective.start(sampler, x0, noise)
    for step in sampler.timesteps:
        latents = sampler.step(noise - x0, step, latents).prev_sample
    torch.testing.assert_close(latents, x0, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError):
        objective.sampler("ddim")


def test_lora_wraps_the_self_attention_projections_and_only_lora_learns(host):
    fresh = host.registry.create("backbone", "wan", {}, BuildContext())
    params = add_motion_lora(fresh, rank=2, alpha=2)
    wrapped = {n for n, m in fresh.unet.named_modules() if hasattr(m, "lora_A")}
    expected = {f"blocks.{i}.attn1.{p}" for i in range(fresh.options.layers) for p in ("to_q", "to_k", "to_v", "to_out.0")}
    assert wrapped == expected
    assert fresh.temporal_attention == [f"blocks.{i}.attn1.processor" for i in range(fresh.options.layers)]
    latents = torch.cat([fresh.encode_video(_video(5)), fresh.encode_video(_video(6))])  # (2, F', c, h, w)
    loss = flash.training_loss(fresh, latents, fresh.encode_prompt(["kick"]), torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    loss.backward()
    with_grad = {n for n, p in fresh.unet.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad and all(".lora_" in n and ".attn1." in n for n in with_grad)
    assert {id(p) for p in params} == {id(p) for p in fresh.unet.parameters() if p.requires_grad}


def _render(host, backbone, seed: int, sampler: str = "euler") -> torch.Tensor:
    decoder = host.registry.create("decoder", "vae", {}, BuildContext())
    decoder.attach(backbone)
    emb = backbone.encode_prompt(["kick"])
    return flash.sample(backbone, decoder, _video(7, 1)[:, 0], emb, 9, 3, backbone.objective.sampler(sampler),
                        generator=torch.Generator().manual_seed(seed), start="reference")  # (1, 9, 3, H, W)


@pytest.mark.parametrize("sampler", ["euler", "unipc"])  # unipc: the scheduler Wan's own pipelines use
def test_same_seed_same_video_and_frame_zero_is_the_reference(host, backbone, sampler):
    video = _render(host, backbone, 0, sampler)
    assert video.shape == (1, 9, 3, S, S) and torch.isfinite(video).all()
    rebuilt = host.registry.create("backbone", "wan", {}, BuildContext())  # same init_seed: same weights
    assert torch.equal(_render(host, rebuilt, 0, sampler), video)
    assert not torch.equal(_render(host, backbone, 1, sampler), video)
    reference = _video(7, 1)[:, 0]  # (1, 3, H, W)
    ref_latent = backbone.encode_video(reference[:, None])[:, 0]  # (1, c, h, w)
    latents = flash.sample_latents(backbone, ref_latent, backbone.encode_prompt(["kick"]), 3, 2,
                                   backbone.objective.sampler(sampler), generator=torch.Generator().manual_seed(0))
    assert latents.shape == (1, 3, *ref_latent.shape[1:]) and torch.equal(latents[:, 0], ref_latent)


def test_save_pretrained_writes_the_diffusers_wan_layout(backbone, tmp_path):
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    base = backbone.save_pretrained(tmp_path / "base")
    assert {p.name for p in base.iterdir()} == {"transformer", "vae", "text_encoder", "tokenizer"}
    transformer = WanTransformer3DModel.from_pretrained(base, subfolder="transformer")
    vae = AutoencoderKLWan.from_pretrained(base, subfolder="vae")
    latents = backbone.encode_video(_video(8))
    x = latents.permute(0, 2, 1, 3, 4)  # (B, c, F', h, w)
    t, emb = backbone.token_timesteps(torch.tensor([300.0]), latents), backbone.encode_prompt(["kick"])
    torch.testing.assert_close(transformer(x, t, emb).sample, backbone.unet(x, t, emb).sample)
    torch.testing.assert_close(vae.decode(x).sample, backbone.vae.decode(x).sample)
