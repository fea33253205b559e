"""The SVD backbone: UNetSpatioTemporalConditionModel with cross-frame spatial attention, temporal VAE, CLIP image.

Conditioning, as the protocol's ``encode_prompt`` / ``denoise`` split allows it:

* The reference is frame 0 of every latent video (flashctl keeps it clean there, LAMP-style), so
  :meth:`SVDBackbone.denoise` takes it from ``latents[:, 0]``. Like SVD's pipeline it concatenates
  the unscaled reference latent to every frame's latent (8 input channels) and cross-attends to the
  CLIP image embedding of the reference. ``denoise`` never sees pixels, so that embedding is taken
  from the VAE decoding of frame 0 (resized to the encoder's 224 px, CLIP-normalised), cached while
  frame 0 stays the same (every step of one sampling run).
* The concatenated latent is the clean one; ``noise_aug_strength`` only reaches SVD's
  ``added_time_ids`` (SVD's pipeline also noises the image before encoding it).
* :meth:`SVDBackbone.encode_prompt` cannot see the reference and SVD has no text input, so it
  returns a ``(B, 1, 1)`` conditioning weight instead of an embedding: 1 for any prompt, 0 for
  the empty prompt. 0 zeroes the image embedding and the concatenated latent, which is SVD's
  unconditional branch; so guidance with the default empty negative prompt is SVD's guidance.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange

from flashctl.model.configs import geometry_record, latent_geometry, public_config
from flashctl.model.cross_frame import CROSS_FRAME_QUERY, set_num_frames, split_attention
from flashctl.model.latent_backbone import LatentVideoBackbone
from flashctl.model.modules import freeze
from flashctl.model.objectives import DiffusionObjective

from . import SVD_BASE, SVDOptions
from .components import Components, base_content, random_base_id, resolve_base, svd_components, tiny_components
from .schedule import TRAIN_STEPS, noise_condition, scheduler_config

TEMPORAL_ATTN = re.compile(r"(.*\.)?attentions\.\d+\.temporal_transformer_blocks\.\d+\.attn1\.processor")
LORA_TARGETS = [
    r".*temporal_transformer_blocks\.\d+\.attn1\.(to_q|to_k|to_v|to_out\.0)",
    CROSS_FRAME_QUERY,
]


class SVDBackbone(LatentVideoBackbone):
    name = "svd"
    lora_targets = LORA_TARGETS
    # train's gradient checkpointing wraps the spatio-temporal transformers whole (diffusers' own skips their
    # temporal blocks, where the LoRA trains): flashctl.model.checkpointing
    checkpoint_modules = r".*\.attentions\.\d+"

    def __init__(self, components: Components, options: SVDOptions, device: str, dtype: torch.dtype) -> None:
        self.options = options
        self.base_id, self._content = components.base_id, components.content
        self.unet, self.vae, self.image_encoder = components.unet, components.vae, components.image_encoder
        freeze((self.unet, self.vae, self.image_encoder), device, dtype)
        extractor = components.feature_extractor
        self._clip_mean = torch.tensor(extractor.image_mean).view(1, 3, 1, 1)  # (1, 3, 1, 1)
        self._clip_std = torch.tensor(extractor.image_std).view(1, 3, 1, 1)  # (1, 3, 1, 1)
        self.feature_extractor = extractor
        self.spatial_attention, self.temporal_attention = split_attention(self.unet, TEMPORAL_ATTN)
        self.objective = DiffusionObjective(scheduler_config(options.sigma_min, options.sigma_max))  # EDM, VP form
        self._embedding_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """(B,) prompts -> (B, 1, 1) conditioning weights: 0 for the empty prompt (unconditional), else 1."""
        weights = [[[float(bool(p.strip()))]] for p in prompts]
        return torch.tensor(weights, device=self.device, dtype=self.dtype)  # (B, 1, 1)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """The temporal decoder decodes each video's frames together (it mixes neighbouring frames)."""
        b, frames = latents.shape[:2]
        z = rearrange(latents, "b f c h w -> (b f) c h w").to(self.vae.dtype) / self.vae.config.scaling_factor
        video = self.vae.decode(z, num_frames=frames).sample.clamp(-1, 1)  # (B*F, 3, H, W)
        return rearrange(video, "(b f) c h w -> b f c h w", b=b)

    @torch.no_grad()
    def image_embedding(self, reference: torch.Tensor) -> torch.Tensor:
        """(B, c, h, w) scaled reference latents -> (B, 1, dim) CLIP image embeddings of their decoding."""
        cached = self._embedding_cache
        if cached is not None and cached[0].shape == reference.shape and torch.equal(cached[0], reference):
            return cached[1]
        image = self.decode_latents(reference[:, None])[:, 0].float()  # (B, 3, H, W) in [-1, 1]
        side = self.image_encoder.config.image_size
        image = F.interpolate(image, size=(side, side), mode="bicubic", align_corners=False, antialias=True)
        mean, std = self._clip_mean.to(image.device), self._clip_std.to(image.device)
        pixels = ((image + 1) / 2 - mean) / std  # (B, 3, 224, 224)
        embedding = self.image_encoder(pixels.to(self.image_encoder.dtype)).image_embeds[:, None]  # (B, 1, dim)
        self._embedding_cache = (reference.clone(), embedding)
        return embedding

    def added_time_ids(self, batch: int) -> torch.Tensor:
        """(B, 3): fps - 1, motion bucket, noise augmentation, as SVD's pipeline passes them."""
        o = self.options
        ids = torch.tensor([o.fps - 1, o.motion_bucket_id, o.noise_aug_strength], device=self.device, dtype=self.dtype)
        return ids.expand(batch, -1)

    def denoise(self, latents: torch.Tensor, timestep: torch.Tensor, prompt_emb: torch.Tensor) -> torch.Tensor:
        """v for ``(B, F, c, h, w)`` latents whose frame 0 is the clean reference; ``prompt_emb`` is ``(B, 1, 1)``."""
        b, frames = latents.shape[:2]
        set_num_frames(self.unet, frames)
        weight = prompt_emb.reshape(b, 1, 1).to(latents.dtype)  # (B, 1, 1): 1 conditioned, 0 unconditional
        reference = latents[:, 0]  # (B, c, h, w)
        embedding = self.image_embedding(reference).to(latents.dtype) * weight  # (B, 1, dim)
        condition = reference[:, None] / self.vae.config.scaling_factor * weight[..., None, None]  # (B, 1, c, h, w)
        sample = torch.cat([latents, condition.expand_as(latents)], dim=2)  # (B, F, 2c, h, w)
        o = self.options
        t = noise_condition(timestep.reshape(-1).expand(b), o.sigma_min, o.sigma_max, TRAIN_STEPS)  # (B,)
        return self.unet(sample, t.to(self.device), encoder_hidden_states=embedding,
                         added_time_ids=self.added_time_ids(b)).sample  # (B, F, c, h, w)

    def geometry(self) -> dict[str, Any]:
        configs = {"unet": public_config(self.unet.config), "vae": public_config(self.vae.config),
                   "image_encoder": public_config(self.image_encoder.config)}
        return geometry_record(self.name, self.options.preset, self.base_id, configs, self.vae.config, self._content)

    def save_pretrained(self, path: Path) -> Path:
        """Write the base in the svd layout (unet/ vae/ image_encoder/ feature_extractor/).

        Call it before motion LoRA is added: the dump is the frozen base only.
        """
        path = Path(path)
        self.unet.save_pretrained(path / "unet")
        self.vae.save_pretrained(path / "vae")
        self.image_encoder.save_pretrained(path / "image_encoder")
        self.feature_extractor.save_pretrained(path / "feature_extractor")
        return path


def build_backbone(options: SVDOptions, ctx: Any) -> SVDBackbone:
    components = tiny_components(options) if options.preset == "tiny" else svd_components(options, ctx)
    return SVDBackbone(components, options, ctx.device, ctx.torch_dtype())


def metadata_geometry(options: SVDOptions, ctx: Any) -> dict[str, Any]:
    """The geometry keys knowable from the folder's files (configs, safetensors headers) without building the
    model: what :meth:`MotionModel.from_motion` checks before any weights load."""
    if options.preset == "tiny":
        vae: dict[str, Any] = {"block_out_channels": options.vae_channels, "latent_channels": 4}
        geo = {"base": random_base_id(options)}
    else:
        root = resolve_base(options, ctx)
        vae = json.loads((root / "vae" / "config.json").read_text())
        geo = {"base": options.base or SVD_BASE, **{k: v for k, v in base_content(root).items() if v}}
    return {"backbone": SVDBackbone.name, "preset": options.preset, **geo, **latent_geometry(vae)}
