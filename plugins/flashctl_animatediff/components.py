"""The diffusers/transformers modules an AnimateDiff backbone is made of: tiny random or SD1.5."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from flashctl.context import require_weights
from flashctl.model.content_id import content_id

from . import SD15_BASE, SD15_MOTION_ADAPTER, TINY_SHIPPED, AnimateDiffOptions

SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer")
BASE_WEIGHTS = ("unet", "vae", "text_encoder")  # the subfolders whose weights make the base's content id
ADAPTER_FOLDER = "motion_adapter"
BASE_RECORD = "flashctl_base.json"  # how a pretrained tiny base was trained: {"target": ..., "prediction_type": ...}
SHIPPED_TINY_BASE = Path(__file__).parent / "weights" / "tiny-base"


@dataclass
class Components:
    unet2d: UNet2DConditionModel
    adapter: MotionAdapter
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    base_id: str
    trained_as: dict[str, str] = field(default_factory=dict)  # option values the weights were trained with
    content: dict[str, str | None] = field(default_factory=dict)  # base_content_id / adapter_content_id (files only)


@dataclass
class Folders:
    """Where a base's weights live, resolved without loading them (what the geometry pre-check reads)."""

    root: Path
    adapter: Path
    base_id: str | None  # the base's id text when it is known without hashing every byte

    def content(self) -> dict[str, str | None]:
        """Content ids (header + size + samples, :mod:`flashctl.model.content_id`) of the base and the adapter."""
        return {"base_content_id": content_id([self.root / s for s in BASE_WEIGHTS], self.root),
                "adapter_content_id": content_id(self.adapter)}

    def trained_as(self) -> dict[str, str]:
        record = self.root / BASE_RECORD
        return json.loads(record.read_text()) if record.is_file() else {}


def resolve_folders(options: AnimateDiffOptions, ctx: Any) -> Folders | None:
    """The base and adapter folders ``options`` name (``None``: random tiny weights, no folder)."""
    if options.preset == "sd15":
        base_ref = options.base or SD15_BASE
        root = require_weights(ctx, base_ref, label="animatediff sd15: base weights",
                               option_key="options.backbone.animatediff.base", subfolders=SUBFOLDERS)
        adapter_ref = options.motion_adapter or SD15_MOTION_ADAPTER
        adapter = require_weights(ctx, adapter_ref, label="animatediff sd15: motion adapter",
                                  option_key="options.backbone.animatediff.motion_adapter")
        return Folders(root, adapter, base_ref)
    if not options.base:
        return None
    ref = str(SHIPPED_TINY_BASE) if options.base == TINY_SHIPPED else options.base
    root = require_weights(ctx, ref, label="animatediff tiny: base weights",
                           option_key="options.backbone.animatediff.base", subfolders=SUBFOLDERS + (ADAPTER_FOLDER,))
    return Folders(root, root / ADAPTER_FOLDER, None)


def byte_level_tokenizer(max_length: int = 77) -> CLIPTokenizer:
    """A char-level CLIP tokenizer over the 256 byte symbols, built offline (514 tokens)."""
    from tokenizers import pre_tokenizers

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def tiny_components(options: AnimateDiffOptions) -> Components:
    """Random-weight components, identical for the same options (``init_seed``) in any process."""
    n, groups = len(options.channels), 8
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(options.init_seed)
        unet2d = UNet2DConditionModel(
            block_out_channels=options.channels, layers_per_block=1, in_channels=4, out_channels=4,
            down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
            cross_attention_dim=options.text_dim, attention_head_dim=8, norm_num_groups=groups)
        adapter = MotionAdapter(block_out_channels=options.channels, motion_layers_per_block=1,
                                motion_norm_num_groups=groups, motion_num_attention_heads=4)
        m = len(options.vae_channels)
        vae = AutoencoderKL(block_out_channels=options.vae_channels, in_channels=3, out_channels=3, latent_channels=4,
                            down_block_types=("DownEncoderBlock2D",) * m, up_block_types=("UpDecoderBlock2D",) * m,
                            layers_per_block=1, norm_num_groups=groups)
        tokenizer = byte_level_tokenizer()
        text_encoder = CLIPTextModel(CLIPTextConfig(
            hidden_size=options.text_dim, intermediate_size=2 * options.text_dim, num_attention_heads=4,
            num_hidden_layers=2, vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id))
    return Components(unet2d, adapter, vae, text_encoder, tokenizer, base_id=random_base_id(options))


def random_base_id(options: AnimateDiffOptions) -> str:
    """The base id of random tiny weights: the seed that made them."""
    return f"tiny(init_seed={options.init_seed})"


def pretrained_tiny_components(options: AnimateDiffOptions, ctx: Any) -> Components:
    """A tiny base that ``save_pretrained`` wrote (pretrain_base.py's ``final/``), or the one shipped here.

    The base id is a hash of the weights (not their folder), so motions trained on one pretrained base refuse
    another and load on any copy of the same one.
    """
    folders = resolve_folders(options, ctx)
    root = folders.root
    digest = hashlib.sha256()
    for sub in ("unet", ADAPTER_FOLDER, "vae", "text_encoder"):
        for file in sorted((root / sub).glob("*.safetensors")):
            digest.update(file.read_bytes())
    return Components(
        unet2d=UNet2DConditionModel.from_pretrained(root, subfolder="unet"),
        adapter=MotionAdapter.from_pretrained(root, subfolder=ADAPTER_FOLDER),
        vae=AutoencoderKL.from_pretrained(root, subfolder="vae"),
        text_encoder=CLIPTextModel.from_pretrained(root, subfolder="text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(root, subfolder="tokenizer"),
        base_id=f"tiny-pretrained@{digest.hexdigest()[:16]}",  # kept: the shipped motions record it
        trained_as=folders.trained_as(),
        content=folders.content(),
    )


def sd15_components(options: AnimateDiffOptions, ctx: Any) -> Components:
    """SD1.5 base (unet/ vae/ text_encoder/ tokenizer/) plus a MotionAdapter folder, resolved through ``ctx``."""
    folders = resolve_folders(options, ctx)
    root, adapter_dir = folders.root, folders.adapter
    return Components(
        unet2d=UNet2DConditionModel.from_pretrained(root, subfolder="unet"),
        adapter=MotionAdapter.from_pretrained(adapter_dir),
        vae=AutoencoderKL.from_pretrained(root, subfolder="vae"),
        text_encoder=CLIPTextModel.from_pretrained(root, subfolder="text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(root, subfolder="tokenizer"),
        base_id=folders.base_id,
        content=folders.content(),
    )
