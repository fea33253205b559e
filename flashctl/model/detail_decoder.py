"""Detail Enhancement Decoder (DED): the backbone's frozen VAE decoder plus zero-initialised layers
that carry detail from the reference image into every decoded frame (METHOD.md, "Detail
Enhancement Decoder").

The reference image goes through the frozen VAE encoder block by block; its multi-scale feature
maps (after ``conv_in``, after each down block, after the mid block) are kept. The VAE decoder is
run block by block too, and after chosen up blocks a residual injection reads the encoder feature
of the same resolution: a cross-attention (decoder features are the queries) at low resolution, a
1x1 conv over ``[decoder, reference]`` features at high resolution. Every injection's last layer is
zero-initialised, so an unfitted DED decodes exactly like the stock VAE.

Options come from ``flashctl_decoders.DetailDecoderOptions`` (or anything with the same fields):
``attention_blocks``, ``conv_blocks``, ``heads``, ``kv_size``, ``train_steps``, ``lr``,
``noise_std``, ``batch_frames``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..errors import ConfigError, TrainingDivergedError, WeightsFileError, WeightsNotFoundError
from ..progress import NullReporter, Reporter
from .interfaces import Backbone
from .modules import require_finite

NAME = "detail-enhance"
FORMAT = "flashctl-detail-decoder/1"
OPTIONS_KEY = f"options.decoder.{NAME}"


class ReferenceCrossAttention(nn.Module):
    """Residual cross-attention: every frame's decoder features attend to the reference features.

    Keys and values come from the reference feature map, average-pooled to at most ``kv_size`` per
    side (the cost of attention); the output projection starts at zero.
    """

    def __init__(self, channels: int, ref_channels: int, heads: int, kv_size: int) -> None:
        super().__init__()
        self.heads, self.kv_size = heads, kv_size
        self.norm_q = nn.LayerNorm(channels)
        self.norm_kv = nn.LayerNorm(ref_channels)
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(ref_channels, channels, bias=False)
        self.to_v = nn.Linear(ref_channels, channels, bias=False)
        self.to_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """``x`` (B*F, c, h, w) decoder features, ``ref`` (B, c_ref, h, w) -> (B*F, c, h, w)."""
        b, (h, w) = ref.shape[0], x.shape[-2:]
        if max(ref.shape[-2:]) > self.kv_size:
            ref = F.adaptive_avg_pool2d(ref, (min(h, self.kv_size), min(w, self.kv_size)))  # (B, c_ref, h', w')
        # all frames of a video query the same reference at once: queries are independent
        tokens = rearrange(x, "(b f) c h w -> b (f h w) c", b=b)  # (B, F*h*w, c)
        kv = self.norm_kv(rearrange(ref, "b c h w -> b (h w) c"))  # (B, h'*w', c_ref)
        q = rearrange(self.to_q(self.norm_q(tokens)), "b n (m d) -> b m n d", m=self.heads)  # (B, heads, F*h*w, d)
        k = rearrange(self.to_k(kv), "b n (m d) -> b m n d", m=self.heads)  # (B, heads, h'*w', d)
        v = rearrange(self.to_v(kv), "b n (m d) -> b m n d", m=self.heads)  # (B, heads, h'*w', d)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, F*h*w, d)
        out = self.to_out(rearrange(out, "b m n d -> b n (m d)"))  # (B, F*h*w, c)
        return x + rearrange(out, "b (f h w) c -> (b f) c h w", h=h, w=w)


class ReferenceConcatConv(nn.Module):
    """Residual zero-initialised 1x1 conv over the concatenation [decoder features, reference features].

    Both inputs are normalised first (per map, over channels and pixels): decoder and encoder features
    differ in scale by an order of magnitude, which a zero-initialised layer would otherwise spend most
    of its fitting steps catching up with.
    """

    def __init__(self, channels: int, ref_channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)
        self.norm_ref = nn.GroupNorm(1, ref_channels)
        self.proj = nn.Conv2d(channels + ref_channels, channels, kernel_size=1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """``x`` (B*F, c, h, w) decoder features, ``ref`` (B, c_ref, h, w) -> (B*F, c, h, w)."""
        # .contiguous(): the VAE hands out channels_last maps, and torch 2.13's CPU GroupNorm backward
        # segfaults on a channels_last input that needs no grad while the norm's weight does
        ref = self.norm_ref(ref.contiguous())  # (B, c_ref, h, w)
        ref = ref.repeat_interleave(x.shape[0] // ref.shape[0], dim=0)  # (B*F, c_ref, h, w)
        return x + self.proj(torch.cat([self.norm(x.contiguous()), ref], dim=1))  # (B*F, c, h, w)


def _resized(feature: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, c, h', w') -> (B, c, *size); a no-op when the sizes already match."""
    if tuple(feature.shape[-2:]) == tuple(size):
        return feature
    return F.interpolate(feature, size=size, mode="bilinear", align_corners=False)


class DetailEnhanceDecoder(nn.Module):
    """The Detail Enhancement Decoder; build it, :meth:`attach` a backbone, then :meth:`decode`.

    An ``nn.Module`` whose parameters and ``state_dict`` are the injections only: the VAE is the backbone's,
    referenced, not owned. The saved file keeps the injections' own keys (format ``flashctl-detail-decoder/1``).
    """

    name = NAME
    has_weights = True

    def __init__(self, options: Any) -> None:
        super().__init__()
        self.options = options
        self.backbone: Backbone | None = None
        self.injections = nn.ModuleDict()  # str(up block index) -> injection, filled by attach
        self.layout: list[dict[str, Any]] = []  # one entry per injection, saved as metadata
        self.sources: dict[str, int] = {}  # str(up block index) -> encoder feature index

    # -- building ------------------------------------------------------------------------------

    def attach(self, backbone: Backbone) -> None:
        """Bind to ``backbone``'s VAE and create the injections its block layout calls for."""
        from diffusers import AutoencoderKL

        vae = backbone.vae
        if not isinstance(vae, AutoencoderKL):  # e.g. SVD's temporal VAE decodes frames jointly
            raise ConfigError(f"model.decoder = \"detail-enhance\" needs an AutoencoderKL VAE, but backbone "
                              f"'{backbone.name}' has {type(vae).__name__}, which decodes frames jointly",
                              hint=f"use model.decoder = \"vae\" with {backbone.name} "
                                   f"(and train.detail_decoder = false: there is nothing to fit)")
        n_up = len(vae.decoder.up_blocks)
        attention, conv = self._blocks(n_up)
        enc_shapes, up_shapes = self._probe(vae)
        self.layout, layers = [], {}
        for block in sorted(attention | conv):
            channels, scale = up_shapes[block]
            source = self._source(enc_shapes, scale)
            ref_channels = enc_shapes[source][0]
            if block in attention:
                if channels % self.options.heads:
                    raise ConfigError(
                        f"{OPTIONS_KEY}.heads: {self.options.heads} does not divide the {channels} channels "
                        f"of decoder up block {block}", hint=f"pick heads that divide {channels}")
                layers[str(block)] = ReferenceCrossAttention(channels, ref_channels, self.options.heads,
                                                             self.options.kv_size)
            else:
                layers[str(block)] = ReferenceConcatConv(channels, ref_channels)
            self.layout.append({"block": block, "kind": "attention" if block in attention else "conv",
                                "channels": channels, "source": source, "ref_channels": ref_channels})
        self.injections = nn.ModuleDict(layers).to(vae.device, vae.dtype)
        self.sources = {str(e["block"]): e["source"] for e in self.layout}
        self.backbone = backbone

    def _blocks(self, n_up: int) -> tuple[set[int], set[int]]:
        """The up-block indices with attention and with conv injections, checked against the VAE."""
        attention = set(self.options.attention_blocks)
        for key, blocks in (("attention_blocks", attention), ("conv_blocks", set(self.options.conv_blocks or ()))):
            bad = sorted(b for b in blocks if b >= n_up)
            if bad:
                raise ConfigError(f"{OPTIONS_KEY}.{key}: up block {bad[0]} does not exist; the VAE decoder has "
                                  f"{n_up} up blocks", hint=f"use indices 0..{n_up - 1} (0 = lowest resolution)")
        conv = set(range(n_up)) - attention if self.options.conv_blocks is None else set(self.options.conv_blocks)
        return attention, conv

    @staticmethod
    @torch.no_grad()
    def _probe(vae: nn.Module) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """(channels, size / image size) of every encoder feature and every decoder up-block output."""
        side = 2 * 2 ** len(vae.encoder.down_blocks)
        image = torch.zeros(1, 3, side, side, device=vae.device, dtype=vae.dtype)  # (1, 3, S, S)
        enc = [(f.shape[1], f.shape[-1] / side) for f in _encoder_features(vae, image)]
        latent = vae.encode(image).latent_dist.mode()  # (1, c, h, w)
        z = vae.post_quant_conv(latent) if vae.post_quant_conv is not None else latent
        x, up = vae.decoder.mid_block(vae.decoder.conv_in(z), None), []  # (1, c_mid, h, w)
        for block in vae.decoder.up_blocks:
            x = block(x, None)  # (1, c, h, w)
            up.append((x.shape[1], x.shape[-1] / side))
        return enc, up

    @staticmethod
    def _source(enc_shapes: list[tuple[int, float]], scale: float) -> int:
        """The deepest encoder feature at ``scale``, else the one nearest to it (resized when used)."""
        distance = [abs(math.log2(s / scale)) for _, s in enc_shapes]
        best = min(distance)
        return max(i for i, d in enumerate(distance) if d == best)

    # -- weights -------------------------------------------------------------------------------

    def metadata(self) -> dict[str, str]:
        """String metadata saved beside the tensors: format, layout, options."""
        return {"format": FORMAT, "layout": json.dumps(self.layout, sort_keys=True),
                "options": json.dumps(self.options.model_dump(mode="json"), sort_keys=True)}

    def save(self, path: Path) -> Path:
        """Write the injections to ``path`` (safetensors), replacing any old file only once complete."""
        from safetensors.torch import save_file

        path = Path(path)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self._attached().injections.state_dict().items()}
        require_finite(tensors, path, saving=True)
        staging = path.with_name(path.name + ".partial")
        save_file(tensors, str(staging), metadata=self.metadata())
        os.replace(staging, path)
        return path

    def load(self, path: Path) -> None:
        """Load injections saved by :meth:`save` for the same VAE layout and block options."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file, safe_open

        path = Path(path)
        if not path.is_file():
            raise WeightsNotFoundError(f"detail decoder weights {path} not found",
                                       hint="train the motion with train.detail_decoder = true")
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise WeightsFileError(f"detail decoder weights {path} are unreadable: {exc}",
                                   hint="retrain the motion to rewrite them") from None
        mine = self.metadata()
        if meta.get("format") != FORMAT or meta.get("layout") != mine["layout"]:
            raise WeightsFileError(
                f"detail decoder weights {path} have format {meta.get('format')!r} and layout {meta.get('layout')} "
                f"but this VAE and {OPTIONS_KEY} give {FORMAT!r} and {mine['layout']}",
                hint=f"restore the {OPTIONS_KEY} options and backbone the motion was trained with, or retrain it")
        require_finite(tensors, path, saving=False)
        vae = self._attached().backbone.vae
        self.injections.load_state_dict({k: v.to(vae.device, vae.dtype) for k, v in tensors.items()})

    # -- decoding ------------------------------------------------------------------------------

    def _attached(self) -> "DetailEnhanceDecoder":
        if self.backbone is None:
            raise RuntimeError("DetailEnhanceDecoder used before attach(backbone)")
        return self

    def reference_features(self, reference: torch.Tensor) -> dict[int, torch.Tensor]:
        """(B, 3, H, W) in [-1, 1] -> {encoder feature index: (B, c_i, h_i, w_i)}, only those used."""
        vae = self._attached().backbone.vae
        used = set(self.sources.values())
        with torch.no_grad():
            feats = _encoder_features(vae, reference.to(vae.device, vae.dtype))
        return {i: f for i, f in enumerate(feats) if i in used}

    def decode_with(self, latents: torch.Tensor, features: dict[int, torch.Tensor]) -> torch.Tensor:
        """(B, F, c, h, w) scaled latents + :meth:`reference_features` -> (B, F, 3, H, W), unclamped, with grad."""
        vae = self._attached().backbone.vae
        dec, b = vae.decoder, latents.shape[0]
        z = rearrange(latents, "b f c h w -> (b f) c h w").to(vae.device, vae.dtype) / vae.config.scaling_factor
        if vae.post_quant_conv is not None:
            z = vae.post_quant_conv(z)  # (B*F, c, h, w)
        x = dec.mid_block(dec.conv_in(z), None)  # (B*F, c_mid, h, w)
        for block, up in enumerate(dec.up_blocks):
            x = up(x, None)  # (B*F, c_i, h_i, w_i)
            if str(block) in self.injections:
                ref = _resized(features[self.sources[str(block)]], x.shape[-2:])  # (B, c_ref, h_i, w_i)
                x = self.injections[str(block)](x, ref)
        x = dec.conv_out(dec.conv_act(dec.conv_norm_out(x)))  # (B*F, 3, H, W)
        return rearrange(x, "(b f) c h w -> b f c h w", b=b)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """(B, F, c, h, w) latents, (B, 3, H, W) reference in [-1, 1] -> (B, F, 3, H, W) in [-1, 1].

        Honours the VAE's slicing (``runtime.vae_slicing``): one frame at a time, the peak memory of one frame.
        """
        down = 2 ** (len(self._attached().backbone.vae.decoder.up_blocks) - 1)
        expected = (latents.shape[0], 3, latents.shape[-2] * down, latents.shape[-1] * down)
        if tuple(reference.shape) != expected:
            raise ValueError(f"reference of shape {tuple(reference.shape)} does not fit latents of shape "
                             f"{tuple(latents.shape)}: expected {expected}")
        features = self.reference_features(reference)
        if getattr(self.backbone.vae, "use_slicing", False):  # runtime.vae_slicing: a frame at a time, as the VAE
            frames = [self.decode_with(latents[:, f:f + 1], features) for f in range(latents.shape[1])]  # (B, 1, 3, H, W)
            return torch.cat(frames, dim=1).clamp(-1, 1)  # (B, F, 3, H, W); queries are per frame: same result
        return self.decode_with(latents, features).clamp(-1, 1)

    def fit(self, clips: torch.Tensor, *, seed: int = 0, reporter: Reporter = NullReporter()) -> list[float]:
        """Fit the injections on ``clips`` with the options' settings; see :func:`fit_detail_decoder`."""
        return fit_detail_decoder(self, clips, seed=seed, reporter=reporter)


def _encoder_features(vae: nn.Module, image: torch.Tensor) -> list[torch.Tensor]:
    """The frozen VAE encoder, block by block: after conv_in, after each down block, after the mid block."""
    enc = vae.encoder
    x = enc.conv_in(image)  # (B, c0, H, W)
    feats = [x]
    for block in enc.down_blocks:
        x = block(x)  # (B, c_i, h_i, w_i)
        feats.append(x)
    feats.append(enc.mid_block(x, None))  # (B, c_mid, h, w)
    return feats


def fit_detail_decoder(decoder: DetailEnhanceDecoder, clips: torch.Tensor, *, steps: int | None = None,
                       lr: float | None = None, noise_std: float | None = None, batch_frames: int | None = None,
                       seed: int = 0, reporter: Reporter = NullReporter()) -> list[float]:
    """Fit the DED's injections on ``clips`` (N, F, 3, H, W) in [-1, 1]; returns the L1 loss per step.

    Reference = each clip's first frame; targets = its other frames, decoded from their clean latents
    plus ``noise_std`` Gaussian noise. Each step draws ``batch_frames`` (clip, frame) pairs. The VAE
    stays frozen. Unset arguments come from the decoder's options. On a NaN/inf loss the injections
    are restored to what they were before fitting and :class:`TrainingDivergedError` is raised.
    """
    opts = decoder.options
    steps = opts.train_steps if steps is None else steps
    lr = opts.lr if lr is None else lr
    noise_std = opts.noise_std if noise_std is None else noise_std
    batch_frames = opts.batch_frames if batch_frames is None else batch_frames
    if clips.ndim != 5 or clips.shape[1] < 2:
        raise ValueError(f"clips must be (N, F>=2, 3, H, W), got {tuple(clips.shape)}")
    backbone = decoder._attached().backbone
    vae = backbone.vae
    vae.requires_grad_(False)
    clips = clips.to(vae.device, vae.dtype)  # (N, F, 3, H, W)
    n, frames = clips.shape[:2]
    latents = torch.cat([backbone.encode_video(clip[None]) for clip in clips])  # (N, F, c, h, w)
    features = decoder.reference_features(clips[:, 0])  # {i: (N, c_i, h_i, w_i)}
    params = list(decoder._attached().parameters())
    before = {k: v.clone() for k, v in decoder.state_dict().items()}
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    history: list[float] = []
    reporter.start("detail decoder", total=steps)
    for step in range(steps):
        clip_idx = torch.randint(0, n, (batch_frames,), generator=generator)  # (K,)
        frame_idx = torch.randint(1, frames, (batch_frames,), generator=generator)  # (K,)
        noise = torch.randn((batch_frames, *latents.shape[2:]), generator=generator).to(latents)  # (K, c, h, w)
        z = (latents[clip_idx, frame_idx] + noise_std * noise)[:, None]  # (K, 1, c, h, w)
        pred = decoder.decode_with(z, {i: f[clip_idx] for i, f in features.items()})  # (K, 1, 3, H, W)
        loss = (pred[:, 0].float() - clips[clip_idx, frame_idx].float()).abs().mean()
        if not torch.isfinite(loss):
            decoder.load_state_dict(before)
            reporter.finish()
            raise TrainingDivergedError(f"detail decoder: loss became {loss.item()} at step {step + 1} (lr {lr})",
                                        hint=f"lower {OPTIONS_KEY}.lr; the decoder was left as before fitting")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(loss.item())
        reporter.advance(1, loss=history[-1])
    reporter.finish()
    return history
