"""The Wan backbone: WanTransformer3DModel (full 3-D attention), causal 3-D AutoencoderKLWan, UMT5 text.

* Frames: the VAE compresses time 4x causally, so a clip has 4k+1 frames and ``(F - 1) / 4 + 1`` latent
  frames; latent frame 0 encodes video frame 0 alone (so a still image's latent is a clip's frame 0).
  Sides must be multiples of the VAE's spatial compression times the transformer's patch (tiny 8,
  wan2.1-i2v 16, wan2.2-ti2v 32).
* Image conditioning, per preset:

  - ``tiny`` and ``wan2.2-ti2v``: Wan2.2-TI2V-style, the reference's latent is latent frame 0, clean, and its
    tokens get timestep 0 (Wan's ``expand_timesteps``); flashctl already keeps frame 0 clean and out of the
    loss (:mod:`flashctl.model.flash`), so nothing else is needed.
  - ``wan2.1-i2v``: as ``WanImageToVideoPipeline``, 36 input channels (noisy latents ++ first-frame mask ++
    the latents of the reference followed by black frames) and the reference's CLIP image tokens
    (:mod:`flashctl_wan.image_condition`); one timestep for every token. flashctl keeps latent frame 0 the
    clean reference (its LAMP-style frame 0) where the stock pipeline denoises it from noise beside the mask.

* Objective: rectified flow (:class:`~flashctl.model.objectives.FlowMatchingObjective`), the
  transformer predicting the velocity ``noise - x0`` at timesteps in [0, 1000].
* Latents are normalised per channel like Wan's pipelines: ``(mu - latents_mean) / latents_std``.
* MAM: every block's ``attn1`` runs :class:`~flashctl_wan.mam.WanFrameAttnProcessor` and is listed as
  temporal AND cross-frame attention (frames and tokens mix in that one 3-D self-attention): motion
  alignment hooks its input, correspondence alignment its attention call (:mod:`flashctl_wan.mam`).
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from einops import rearrange

from flashctl.errors import ConfigError
from flashctl.model.configs import geometry_record, public_config
from flashctl.model.latent_backbone import LatentVideoBackbone
from flashctl.model.modules import freeze
from flashctl.model.objectives import FlowMatchingObjective

from . import WanOptions
from .components import TEMPORAL_DOWNSAMPLE, Components, real_components, tiny_base_id, tiny_components
from .image_condition import ImageCondition
from .mam import FrameLayout, install_frame_processors
from .presets import resolve_folder

SELF_ATTN = re.compile(r"(.*\.)?blocks\.\d+\.attn1\.processor")
LORA_TARGETS = [r"(.*\.)?blocks\.\d+\.attn1\.(to_q|to_k|to_v|to_out\.0)"]


def check_frames(frames: int) -> None:
    """Refuse a video frame count the Wan VAE cannot hold (it needs 4k+1)."""
    if frames < 1 or (frames - 1) % TEMPORAL_DOWNSAMPLE:
        below = max(1, (frames - 1) // TEMPORAL_DOWNSAMPLE * TEMPORAL_DOWNSAMPLE + 1)
        raise ConfigError(f"backbone 'wan' needs 4k+1 frames (its VAE compresses time 4x), got {frames}",
                          hint=f"set prepare.frames = 5, 9, 13, 17, ... (e.g. {below} or "
                               f"{below + TEMPORAL_DOWNSAMPLE}) and prepare the clips again")


def check_size(height: int, width: int, multiple: int, preset: str) -> None:
    """Refuse pixel sides the VAE and the transformer's patches do not tile."""
    if height % multiple or width % multiple:
        side = max(multiple, round(min(height, width) / multiple) * multiple)
        raise ConfigError(f"backbone 'wan' ({preset}) needs sides that are multiples of {multiple} (VAE "
                          f"compression x transformer patch), got {width}x{height}",
                          hint=f"set prepare.size to a multiple of {multiple} (e.g. {side}) and prepare the clips "
                               "again")


class WanBackbone(LatentVideoBackbone):
    name = "wan"
    lora_targets = LORA_TARGETS

    def __init__(self, components: Components, options: WanOptions, device: str, dtype: torch.dtype) -> None:
        self.options = options
        self.base_id, self._content = components.base_id, components.content
        self.unet, self.vae = components.transformer, components.vae  # `unet`: the protocol's name for the denoiser
        self.text_encoder, self.tokenizer = components.text_encoder, components.tokenizer
        self.image_encoder, self.image_processor = components.image_encoder, components.image_processor
        freeze(tuple(m for m in (self.unet, self.vae, self.text_encoder, self.image_encoder) if m is not None),
               device, dtype)
        # wan2.1-i2v: condition channels + CLIP image tokens; tiny / wan2.2-ti2v: the clean first latent frame
        self.image_condition = (ImageCondition(self.image_encoder, self.image_processor)
                                if self.image_encoder is not None else None)
        self.layout = FrameLayout()
        self.temporal_attention = [n for n in self.unet.attn_processors if SELF_ATTN.fullmatch(n)]
        self.spatial_attention = list(self.temporal_attention)  # attn1's 3-D attention is both (flashctl_wan.mam)
        install_frame_processors(self.unet, self.temporal_attention, self.layout)
        self.objective = FlowMatchingObjective(num_train_timesteps=1000, shift=options.shift)
        z = self.vae.config.z_dim
        self._latent_mean = torch.tensor(self.vae.config.latents_mean).view(1, z, 1, 1, 1)  # (1, c, 1, 1, 1)
        self._latent_std = torch.tensor(self.vae.config.latents_std).view(1, z, 1, 1, 1)  # (1, c, 1, 1, 1)

    @staticmethod
    def latent_frames(frames: int) -> int:
        """Video frames -> latent frames, ``(F - 1) / 4 + 1``; other counts are a :class:`ConfigError`."""
        check_frames(frames)
        return (frames - 1) // TEMPORAL_DOWNSAMPLE + 1

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._latent_mean.to(like), self._latent_std.to(like)

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """(B,) prompts -> (B, text_len, dim); as Wan's pipelines, positions after the prompt are zeros."""
        tokens = self.tokenizer(prompts, padding="max_length", max_length=self.options.prompt_tokens, truncation=True,
                                return_attention_mask=True, return_tensors="pt")
        ids, mask = tokens.input_ids.to(self.device), tokens.attention_mask.to(self.device)  # (B, seq) each
        emb = self.text_encoder(ids, mask).last_hidden_state  # (B, seq, dim)
        return emb * mask[..., None].to(emb)  # (B, seq, dim)

    @property
    def pixel_multiple(self) -> int:
        """What a frame's sides must be a multiple of: the VAE's spatial compression x the transformer's patch."""
        return int(self.vae.config.scale_factor_spatial) * int(self.unet.config.patch_size[1])

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """(B, F, 3, H, W) in [-1, 1], F = 4k+1 -> (B, (F-1)/4+1, c, h, w) normalised latents (posterior mode)."""
        self.latent_frames(video.shape[1])
        check_size(*video.shape[-2:], self.pixel_multiple, self.options.preset)
        x = rearrange(video, "b f c h w -> b c f h w").to(self.device, self.vae.dtype)
        mu = self.vae.encode(x).latent_dist.mode()  # (B, c, F', h, w)
        mean, std = self._stats(mu)
        return rearrange((mu - mean) / std, "b c f h w -> b f c h w")  # (B, F', c, h, w)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, F', c, h, w) -> (B, 4(F'-1)+1, 3, H, W): the causal decoder decodes a video's frames together."""
        z = rearrange(latents, "b f c h w -> b c f h w").to(self.vae.dtype)
        mean, std = self._stats(z)
        video = self.vae.decode(z * std + mean).sample.clamp(-1, 1)  # (B, 3, F, H, W)
        return rearrange(video, "b c f h w -> b f c h w")

    def token_timesteps(self, timestep: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """(B,) or scalar -> (B, F'*h'*w'): every token's timestep, 0 on frame 0's (the clean reference)."""
        b, frames, _, h, w = latents.shape
        _, ph, pw = self.unet.config.patch_size
        t = torch.as_tensor(timestep, device=latents.device).float().reshape(-1).expand(b)  # (B,)
        per_frame = torch.ones(frames, device=latents.device)  # (F',)
        per_frame[0] = 0.0
        tokens = per_frame.repeat_interleave((h // ph) * (w // pw))  # (F'*h'*w',): frame-major, as Wan flattens
        return t[:, None] * tokens[None]  # (B, F'*h'*w')

    def denoise(self, latents: torch.Tensor, timestep: torch.Tensor, prompt_emb: torch.Tensor) -> torch.Tensor:
        """Velocity for ``(B, F', c, h, w)`` latents whose frame 0 is the clean reference; timestep in [0, 1000]."""
        self.layout.frames = latents.shape[1]
        sample = rearrange(latents, "b f c h w -> b c f h w")
        if self.image_condition is None:  # first-frame latent conditioning: timestep 0 on the reference's tokens
            t, image = self.token_timesteps(timestep, latents), {}  # (B, F'*h'*w')
        else:  # wan2.1-i2v: mask + reference-latent channels, CLIP image tokens, one timestep per video
            condition, tokens = self.image_condition(self, latents)  # (B, 4 + c, F', h, w), (B, n, dim)
            sample = torch.cat([sample, condition.to(sample)], dim=1)  # (B, 2c + 4, F', h, w)
            t = torch.as_tensor(timestep, device=latents.device).float().reshape(-1).expand(latents.shape[0])  # (B,)
            image = {"encoder_hidden_states_image": tokens.to(latents)}
        out = self.unet(sample, t, encoder_hidden_states=prompt_emb.to(latents), **image).sample  # (B, c, F', h, w)
        return rearrange(out, "b c f h w -> b f c h w")

    def geometry(self) -> dict[str, Any]:
        configs = {"transformer": public_config(self.unet.config), "vae": public_config(self.vae.config),
                   "text_encoder": public_config(self.text_encoder.config)}
        if self.image_encoder is not None:
            configs["image_encoder"] = public_config(self.image_encoder.config)
        vae = self.vae.config  # seen as the AutoencoderKL terms geometry_record reads: channels, spatial levels
        view = SimpleNamespace(latent_channels=vae.z_dim, block_out_channels=tuple(vae.dim_mult))
        return {**geometry_record(self.name, self.options.preset, self.base_id, configs, view, self._content),
                "downsample": int(vae.scale_factor_spatial), "temporal_downsample": int(vae.scale_factor_temporal)}

    def save_pretrained(self, path: Path) -> Path:
        """Write the base in the diffusers Wan layout (transformer/ vae/ text_encoder/ tokenizer/).

        Call it before motion LoRA is added: the dump is the frozen base only.
        """
        path = Path(path)
        parts = {"transformer": self.unet, "vae": self.vae, "text_encoder": self.text_encoder,
                 "tokenizer": self.tokenizer, "image_encoder": self.image_encoder,
                 "image_processor": self.image_processor}
        for folder, part in parts.items():
            if part is not None:
                part.save_pretrained(path / folder)
        return path


def build_backbone(options: WanOptions, ctx: Any) -> WanBackbone:
    components = tiny_components(options) if options.preset == "tiny" else real_components(options, ctx)
    return WanBackbone(components, options, ctx.device, ctx.torch_dtype())


def metadata_geometry(options: WanOptions, ctx: Any) -> dict[str, Any]:
    """The geometry keys knowable from the folder's files (configs, safetensors headers) without building the
    model: what :meth:`MotionModel.from_motion` checks before any weights load."""
    if options.preset == "tiny":  # random weights: the options are the geometry
        return {"backbone": WanBackbone.name, "preset": options.preset, "base": tiny_base_id(options),
                "latent_channels": options.latent_channels, "downsample": 2 ** (options.vae_levels - 1)}
    folder = resolve_folder(options, ctx)
    return {"backbone": WanBackbone.name, "preset": options.preset, "base": folder.base_id, **folder.geometry(),
            **{k: v for k, v in folder.content().items() if v}}
