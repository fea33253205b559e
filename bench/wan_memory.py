"""Wan2.2-TI2V-5B training-step memory, estimated on the CPU from one and two of its 30 blocks.

    .venv/bin/python bench/wan_memory.py [--tokens 64 128 256] [--text-len 512]

Builds ``WanTransformer3DModel`` with the TI2V-5B transformer's shapes (width 24 x 128 = 3072, feed-forward
14336, text width 4096, 48 latent channels, patch 1x2x2) but only 1 and 2 blocks, random weights in bf16 (the
real presets' ``frozen_dtype``), LoRA rank 8 on every block's ``attn1`` q/k/v/out (as flashctl trains it),
diffusers' per-block gradient checkpointing, and runs one forward + backward of the paired ``[x; x~]`` batch
(2 videos) with per-token timesteps, counting live tensor bytes (``bench/memory_tracker.py``). The bytes of
one block (2 blocks minus 1) and of the rest are fitted per token and scaled to 30 blocks and to
480x832x49 (13 latent frames x 15 x 26 patches = 5,070 tokens per video). Weights are counted from the
config. What is measured: the small points printed; everything at 480p is extrapolated.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from memory_tracker import LiveBytes  # noqa: E402

TI2V_5B = dict(patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128, in_channels=48, out_channels=48,
               text_dim=4096, freq_dim=256, ffn_dim=14336, num_layers=30, cross_attn_norm=True,
               qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
TOKENS_480P = 13 * 15 * 26  # latent frames x patches per frame at 480x832x49 (VAE 16x, patch 2, time 4x)
MB = 2**20


def transformer(blocks: int) -> torch.nn.Module:
    from diffusers import WanTransformer3DModel
    from peft import LoraConfig

    torch.manual_seed(0)
    model = WanTransformer3DModel(**{**TI2V_5B, "num_layers": blocks}).to(torch.bfloat16)
    model.requires_grad_(False)
    model.add_adapter(LoraConfig(r=8, lora_alpha=8, target_modules=r".*blocks\.\d+\.attn1\.(to_q|to_k|to_v|to_out\.0)"))
    model.enable_gradient_checkpointing()
    return model.train()


def step_bytes(model: torch.nn.Module, tokens: int, text_len: int) -> int:
    """Peak live bytes of one paired forward + backward with ``tokens`` patches per video (a square latent frame)."""
    side = int(tokens ** 0.5)
    frames, h, w = max(1, tokens // (side * side)), 2 * side, 2 * side  # latent grid; patch 2x2
    x = torch.randn(2, 48, frames, h, w, dtype=torch.bfloat16)  # (2, c, F', h, w): [x; x~]
    t = torch.full((2, frames * side * side), 500.0)  # (2, tokens): per-token timesteps (TI2V-style)
    text = torch.randn(2, text_len, 4096, dtype=torch.bfloat16)  # (2, text_len, 4096)
    with LiveBytes() as tracker:
        out = model(x, t, encoder_hidden_states=text).sample  # (2, c, F', h, w)
        out.float().pow(2).mean().backward()
    return tracker.peak


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares ``bytes = a + b * tokens`` -> (a, b)."""
    n = len(points)
    mx, my = sum(p[0] for p in points) / n, sum(p[1] for p in points) / n
    b = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return my - b * mx, b


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, nargs="+", default=[64, 144, 256], help="patches per video (squares)")
    p.add_argument("--text-len", type=int, default=512)
    args = p.parse_args()
    torch.set_num_threads(2)
    measured = {}
    for blocks in (1, 2):
        model = transformer(blocks)
        for tokens in args.tokens:
            measured[(blocks, tokens)] = step_bytes(model, tokens, args.text_len)
            print(f"blocks {blocks}  tokens/video {tokens:5d}  step {measured[(blocks, tokens)] / MB:9.1f} MB",
                  flush=True)
    per_block = fit([(t, measured[(2, t)] - measured[(1, t)]) for t in args.tokens])
    rest = fit([(t, 2 * measured[(1, t)] - measured[(2, t)]) for t in args.tokens])
    full = transformer(1)
    lora_and_shared = sum(q.numel() * q.element_size() for q in full.parameters())
    block_weights = sum(q.numel() * q.element_size() for q in full.blocks[0].parameters())
    weights = lora_and_shared + (TI2V_5B["num_layers"] - 1) * block_weights
    at = lambda fit_, tokens: fit_[0] + fit_[1] * tokens  # noqa: E731
    step = TI2V_5B["num_layers"] * at(per_block, TOKENS_480P) + at(rest, TOKENS_480P)
    print(f"per block: {per_block[1] / MB * 1000:.1f} MB per 1000 tokens/video (+{per_block[0] / MB:.1f} MB); "
          f"rest: {rest[1] / MB * 1000:.1f} MB per 1000 tokens (+{rest[0] / MB:.1f} MB)")
    print(f"transformer weights in bf16 (30 blocks, from the config): {weights / 2**30:.2f} GB")
    print(f"extrapolated step at 480x832x49 ({TOKENS_480P} tokens/video, paired): {step / 2**30:.2f} GB of "
          f"activations; with the weights {(step + weights) / 2**30:.2f} GB (VAE, text encoder, optimizer not counted)")


if __name__ == "__main__":
    main()
