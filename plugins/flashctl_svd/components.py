"""The diffusers/transformers modules an SVD backbone is made of: tiny random or a real SVD folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModelWithProjection

from flashctl.context import require_weights
from flashctl.model.content_id import content_id

from . import SVD_BASE, SVDOptions

SUBFOLDERS = ("unet", "vae", "image_encoder", "feature_extractor")
BASE_WEIGHTS = ("unet", "vae", "image_encoder")  # the subfolders whose weights make the base's content id
TIME_IDS = 3  # fps, motion bucket, noise augmentation
HEAD_DIM = 16  # tiny: attention head width


@dataclass
class Components:
    unet: UNetSpatioTemporalConditionModel
    vae: AutoencoderKLTemporalDecoder
    image_encoder: CLIPVisionModelWithProjection
    feature_extractor: CLIPImageProcessorPil  # only its normalisation (mean, std) is used
    base_id: str
    content: dict[str, str | None] = field(default_factory=dict)  # base_content_id (a folder's weights only)


def tiny_components(options: SVDOptions) -> Components:
    """Random-weight components, identical for the same options (``init_seed``) in any process."""
    n, dim = len(options.channels), options.embed_dim
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.init_seed)
        unet = UNetSpatioTemporalConditionModel(
            block_out_channels=options.channels, layers_per_block=1, in_channels=8, out_channels=4,
            down_block_types=("CrossAttnDownBlockSpatioTemporal",) * (n - 1) + ("DownBlockSpatioTemporal",),
            up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * (n - 1),
            cross_attention_dim=dim, num_attention_heads=tuple(c // HEAD_DIM for c in options.channels),
            addition_time_embed_dim=dim, projection_class_embeddings_input_dim=TIME_IDS * dim)
        m = len(options.vae_channels)
        vae = AutoencoderKLTemporalDecoder(block_out_channels=options.vae_channels, in_channels=3, out_channels=3,
                                           down_block_types=("DownEncoderBlock2D",) * m, latent_channels=4)
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=dim, projection_dim=dim, intermediate_size=2 * dim, num_hidden_layers=2,
            num_attention_heads=4, image_size=224, patch_size=32))  # 49 patches: cheap at SVD's input size
    return Components(unet, vae, image_encoder, CLIPImageProcessorPil(), base_id=random_base_id(options))


def random_base_id(options: SVDOptions) -> str:
    """The base id of random tiny weights: the seed that made them."""
    return f"tiny(init_seed={options.init_seed})"


def resolve_base(options: SVDOptions, ctx: Any) -> Path:
    """The SVD base folder ``options`` name, resolved through ``ctx`` without loading it."""
    return require_weights(ctx, options.base or SVD_BASE, label="svd: base weights",
                           option_key="options.backbone.svd.base", subfolders=SUBFOLDERS)


def base_content(root: Path) -> dict[str, str | None]:
    """The base's content id (header + size + samples, :mod:`flashctl.model.content_id`)."""
    return {"base_content_id": content_id([root / s for s in BASE_WEIGHTS], root)}


def svd_components(options: SVDOptions, ctx: Any) -> Components:
    """An SVD base folder (unet/ vae/ image_encoder/ feature_extractor/), resolved through ``ctx``."""
    root = resolve_base(options, ctx)
    return Components(
        unet=UNetSpatioTemporalConditionModel.from_pretrained(root, subfolder="unet"),
        vae=AutoencoderKLTemporalDecoder.from_pretrained(root, subfolder="vae"),
        image_encoder=CLIPVisionModelWithProjection.from_pretrained(root, subfolder="image_encoder"),
        feature_extractor=CLIPImageProcessorPil.from_pretrained(root, subfolder="feature_extractor"),
        base_id=options.base or SVD_BASE,
        content=base_content(root),
    )
