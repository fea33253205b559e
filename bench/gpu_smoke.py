"""GPU smoke benchmark: FLASH training and animation at real size, random weights, no download.

The architecture is AnimateDiff at Stable Diffusion 1.5 size (U-Net 320/640/1280/1280 with
cross_attention_dim 768, a v1-5-2-sized MotionAdapter, the SD VAE, CLIP ViT-L/14's text model),
every module random-initialised from its config. At 512x512, 16 frames, bfloat16 weights, it runs
paired training steps with motion LoRA, gradient checkpointing and MAM (motion + correspondence
alignment) on, then 25-step animations, and reports seconds per training step, peak GPU memory
(``torch.cuda.max_memory_allocated``) and seconds per animation. Target: training under 24 GB.

Run on a CUDA machine:    .venv/bin/python bench/gpu_smoke.py           (writes bench/results/gpu_smoke.json)
Dry run anywhere (tiny):  .venv/bin/python bench/gpu_smoke.py --cpu-tiny (same code, tiny sizes, on the CPU)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).parent / "results"
TARGET_GB = 24.0

SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768, attention_head_dim=8)
SD15_ADAPTER = dict(block_out_channels=(320, 640, 1280, 1280), motion_layers_per_block=2,
                    motion_mid_block_layers_per_block=1, motion_num_attention_heads=8, motion_norm_num_groups=32,
                    motion_max_seq_length=32, use_motion_mid_block=True)
SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
              layers_per_block=2, sample_size=512, scaling_factor=0.18215)
CLIP_L_TEXT = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                   projection_dim=768, max_position_embeddings=77, vocab_size=49408)

TINY_UNET = dict(SD15_UNET, sample_size=8, layers_per_block=1, block_out_channels=(32, 64, 64, 64),
                 cross_attention_dim=32, norm_num_groups=8)
TINY_ADAPTER = dict(SD15_ADAPTER, block_out_channels=(32, 64, 64, 64), motion_layers_per_block=1,
                    motion_num_attention_heads=4, motion_norm_num_groups=8)
TINY_VAE = dict(SD_VAE, block_out_channels=(16, 16, 32, 32), layers_per_block=1, norm_num_groups=8, sample_size=64)
TINY_TEXT = dict(CLIP_L_TEXT, hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                 projection_dim=32)

SIZES = {
    "real": dict(unet=SD15_UNET, adapter=SD15_ADAPTER, vae=SD_VAE, text=CLIP_L_TEXT, size=512, frames=16, steps=25,
                 train_steps=5, animations=2),
    "tiny": dict(unet=TINY_UNET, adapter=TINY_ADAPTER, vae=TINY_VAE, text=TINY_TEXT, size=64, frames=4, steps=2,
                 train_steps=2, animations=1),
}


def build(size: dict[str, Any], device: str, dtype: torch.dtype) -> Any:
    """The flashctl AnimateDiff backbone around random-initialised components of ``size``."""
    from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel
    from flashctl_animatediff import AnimateDiffOptions
    from flashctl_animatediff.backbone import AnimateDiffBackbone
    from flashctl_animatediff.components import Components, byte_level_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = byte_level_tokenizer()  # its 514 ids all lie inside CLIP's vocabulary
    torch.manual_seed(0)
    with torch.device(device):  # initialise on the device: much faster than on the CPU at real size
        components = Components(
            unet2d=UNet2DConditionModel(**size["unet"]), adapter=MotionAdapter(**size["adapter"]),
            vae=AutoencoderKL(**size["vae"]),
            text_encoder=CLIPTextModel(CLIPTextConfig(**size["text"], bos_token_id=tokenizer.bos_token_id,
                                                      eos_token_id=tokenizer.eos_token_id,
                                                      pad_token_id=tokenizer.pad_token_id)),
            tokenizer=tokenizer, base_id="random-init(sd15 configs)")
    return AnimateDiffBackbone(components, AnimateDiffOptions(preset="sd15"), device, dtype)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_gb(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def train_steps(backbone: Any, size: dict[str, Any], device: str) -> dict[str, Any]:
    """Paired MAM training steps (LoRA rank 8, gradient checkpointing, AdamW) on random latents."""
    from flashctl.model.flash import training_loss
    from flashctl.model.lora import add_motion_lora
    from flashctl.config import MamSection
    from flashctl.model.motion_alignment import aligned, install_mam

    mam = MamSection(motion_align=True, correspondence_align=True)
    params = add_motion_lora(backbone, 8, 8.0)
    layers = install_mam(backbone, mam)
    backbone.unet.enable_gradient_checkpointing()
    backbone.unet.train()
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    side = size["size"] // 8
    g = torch.Generator().manual_seed(0)
    shape = (1, size["frames"], 4, side, side)
    x = torch.randn(shape, generator=g).to(device, backbone.dtype)  # (B, F, c, h, w)
    x_aug = torch.randn(shape, generator=g).to(device, backbone.dtype)  # (B, F, c, h, w): stands in for A(x)
    prompt = backbone.encode_prompt(["a person kicks a ball"])  # (1, seq, dim)
    reset_peak(device)
    times, losses = [], []
    for _ in range(size["train_steps"]):
        sync(device)
        t0 = time.perf_counter()
        with aligned(backbone.unet):  # backward inside: checkpointing re-runs the MAM forwards there
            loss = training_loss(backbone, x, prompt, g, augmented=x_aug, augmented_weight=mam.augmented_weight)
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    return {"s_per_step": round(statistics.median(times[1:] or times), 3), "first_step_s": round(times[0], 3),
            "peak_gb": peak_gb(device), "steps": len(times), "losses": [round(v, 5) for v in losses],
            "lora_params": sum(p.numel() for p in params), "mam_layers": len(layers),
            "gradient_checkpointing": True}


def animate(backbone: Any, size: dict[str, Any], device: str) -> dict[str, Any]:
    """25-step DDIM animations of a random reference, inference runtime switches applied."""
    from flashctl.config import RuntimeSection
    from flashctl.model.flash import sample
    from flashctl.model.motion_alignment import uninstall_mam
    from flashctl.model.runtime import apply_runtime
    from flashctl_decoders.vae import VaeDecoder

    uninstall_mam(backbone.unet)
    backbone.unet.eval()
    runtime = RuntimeSection(device=device, dtype="bfloat16" if backbone.dtype == torch.bfloat16 else "float32")
    apply_runtime(backbone, runtime)
    decoder = VaeDecoder()
    decoder.attach(backbone)
    g = torch.Generator().manual_seed(1)
    reference = (torch.rand(1, 3, size["size"], size["size"], generator=g) * 2 - 1).to(device)  # (1, 3, S, S)
    prompt = backbone.encode_prompt(["a person kicks a ball"])  # (1, seq, dim)
    reset_peak(device)
    times = []
    for i in range(size["animations"]):
        scheduler = backbone.objective.sampler("ddim")
        sync(device)
        t0 = time.perf_counter()
        video = sample(backbone, decoder, reference, prompt, size["frames"], size["steps"], scheduler,
                       generator=torch.Generator().manual_seed(i))  # (1, F, 3, S, S)
        sync(device)
        times.append(time.perf_counter() - t0)
    assert video.shape == (1, size["frames"], 3, size["size"], size["size"]) and torch.isfinite(video).all()
    return {"s_per_animation": round(min(times), 3), "steps": size["steps"], "peak_gb": peak_gb(device),
            "runs": len(times), "runtime": runtime.model_dump(include={"dtype", "attention", "vae_slicing"})}


def run(preset: str, device: str, dtype: torch.dtype) -> dict[str, Any]:
    import diffusers

    size = SIZES[preset]
    t0 = time.perf_counter()
    backbone = build(size, device, dtype)
    sync(device)
    built = time.perf_counter() - t0
    result = {
        "preset": preset, "device": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor()
        or "cpu", "dtype": str(dtype).removeprefix("torch."), "size": size["size"], "frames": size["frames"],
        "torch": torch.__version__, "diffusers": diffusers.__version__, "build_s": round(built, 2),
        "params_m": {n: round(sum(p.numel() for p in m.parameters()) / 1e6, 1)
                     for n, m in (("unet", backbone.unet), ("vae", backbone.vae), ("text", backbone.text_encoder))},
    }
    result["train"] = train_steps(backbone, size, device)
    result["animate"] = animate(backbone, size, device)
    peak = result["train"]["peak_gb"]
    result["train_under_target"] = None if peak is None else peak < TARGET_GB
    result["target_gb"] = TARGET_GB
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-tiny", action="store_true", help="dry run: the same code at tiny size on the CPU")
    parser.add_argument("--out", type=Path, help="JSON output (default bench/results/gpu_smoke[_cpu_tiny].json)")
    args = parser.parse_args(argv)
    if args.cpu_tiny:
        preset, device, dtype = "tiny", "cpu", torch.float32
    elif torch.cuda.is_available():
        preset, device, dtype = "real", "cuda", torch.bfloat16
    else:
        print("no CUDA device: nothing to benchmark (use --cpu-tiny for a dry run of the same code)")
        return 0
    result = run(preset, device, dtype)
    out = args.out or RESULTS / ("gpu_smoke.json" if preset == "real" else "gpu_smoke_cpu_tiny.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    t, a = result["train"], result["animate"]
    gb = {k: "n/a (no CUDA)" if v["peak_gb"] is None else f"{v['peak_gb']} GB" for k, v in (("t", t), ("a", a))}
    print(f"{preset} {result['size']}px x {result['frames']} frames, {result['dtype']}, on {result['device']}")
    print(f"train (LoRA + checkpointing + MAM): {t['s_per_step']} s/step, peak {gb['t']} (target < {TARGET_GB} GB)")
    print(f"animate ({a['steps']} DDIM steps): {a['s_per_animation']} s, peak {gb['a']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
