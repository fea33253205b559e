"""The AnimateDiff backbone: UNetMotionModel with cross-frame spatial attention, VAE, CLIP text.

Image conditioning is LAMP-style: the reference latent is frame 0 (kept clean by
:mod:`flashctl.model.flash`); cross-frame attention carries its appearance into later frames.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    MotionAdapter,
    UNet2DConditionModel,
    UNetMotionModel,
)
from einops import rearrange

from flashctl.errors import ConfigError
from flashctl.model.configs import geometry_record, latent_geometry, public_config
from flashctl.model.cross_frame import CROSS_FRAME_QUERY, set_num_frames, split_attention
from flashctl.model.latent_backbone import LatentVideoBackbone
from flashctl.model.modules import freeze
from flashctl.model.objectives import DiffusionObjective

from . import AnimateDiffOptions
from .components import (
    ADAPTER_FOLDER,
    BASE_RECORD,
    Components,
    pretrained_tiny_components,
    random_base_id,
    resolve_folders,
    sd15_components,
    tiny_components,
)

TEMPORAL_ATTN = re.compile(r"(.*\.)?motion_modules\.\d+\.transformer_blocks\.\d+\.attn[12]\.processor")
LORA_TARGETS = [
    r".*motion_modules\.\d+\.transformer_blocks\.\d+\.attn[12]\.(to_q|to_k|to_v|to_out\.0)",
    CROSS_FRAME_QUERY,
]
# the motion modules' feed-forward layers (options lora_feed_forward): pose up on all four demo actions at the same
# training cost, 3 seeds each (docs/results.md, "Feed-forward LoRA targets")
FEED_FORWARD_TARGET = r".*motion_modules\.\d+\.transformer_blocks\.\d+\.ff\.net\.(0\.proj|2)"


class AnimateDiffBackbone(LatentVideoBackbone):
    name = "animatediff"
    # train's gradient checkpointing wraps these whole (diffusers' own skips motion modules and the spatial
    # transformers' norm and projections): flashctl.model.checkpointing
    checkpoint_modules = r".*\.(attentions|motion_modules)\.\d+"

    def __init__(self, components: Components, options: AnimateDiffOptions, device: str, dtype: torch.dtype) -> None:
        self.options = options
        self.lora_targets = [*LORA_TARGETS, FEED_FORWARD_TARGET] if options.lora_feed_forward else LORA_TARGETS
        self.base_id, self._content = components.base_id, components.content
        self._unet2d_config = public_config(components.unet2d.config)
        self._adapter_config = public_config(components.adapter.config)
        self.unet = motion_unet(components.unet2d, components.adapter)
        self.vae, self.text_encoder, self.tokenizer = components.vae, components.text_encoder, components.tokenizer
        freeze((self.unet, self.vae, self.text_encoder), device, dtype)
        self.spatial_attention, self.temporal_attention = split_attention(self.unet, TEMPORAL_ATTN)
        self.objective = DiffusionObjective({  # SD1.5's DDPM schedule
            "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "linear",
            "prediction_type": options.prediction_type, "clip_sample": False, "steps_offset": 1,
            "set_alpha_to_one": False, "timestep_spacing": "linspace",
        })

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids  # (B, seq)
        return self.text_encoder(ids.to(self.device))[0]  # (B, seq, dim)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        b = latents.shape[0]
        z = rearrange(latents, "b f c h w -> (b f) c h w").to(self.vae.dtype) / self.vae.config.scaling_factor
        video = self.vae.decode(z).sample.clamp(-1, 1)  # (B*F, 3, H, W)
        return rearrange(video, "(b f) c h w -> b f c h w", b=b)

    def denoise(self, latents: torch.Tensor, timestep: torch.Tensor, prompt_emb: torch.Tensor) -> torch.Tensor:
        frames = latents.shape[1]
        residual = self.options.target == "residual"
        if residual:  # diffuse r_f = z_f - z_0: noisy r = sqrt(abar) r + sqrt(1-abar) eps = noisy z_f - sqrt(abar) z_0
            signal, sigma = self.objective.signal_and_noise(timestep, latents)  # (B, 1, 1, 1, 1) each
            reference = latents[:, :1]  # (B, 1, c, h, w), clean
            latents = torch.cat([reference, latents[:, 1:] - signal * reference], dim=1)
        set_num_frames(self.unet, frames)
        sample = rearrange(latents, "b f c h w -> b c f h w")
        context = prompt_emb.repeat_interleave(frames, dim=0)  # (B*F, seq, dim): UNetMotionModel's layout
        out = self.unet(sample, timestep, encoder_hidden_states=context).sample  # (B, c, F, h, w)
        out = rearrange(out, "b c f h w -> b f c h w")
        if residual and self.options.prediction_type == "v_prediction":  # v of z_f = v of r_f - sigma * z_0
            out = torch.cat([out[:, :1], out[:, 1:] - sigma * reference], dim=1)
        return out  # epsilon is the same for r_f and z_f

    def geometry(self) -> dict[str, Any]:
        configs = {"unet": self._unet2d_config, "motion_adapter": self._adapter_config,
                   "vae": public_config(self.vae.config)}
        if self.options.target == "latent":  # the default keeps the geometry (and its hash) it always had
            return geometry_record(self.name, self.options.preset, self.base_id, configs, self.vae.config,
                                   self._content)
        configs["target"] = self.options.target  # hashed, so check_compatible refuses the other parameterisation
        return {**geometry_record(self.name, self.options.preset, self.base_id, configs, self.vae.config,
                                  self._content), "target": self.options.target}

    def save_pretrained(self, path: Path) -> Path:
        """Write the base in the sd15 layout (unet/ vae/ text_encoder/ tokenizer/ motion_adapter/).

        Call it before motion LoRA is added: the dump is the frozen base only.
        """
        path = Path(path)
        state = self.unet.state_dict()
        unet2d = UNet2DConditionModel.from_config(self._unet2d_config)
        unet2d.load_state_dict({k: v for k, v in state.items() if "motion_modules" not in k})
        adapter = MotionAdapter.from_config(self._adapter_config)
        adapter.load_state_dict({k: v for k, v in state.items() if "motion_modules" in k})  # same key names
        unet2d.save_pretrained(path / "unet")
        adapter.save_pretrained(path / ADAPTER_FOLDER)
        self.vae.save_pretrained(path / "vae")
        self.text_encoder.save_pretrained(path / "text_encoder")
        self.tokenizer.save_pretrained(path / "tokenizer")
        record = {"target": self.options.target, "prediction_type": self.options.prediction_type}
        (path / BASE_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        return path


def motion_unet(unet2d: UNet2DConditionModel, adapter: MotionAdapter) -> UNetMotionModel:
    """The UNetMotionModel of ``unet2d`` + ``adapter``, holding their very tensors: built on the meta device and
    assigned, so loading holds one copy of the weights (``UNetMotionModel.from_unet2d`` initialises a second one
    at random, then copies into it)."""
    from accelerate import init_empty_weights

    with init_empty_weights():  # parameters on "meta": no memory, no random init
        unet = UNetMotionModel.from_unet2d(unet2d, adapter, load_weights=False)
    unet.load_state_dict({**unet2d.state_dict(), **adapter.state_dict()}, strict=True, assign=True)
    return unet


def build_backbone(options: AnimateDiffOptions, ctx: Any) -> AnimateDiffBackbone:
    if options.preset == "sd15":
        components = sd15_components(options, ctx)
    else:
        components = pretrained_tiny_components(options, ctx) if options.base else tiny_components(options)
    return AnimateDiffBackbone(components, _trained_as(options, components.trained_as), ctx.device,
                               ctx.torch_dtype())


def metadata_geometry(options: AnimateDiffOptions, ctx: Any) -> dict[str, Any]:
    """The geometry keys knowable from the folders' files (configs, safetensors headers) without building the
    model: what :meth:`MotionModel.from_motion` checks before any weights load. The configs' hash needs the
    built modules and is checked after."""
    folders = resolve_folders(options, ctx)
    if folders is None:  # random tiny weights: the options are the geometry
        vae: dict[str, Any] = {"block_out_channels": options.vae_channels, "latent_channels": 4}
        geo = {"base": random_base_id(options)}
    else:
        vae = json.loads((folders.root / "vae" / "config.json").read_text())
        options = _trained_as(options, folders.trained_as())
        geo = {"base": folders.base_id} if folders.base_id else {}
        geo.update({k: v for k, v in folders.content().items() if v})
    return {"backbone": AnimateDiffBackbone.name, "preset": options.preset, **geo, **latent_geometry(vae),
            "target": None if options.target == "latent" else options.target}


def _trained_as(options: AnimateDiffOptions, trained_as: dict[str, str]) -> AnimateDiffOptions:
    """Adopt the target / prediction type a pretrained base records; a conflicting explicit setting is an error."""
    for key, value in trained_as.items():
        if key in options.model_fields_set and getattr(options, key) != value:
            raise ConfigError(f"options.backbone.animatediff.{key} = {getattr(options, key)!r} does not match the "
                              f"base {options.base!r}, which was trained with {key} = {value!r}",
                              hint=f"remove the key (the base's own value is used) or set it to {value!r}")
    return options.model_copy(update=trained_as)
