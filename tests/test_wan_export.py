"""A motion trained by flashctl on Wan, exported with `flashctl export --format diffusers`, in stock diffusers:
``WanImageToVideoPipeline.load_lora_weights`` takes every tensor (nothing missing, nothing unexpected) and its
transformer then gives flashctl's denoiser output (tiny preset, to 1e-5).

The pipeline is the image-to-video one, built as for Wan2.2-TI2V (``expand_timesteps=True``, no CLIP image
encoder): that is the conditioning flashctl's ``wan`` backbone uses, and it builds at tiny size. flashctl's
``attn1`` processor is diffusers' ``WanAttnProcessor`` at inference (its motion alignment runs only in
training), so the stock transformer keeps its stock processors.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from cli_kit import run
from flashctl.context import BuildContext
from flashctl.model.lora import load_motion_lora
from flashctl.model.motion_files import load_lora

F, S, RANK, ALPHA = 5, 32, 4, 8.0  # 4k+1 frames (two latent frames), pixels; alpha != rank: the export's scale matters


def _config(root):
    from flashctl.config import FlashConfig

    return FlashConfig.model_validate({
        "source": str(root / "flashctl.toml"), "model": {"backbone": "wan"},
        "prepare": {"frames": F, "size": S, "fps": 8.0},
        "train": {"steps": 3, "lr": 1e-2, "lora_rank": RANK, "lora_alpha": ALPHA},  # big steps: a LoRA far from 0
        "animate": {"steps": 2, "scheduler": "euler", "formats": ["gif"]}})


def _clips(n: int) -> np.ndarray:
    """(n, F, S, S, 3) uint8: a bright square sliding right over a per-clip background."""
    clips = np.zeros((n, F, S, S, 3), np.uint8)
    for i in range(n):
        clips[i] = 40 * i + 20
        for f in range(F):
            clips[i, f, 10:20, 4 + 4 * f:12 + 4 * f] = 230
    return clips


@pytest.fixture(scope="module")
def trained(host, tmp_path_factory):
    """``(library, base folder)``: the tiny wan motion 'slide' trained by flashctl, the base in diffusers' layout."""
    from flashctl.library import MotionLibrary
    from flashctl.manifest import ClipEntry, MotionManifest
    from flashctl.pipeline.train import train

    root = tmp_path_factory.mktemp("wan_export")
    config = _config(root)
    library = MotionLibrary(config.library_path())
    entries = []
    for i in range(2):
        entries.append(ClipEntry(file=f"clips/c{i}.mp4", sha256=hashlib.sha256(f"clip {i}".encode()).hexdigest()))
        (library.path("slide") / "clips").mkdir(parents=True, exist_ok=True)
        (library.path("slide") / entries[-1].file).write_bytes(f"clip {i}".encode())
    library.write_manifest("slide", MotionManifest(name="slide", prompt="a square slides right", clips=entries))
    library.save_frames("slide", _clips(2), {"frames": F, "fps": 8.0, "size": S, "start": 0.0})
    assert train(config, library, "slide", host, steps=3).steps == 3
    host.registry.create("backbone", "wan", {}, BuildContext()).save_pretrained(root / "base")
    return library, root / "base"


def _stock_pipeline(base):
    from diffusers import (AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline,
                           WanTransformer3DModel)
    from transformers import T5Tokenizer, UMT5EncoderModel

    return WanImageToVideoPipeline(
        tokenizer=T5Tokenizer.from_pretrained(base / "tokenizer"),
        text_encoder=UMT5EncoderModel.from_pretrained(base / "text_encoder"),
        vae=AutoencoderKLWan.from_pretrained(base / "vae"), scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        transformer=WanTransformer3DModel.from_pretrained(base / "transformer"), expand_timesteps=True)


def _stock_denoise(pipe, latents: torch.Tensor, t: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
    """What WanImageToVideoPipeline's loop calls with ``expand_timesteps``: latent frame 0 is the condition
    (here the latents' own clean frame 0), its tokens at timestep 0, the other tokens at ``t``."""
    sample = latents.permute(0, 2, 1, 3, 4)  # (B, c, F', h, w)
    mask = torch.ones(1, 1, *sample.shape[2:])  # (1, 1, F', h, w)
    mask[:, :, 0] = 0
    model_input = (1 - mask) * sample[:, :, :1] + mask * sample  # (B, c, F', h, w)
    _, ph, pw = pipe.transformer.config.patch_size
    timestep = (mask[0][0][:, ::ph, ::pw] * t).flatten()[None].expand(latents.shape[0], -1)  # (B, F'*h'*w')
    out = pipe.transformer(hidden_states=model_input, timestep=timestep, encoder_hidden_states=prompt,
                           return_dict=False)[0]  # (B, c, F', h, w)
    return out.permute(0, 2, 1, 3, 4)  # (B, F', c, h, w)


def _lora_layers(module) -> int:
    return sum(1 for n, _ in module.named_modules() if n.endswith(".lora_A"))


def test_exported_wan_lora_loads_in_stock_wan_i2v_pipeline_and_gives_flashctls_output(host, trained, tmp_path, capsys):
    from peft import get_peft_model_state_dict

    library, base = trained
    weights = library.version_dir("slide") / "weights"
    record = json.loads((weights / "config.json").read_text())
    assert record["lora"]["component"] == "transformer" and record["lora"]["rank"] == RANK

    out = tmp_path / "slide.safetensors"
    r = run(capsys, "export", "slide", "--format", "diffusers", "-o", out, "--library", library.root)
    assert r.code == 0, r.err
    exported = load_lora(out)
    assert exported and all(k.startswith("transformer.blocks.") and ".attn1." in k for k in exported)

    ours = host.registry.create("backbone", "wan", {}, BuildContext())  # flashctl's model, as animate loads it
    lora = record["lora"]
    load_motion_lora(ours, load_lora(weights / lora["file"]), lora["rank"], lora["alpha"], source="lora",
                     targets=lora["targets"])
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 2, ours.vae.config.z_dim, S // 4, S // 4, generator=g)  # (B, F', c, h, w)
    prompt = ours.encode_prompt(["a square slides right"])  # (B, seq, dim)
    t = torch.tensor([400.0])
    with torch.no_grad():
        expected = ours.denoise(latents, t, prompt)  # (B, F', c, h, w)

    pipe = _stock_pipeline(base)
    with torch.no_grad():
        without = _stock_denoise(pipe, latents, t, prompt)
    pipe.load_lora_weights(str(out), adapter_name="motion")
    loaded = get_peft_model_state_dict(pipe.transformer, adapter_name="motion")  # every LoRA tensor it now holds
    assert {f"transformer.{k}" for k in loaded} == set(exported)  # nothing missing, nothing unexpected
    for key, tensor in loaded.items():
        torch.testing.assert_close(tensor, exported[f"transformer.{key}"], rtol=0, atol=0)
    assert _lora_layers(pipe.transformer) == _lora_layers(ours.unet) > 0  # every LoRA layer landed
    with torch.no_grad():
        got = _stock_denoise(pipe, latents, t, prompt)
    assert (without - expected).abs().max() > 1e-3  # the trained LoRA changes the output...
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)  # ...exactly as flashctl applies it


def test_comfyui_export_of_a_wan_motion_is_one_line_pointing_at_diffusers(trained, tmp_path, capsys):
    library, _ = trained
    out = tmp_path / "slide_comfy.safetensors"
    r = run(capsys, "export", "slide", "--format", "comfyui", "-o", out, "--library", library.root)
    assert r.code == 1 and r.out == "" and not out.exists()
    error, hint = r.err.strip().splitlines()
    assert "transformer" in error and "--format diffusers" in hint
