"""A motion's LoRA in stock diffusers: AnimateDiffPipeline + load_lora_weights gives flashctl's U-Net output."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import AnimateDiffPipeline, AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from flashctl.context import BuildContext
from flashctl.errors import WeightsNotFoundError
from flashctl.model.cross_frame import CrossFrameAttnProcessor
from flashctl.model.lora import add_motion_lora, load_motion_lora, lora_state_dict
from flashctl.model.motion_files import CONFIG_FILE, LORA_FILE, export_lora_for_diffusers, load_lora, save_lora

F, RANK, ALPHA = 3, 4, 8.0  # frames; alpha != rank, so the export's scale matters


def _backbone(host):
    return host.registry.create("backbone", "animatediff", {}, BuildContext())


@pytest.fixture(scope="module")
def saved(host, tmp_path_factory):
    """The tiny base dumped with save_pretrained, and a motion's weights/ with a non-zero LoRA, as train saves them."""
    root = tmp_path_factory.mktemp("interop")
    backbone = _backbone(host)
    backbone.save_pretrained(root / "base")
    add_motion_lora(backbone, RANK, ALPHA)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in sorted(backbone.unet.named_parameters()):
            if ".lora_B." in name:  # trained LoRA stand-in: B = 0 would make the test vacuous
                p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
    weights = root / "weights"
    weights.mkdir()
    save_lora(weights / LORA_FILE, lora_state_dict(backbone), {"format": "flashctl-motion-lora"})
    (weights / CONFIG_FILE).write_text(json.dumps({"lora": {"file": LORA_FILE, "rank": RANK, "alpha": ALPHA}}))
    return root


def _inputs(text_dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(1, F, 4, 8, 8, generator=g)  # (B, F, c, h, w)
    prompt = torch.randn(1, 77, text_dim, generator=g)  # (B, seq, dim)
    return latents, torch.tensor([400]), prompt


def _stock_pipeline(base) -> AnimateDiffPipeline:
    return AnimateDiffPipeline(
        vae=AutoencoderKL.from_pretrained(base / "vae"), text_encoder=CLIPTextModel.from_pretrained(base / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(base / "tokenizer"),
        unet=UNet2DConditionModel.from_pretrained(base / "unet"),
        motion_adapter=MotionAdapter.from_pretrained(base / "motion_adapter"),
        scheduler=DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False))


def _stock_denoise(pipe, latents, t, prompt) -> torch.Tensor:
    """What AnimateDiffPipeline's loop calls: (B, c, F, h, w) latents, text repeated per frame."""
    sample = latents.permute(0, 2, 1, 3, 4)  # (B, c, F, h, w)
    out = pipe.unet(sample, t, encoder_hidden_states=prompt.repeat_interleave(latents.shape[1], dim=0)).sample
    return out.permute(0, 2, 1, 3, 4)  # (B, F, c, h, w)


def _cross_frame(unet, names, frames: int) -> None:
    unet.set_attn_processor({n: CrossFrameAttnProcessor(frames) if n in names else p
                             for n, p in unet.attn_processors.items()})


def _lora_layers(unet) -> int:
    return sum(1 for n, _ in unet.named_modules() if n.endswith(".lora_A"))


def test_exported_lora_in_stock_pipeline_matches_flashctl(host, saved, tmp_path):
    ours = _backbone(host)
    state = load_lora(saved / "weights" / LORA_FILE)
    load_motion_lora(ours, state, RANK, ALPHA, source="lora.safetensors")
    latents, t, prompt = _inputs(ours.text_encoder.config.hidden_size)
    with torch.no_grad():
        expected = ours.denoise(latents, t, prompt)  # (B, F, c, h, w)

    exported = export_lora_for_diffusers(saved / "weights", tmp_path / "motion_diffusers.safetensors")
    assert all(k.startswith("unet.") for k in load_lora(exported))
    pipe = _stock_pipeline(saved / "base")
    _cross_frame(pipe.unet, ours.spatial_attention, F)  # flashctl's spatial attention, on the stock U-Net
    with torch.no_grad():
        without = _stock_denoise(pipe, latents, t, prompt)
    pipe.load_lora_weights(str(exported), adapter_name="motion")
    _cross_frame(pipe.unet, ours.spatial_attention, F)  # peft wrapping keeps processors; set again to be sure
    with torch.no_grad():
        got = _stock_denoise(pipe, latents, t, prompt)

    assert _lora_layers(pipe.unet) == _lora_layers(ours.unet) > 0  # every LoRA layer landed
    assert (without - expected).abs().max() > 1e-3  # the LoRA changes the output...
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)  # ...exactly as flashctl applies it


def test_single_frame_stock_attention_matches(host, saved, tmp_path):
    """With one frame, cross-frame attention is the stock one: no processor swap needed."""
    ours = _backbone(host)
    load_motion_lora(ours, load_lora(saved / "weights" / LORA_FILE), RANK, ALPHA, source="lora.safetensors")
    latents, t, prompt = _inputs(ours.text_encoder.config.hidden_size)
    latents = latents[:, :1]
    exported = export_lora_for_diffusers(saved / "weights", tmp_path / "motion.safetensors")
    pipe = _stock_pipeline(saved / "base")
    pipe.load_lora_weights(str(exported))
    with torch.no_grad():
        torch.testing.assert_close(_stock_denoise(pipe, latents, t, prompt), ours.denoise(latents, t, prompt),
                                   atol=1e-5, rtol=1e-4)


def test_export_refuses_a_folder_without_weights_and_keeps_old_output(tmp_path):
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"previous export")
    with pytest.raises(WeightsNotFoundError, match="config.json"):
        export_lora_for_diffusers(tmp_path / "nothing", out)
    assert out.read_bytes() == b"previous export"
