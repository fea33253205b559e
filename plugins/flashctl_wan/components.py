"""The diffusers/transformers modules a Wan backbone is made of: tiny random ones from small configs (offline),
or a real preset's folder in the diffusers hub layout (:mod:`flashctl_wan.presets` resolves and checks it)."""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from transformers import (AutoTokenizer, CLIPImageProcessorPil, CLIPVisionModel, PreTrainedTokenizerBase,
                          T5Tokenizer, UMT5Config, UMT5EncoderModel)

from . import WAN21_I2V, WanOptions
from .presets import resolve_folder

TEMPORAL_DOWNSAMPLE = 4  # the Wan VAE: latent frames = (F - 1) / 4 + 1
PATCH = (1, 2, 2)  # Wan's transformer patch (time, height, width)


@dataclass
class Components:
    transformer: WanTransformer3DModel
    vae: AutoencoderKLWan
    text_encoder: UMT5EncoderModel
    tokenizer: PreTrainedTokenizerBase
    base_id: str
    content: dict[str, str | None] = field(default_factory=dict)  # base_content_id (a folder's weights only)
    image_encoder: CLIPVisionModel | None = None  # wan2.1-i2v: the reference's CLIP image tokens
    image_processor: CLIPImageProcessorPil | None = None  # wan2.1-i2v: its size and normalisation


def char_tokenizer(max_length: int) -> T5Tokenizer:
    """A character-level T5 (Unigram) tokenizer over printable ASCII, built offline: pad 0, </s> 1, unk 2."""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    for c in string.printable.strip():
        vocab += [(c, -3.0), ("\u2581" + c, -3.0)]  # a character, and the same one starting a word
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=max_length)


def tiny_components(options: WanOptions) -> Components:
    """Random-weight components, identical for the same options (``init_seed``) in any process."""
    o, levels = options, options.vae_levels
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(o.init_seed)
        transformer = WanTransformer3DModel(
            patch_size=PATCH, num_attention_heads=o.heads, attention_head_dim=o.head_dim,
            in_channels=o.latent_channels, out_channels=o.latent_channels, text_dim=o.text_dim, freq_dim=32,
            ffn_dim=o.ffn_dim, num_layers=o.layers, rope_max_seq_len=256)
        # time is halved by the last two downsamples (Wan: [False, True, True]), space by every one
        temporal = [False] * (levels - 3) + [True, True]
        vae = AutoencoderKLWan(
            base_dim=o.vae_dim, z_dim=o.latent_channels, dim_mult=[1] + [2] * (levels - 1), num_res_blocks=1,
            temperal_downsample=temporal, latents_mean=[0.0] * o.latent_channels,
            latents_std=[1.0] * o.latent_channels, scale_factor_spatial=2 ** (levels - 1),
            scale_factor_temporal=TEMPORAL_DOWNSAMPLE)
        tokenizer = char_tokenizer(o.prompt_tokens)
        text_encoder = UMT5EncoderModel(UMT5Config(
            vocab_size=len(tokenizer), d_model=o.text_dim, d_kv=o.text_dim // 4, d_ff=2 * o.text_dim, num_layers=2,
            num_heads=4, dropout_rate=0.0, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id))
    return Components(transformer, vae, text_encoder, tokenizer, base_id=tiny_base_id(o))


def tiny_base_id(options: WanOptions) -> str:
    """The base id of random tiny weights: the seed that made them."""
    return f"tiny(init_seed={options.init_seed})"


def real_components(options: WanOptions, ctx: Any) -> Components:
    """A real preset's folder (checked first by :func:`~flashctl_wan.presets.resolve_folder`), loaded in the
    build dtype."""
    folder = resolve_folder(options, ctx)
    root, dtype = folder.root, ctx.torch_dtype()
    image: dict[str, Any] = {}
    if options.preset == WAN21_I2V:
        image = {"image_encoder": CLIPVisionModel.from_pretrained(root, subfolder="image_encoder", dtype=dtype),
                 "image_processor": CLIPImageProcessorPil.from_pretrained(root, subfolder="image_processor")}
    return Components(
        transformer=WanTransformer3DModel.from_pretrained(root, subfolder="transformer", torch_dtype=dtype),
        vae=AutoencoderKLWan.from_pretrained(root, subfolder="vae", torch_dtype=dtype),
        text_encoder=UMT5EncoderModel.from_pretrained(root, subfolder="text_encoder", dtype=dtype),
        tokenizer=AutoTokenizer.from_pretrained(root, subfolder="tokenizer"),
        base_id=folder.base_id, content=folder.content(), **image)
