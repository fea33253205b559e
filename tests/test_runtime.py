"""The [runtime] switches (flashctl.model.runtime): each runs on CPU and does what it says."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

from flashctl.config import FlashConfig, RuntimeSection
from flashctl.context import BuildContext
from flashctl.errors import ConfigError
from flashctl.model import runtime as rt
from flashctl.model.cross_frame import CrossFrameAttnProcessor
from flashctl.model.lora import add_motion_lora, lora_state_dict
from flashctl.model.motion_model import MotionModel
from flashctl.progress import ListReporter

FRAMES = 3


def _backbone(host, name: str = "animatediff"):
    return host.registry.create("backbone", name, {}, BuildContext())


def _latents(seed: int = 0, frames: int = FRAMES, side: int = 8) -> torch.Tensor:
    return torch.randn(1, frames, 4, side, side, generator=torch.Generator().manual_seed(seed))  # (B, F, c, h, w)


def _denoise(backbone) -> torch.Tensor:
    prompt = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(1))  # (B, seq, dim)
    with torch.no_grad():
        return backbone.denoise(_latents().to(backbone.dtype), torch.tensor([300]), prompt.to(backbone.dtype)).float()


def test_threads_are_set(host):
    before = torch.get_num_threads()
    try:
        rt.apply_runtime(_backbone(host), RuntimeSection(threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_bfloat16_weights_at_inference_stay_close_to_float32(host):
    backbone = _backbone(host)
    expected = _denoise(backbone)
    reporter = ListReporter()
    rt.apply_runtime(backbone, RuntimeSection(dtype="bfloat16"), training=True, reporter=reporter)
    assert backbone.unet.dtype == torch.float32  # training: left as built, with a note
    assert any("train.mixed_precision" in n for n in reporter.notes("warning"))
    rt.apply_runtime(backbone, RuntimeSection(dtype="bfloat16"))
    assert {m.dtype for m in rt.backbone_modules(backbone).values()} == {torch.bfloat16}
    got = _denoise(backbone)
    assert (got - expected).abs().max() / expected.abs().max() < 0.05


def test_eager_attention_matches_sdpa_and_never_calls_the_fused_kernel(host, monkeypatch):
    backbone = _backbone(host)
    expected = _denoise(backbone)
    calls = []
    fused = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return fused(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    switched = rt.set_attention(backbone, "eager")
    processors = list(backbone.unet.attn_processors.values()) + list(backbone.vae.attn_processors.values())
    assert switched == len(processors)
    assert all(p.kernel == "eager" if isinstance(p, CrossFrameAttnProcessor) else type(p) is AttnProcessor
               for p in processors)
    torch.testing.assert_close(_denoise(backbone), expected, atol=1e-5, rtol=1e-5)
    assert calls == []
    rt.set_attention(backbone, "sdpa")
    assert all(type(p) in (AttnProcessor2_0, CrossFrameAttnProcessor) for p in backbone.unet.attn_processors.values())
    torch.testing.assert_close(_denoise(backbone), expected, atol=1e-5, rtol=1e-5)
    assert calls


def test_vae_slicing_decodes_frame_by_frame_with_the_same_frames(host):
    backbone = _backbone(host)
    calls = []
    backbone.vae.decoder.register_forward_hook(lambda *a: calls.append(1))
    latents = _latents(frames=4)
    rt.set_vae_memory(backbone, slicing=False, tiling=False)
    whole = backbone.decode_latents(latents)
    assert len(calls) == 1
    rt.set_vae_memory(backbone, slicing=True, tiling=False)
    sliced = backbone.decode_latents(latents)
    assert len(calls) == 1 + 4  # one decoder call per frame
    torch.testing.assert_close(sliced, whole, atol=1e-5, rtol=1e-5)


def test_vae_tiling_decodes_in_tiles(host, monkeypatch):
    backbone = _backbone(host)
    tiles = []
    monkeypatch.setattr(backbone.vae.decoder, "forward",
                        lambda z, *a, _f=backbone.vae.decoder.forward, **k: tiles.append(z.shape[-1]) or _f(z, *a, **k))
    latents = _latents(frames=1, side=backbone.vae.tile_latent_min_size + 4)  # larger than one tile
    plain = backbone.decode_latents(latents)
    rt.set_vae_memory(backbone, slicing=False, tiling=True)
    tiled = backbone.decode_latents(latents)
    assert tiles[0] == latents.shape[-1] and max(tiles[1:]) < latents.shape[-1]  # tiles smaller than the latent
    assert tiled.shape == plain.shape and torch.isfinite(tiled).all()


def test_svd_vae_cannot_tile_and_has_no_slicing(host):
    backbone = _backbone(host, "svd")
    reporter = ListReporter()
    rt.set_vae_memory(backbone, slicing=True, tiling=False, reporter=reporter)
    assert any("runtime.vae_slicing" in n for n in reporter.notes())
    with pytest.raises(ConfigError, match="runtime.vae_tiling") as info:
        rt.apply_runtime(backbone, RuntimeSection(vae_tiling=True))
    assert "vae_tiling = false" in info.value.hint


def test_offload_moves_the_encoder_for_its_forward_only_and_keeps_outputs(host, monkeypatch):
    backbone = _backbone(host)
    expected = backbone.encode_prompt(["a person waves"])
    moves = []
    place = rt._place
    monkeypatch.setattr(rt, "_place", lambda module, device: moves.append((module, str(device))) or place(module, device))
    names = rt.enable_cpu_offload(backbone, "cpu", storage="cpu")  # the CUDA code path, with CPU on both ends
    assert names == ["text_encoder"]
    assert moves == [(backbone.text_encoder, "cpu")]  # parked at install
    torch.testing.assert_close(backbone.encode_prompt(["a person waves"]), expected)
    assert moves[1:] == [(backbone.text_encoder, "cpu")] * 2  # to the execution device, then back
    assert all(m is not backbone.unet for m, _ in moves)  # the U-Net stays put


def test_offload_on_a_cpu_device_is_a_noted_no_op_and_refuses_compile(host):
    backbone = _backbone(host)
    reporter = ListReporter()
    rt.apply_runtime(backbone, RuntimeSection(cpu_offload=True), reporter=reporter)
    assert any("nothing to offload" in n for n in reporter.notes("warning"))
    assert not backbone.text_encoder._forward_pre_hooks
    with pytest.raises(ConfigError, match="runtime.compile.*runtime.cpu_offload"):
        rt.apply_runtime(backbone, RuntimeSection(cpu_offload=True, compile=True, device="cuda"))


def test_compiled_unet_gives_the_same_output_and_keeps_lora_names(host):
    backbone = _backbone(host)
    expected = _denoise(backbone)
    rt.apply_runtime(backbone, RuntimeSection(compile=True), compile_backend="eager")
    assert backbone.unet._compiled_call_impl is not None
    add_motion_lora(backbone, 2, 2.0)  # after compile, as animate loads a motion
    torch.testing.assert_close(_denoise(backbone), expected, atol=1e-5, rtol=1e-5)
    assert not any("_orig_mod" in k for k in lora_state_dict(backbone))


def test_build_model_applies_runtime(host, tmp_path):
    config = FlashConfig.model_validate({"source": str(tmp_path / "flashctl.toml"),
                                         "runtime": {"attention": "eager", "vae_slicing": False}})
    model = MotionModel.build(config, host, BuildContext())
    unet_procs = model.backbone.unet.attn_processors.values()
    assert all(p.kernel == "eager" for p in unet_procs if isinstance(p, CrossFrameAttnProcessor))
    assert model.backbone.vae.use_slicing is False
    default = MotionModel.build(FlashConfig(), host, BuildContext())
    assert default.backbone.vae.use_slicing is True
