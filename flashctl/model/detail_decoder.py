"""Detail Enhancement Decoder (DED): the backbone's frozen VAE decoder plus zero-initialised layers
that carry detail from the reference image into every decoded frame (METHOD.md, "Detail
Enhancement Decoder").

The reference image goes through the frozen VAE encoder block by block; its multi-scale feature
maps (after ``conv_in``, after each down block, after the mid block) are kept. The VAE decoder is
run with a call after each up block, where a residual injection reads the encoder feature of the
same resolution: a cross-attention (decoder features are the queries) at low resolution, a 1x1 conv
over ``[decoder, reference]`` features at high resolution (:mod:`flashctl.model.detail_layers`).
Every injection's last layer is zero-initialised, so an unfitted DED decodes exactly like the stock VAE.

The VAE-specific half, how its encoder yields those features and how its decoder runs with the
injections, is a :class:`VaeInjector` looked up by the VAE's type (:func:`injector_for`): AutoencoderKL's
(:class:`KLInjector`, here) decodes every frame on its own; a backbone plugin brings the one for its own
VAE (``flashctl_wan.detail_decoder`` for Wan's causal 3-D VAE). The layers, fitting and files are shared.

Options come from ``flashctl_decoders.DetailDecoderOptions`` (or anything with the same fields):
``attention_blocks``, ``conv_blocks``, ``heads``, ``kv_size``, ``train_steps``, ``lr``,
``noise_std``, ``batch_frames``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from einops import rearrange
from torch import nn

from ..errors import ConfigError, TrainingDivergedError, WeightsFileError, WeightsNotFoundError
from ..progress import NullReporter, Reporter
from .detail_layers import ReferenceConcatConv, ReferenceCrossAttention, resized
from .interfaces import Backbone
from .modules import require_finite

NAME = "detail-enhance"
FORMAT = "flashctl-detail-decoder/1"
OPTIONS_KEY = f"options.decoder.{NAME}"

# (up block index, its output (B*T, c, h, w) for the videos ``rows`` of the batch, batch-major) -> the same, injected
Inject = Callable[[int, torch.Tensor, slice], torch.Tensor]


@dataclass
class FitBatch:
    """One fitting step's draw (:meth:`VaeInjector.fit_batch`)."""

    clips: torch.Tensor  # (K,) the clips drawn: their first frames are the references
    latents: torch.Tensor  # (K, F_z, c, h, w) clean latents to decode
    target: torch.Tensor  # (K, F_t, 3, H, W) what they decode to
    frames: slice  # the decoded frames the loss covers
    warm: int = 0  # leading latent frames decoded without gradient (they only fill a causal decoder's cache)


class VaeInjector(Protocol):
    """What the DED needs from one kind of VAE."""

    up_blocks: int  # decoder up blocks, 0 = lowest resolution
    spatial_factor: int  # image pixels per latent pixel
    recomputable: bool  # the up blocks are pure functions of their inputs: gradient checkpointing may rerun them

    def encoder_features(self, image: torch.Tensor, depth: int | None = None) -> list[torch.Tensor]:
        """(B, 3, H, W) still image in [-1, 1] -> [(B, c_i, h_i, w_i)]: after conv_in, each down block, the mid block;
        with ``depth``, only the first ``depth`` of them (the encoder stops there)."""

    def decode(self, latents: torch.Tensor, inject: Inject, warm: int = 0) -> torch.Tensor:
        """(B, F, c, h, w) backbone latents -> (B, F_video, 3, H, W) unclamped, ``inject`` after every up block;
        the first ``warm`` latent frames without gradient; honours the VAE's ``use_slicing``."""

    def fit_batch(self, latents: torch.Tensor, clips: torch.Tensor, frames: int,
                  generator: torch.Generator) -> FitBatch:
        """Draw about ``frames`` target frames from ``(N, F_z, c, h, w)`` latents of ``(N, F, 3, H, W)`` clips."""


class KLInjector:
    """AutoencoderKL, a 2-D VAE: frames decode independently, as ``(B*F)`` images; ``runtime.vae_slicing``
    decodes one frame at a time (the injections' queries are per frame, so the result is the same)."""

    def __init__(self, vae: nn.Module) -> None:
        self.vae = vae
        self.up_blocks = len(vae.decoder.up_blocks)
        self.spatial_factor = 2 ** (self.up_blocks - 1)
        self.recomputable = True

    def encoder_features(self, image: torch.Tensor, depth: int | None = None) -> list[torch.Tensor]:
        enc = self.vae.encoder
        stages = [enc.conv_in, *enc.down_blocks, lambda x: enc.mid_block(x, None)]
        feats, x = [], image  # (B, 3, H, W)
        for stage in stages[:depth]:
            x = stage(x)  # (B, c_i, h_i, w_i)
            feats.append(x)
        return feats

    def decode(self, latents: torch.Tensor, inject: Inject, warm: int = 0) -> torch.Tensor:
        if warm:  # frames are independent: the leading ones are simply decoded without gradient
            with torch.no_grad():
                head = self.decode(latents[:, :warm], inject)  # (B, warm, 3, H, W)
            return torch.cat([head, self.decode(latents[:, warm:], inject)], dim=1)
        if getattr(self.vae, "use_slicing", False):  # runtime.vae_slicing: a frame at a time, as the VAE
            frames = [self.decode_frames(latents[:, f:f + 1], inject) for f in range(latents.shape[1])]  # (B, 1, 3, H, W)
            return torch.cat(frames, dim=1)  # (B, F, 3, H, W)
        return self.decode_frames(latents, inject)

    def decode_frames(self, latents: torch.Tensor, inject: Inject) -> torch.Tensor:
        """(B, F, c, h, w) scaled latents -> (B, F, 3, H, W), all frames in one pass."""
        vae, b = self.vae, latents.shape[0]
        dec = vae.decoder
        z = rearrange(latents, "b f c h w -> (b f) c h w") / vae.config.scaling_factor
        if vae.post_quant_conv is not None:
            z = vae.post_quant_conv(z)  # (B*F, c, h, w)
        x = dec.mid_block(dec.conv_in(z), None)  # (B*F, c_mid, h, w)
        for block, up in enumerate(dec.up_blocks):
            x = inject(block, up(x, None), slice(None))  # (B*F, c_i, h_i, w_i)
        x = dec.conv_out(dec.conv_act(dec.conv_norm_out(x)))  # (B*F, 3, H, W)
        return rearrange(x, "(b f) c h w -> b f c h w", b=b)

    def fit_batch(self, latents: torch.Tensor, clips: torch.Tensor, frames: int,
                  generator: torch.Generator) -> FitBatch:
        """``frames`` (clip, frame) pairs, frame 0 (the reference itself) never drawn; each decoded alone."""
        n, length = clips.shape[:2]
        clip_idx = torch.randint(0, n, (frames,), generator=generator)  # (K,)
        frame_idx = torch.randint(1, length, (frames,), generator=generator)  # (K,)
        return FitBatch(clip_idx, latents[clip_idx, frame_idx][:, None], clips[clip_idx, frame_idx][:, None],
                        slice(None))


def injector_for(backbone: Backbone) -> VaeInjector:
    """The :class:`VaeInjector` for ``backbone``'s VAE, by the VAE's type (its class or a base class).

    A backbone plugin adds injectors for its VAEs with an ``INJECTORS`` dict (VAE class -> ``factory(vae)``) in
    the ``detail_decoder`` module of its package, next to the backbone's module (the convention
    :func:`~flashctl.model.motion_model.precheck_motion` uses for ``metadata_geometry``); they come before
    the built-in AutoencoderKL one. A VAE without one is a :class:`ConfigError`.
    """
    from diffusers import AutoencoderKL

    vae = backbone.vae
    table = {AutoencoderKL: KLInjector, **_plugin_injectors(backbone)}
    factory = next((table[cls] for cls in type(vae).__mro__ if cls in table), None)
    if factory is None:  # e.g. SVD's temporal VAE decodes frames jointly
        known = ", ".join(sorted(cls.__name__ for cls in table))
        raise ConfigError(f"model.decoder = \"detail-enhance\" has no injector for the {type(vae).__name__} VAE of "
                          f"backbone '{backbone.name}' (injectors exist for {known})",
                          hint=f"use model.decoder = \"vae\" with {backbone.name} "
                               f"(and train.detail_decoder = false: there is nothing to fit)")
    return factory(vae)


def _plugin_injectors(backbone: Backbone) -> dict[type, Callable[[nn.Module], VaeInjector]]:
    """``INJECTORS`` of the ``detail_decoder`` module beside ``backbone``'s class; {} when there is none."""
    package = type(backbone).__module__.rpartition(".")[0]
    if not package or importlib.util.find_spec(f"{package}.detail_decoder") is None:
        return {}
    return dict(getattr(importlib.import_module(f"{package}.detail_decoder"), "INJECTORS", {}))


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
        self.injector: VaeInjector | None = None
        self.injections = nn.ModuleDict()  # str(up block index) -> injection, filled by attach
        self.layout: list[dict[str, Any]] = []  # one entry per injection, saved as metadata
        self.sources: dict[str, int] = {}  # str(up block index) -> encoder feature index

    # -- building ------------------------------------------------------------------------------

    def attach(self, backbone: Backbone) -> None:
        """Bind to ``backbone``'s VAE (through its :func:`injector_for`) and create the injections it calls for."""
        injector = injector_for(backbone)
        vae = backbone.vae
        attention, conv = self._blocks(injector.up_blocks)
        enc_shapes, up_shapes = _probe(backbone, injector)
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
        self.backbone, self.injector = backbone, injector

    def _blocks(self, n_up: int) -> tuple[set[int], set[int]]:
        """The up-block indices with attention and with conv injections, checked against the VAE."""
        attention = set(self.options.attention_blocks)
        for key, blocks in (("attention_blocks", attention), ("conv_blocks", set(self.options.conv_blocks or ()))):
            bad = sorted(b for b in blocks if b >= n_up)
            if bad:
                raise ConfigError(f"{OPTIONS_KEY}.{key}: up block {bad[0]} does not exist; the VAE decoder has "
                                  f"{n_up} up blocks", hint=f"use indices 0..{n_up - 1} (0 = lowest resolution)")
        conv = {n_up - 1} - attention if self.options.conv_blocks is None else set(self.options.conv_blocks)
        return attention, conv

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
        self._attend_as_fitted(json.loads(meta.get("options") or "{}"))

    def _attend_as_fitted(self, fitted: dict[str, Any]) -> None:
        """Give the attention layers the ``heads`` and ``kv_size`` the loaded weights were fitted with: they change
        what the layers compute but not their tensors, so a file from other options (or older defaults) would
        otherwise load silently and decode differently."""
        for layer in self.injections.values():
            if isinstance(layer, ReferenceCrossAttention):
                layer.heads = int(fitted.get("heads", layer.heads))
                layer.kv_size = int(fitted.get("kv_size", layer.kv_size))

    # -- decoding ------------------------------------------------------------------------------

    def _attached(self) -> "DetailEnhanceDecoder":
        if self.backbone is None:
            raise RuntimeError("DetailEnhanceDecoder used before attach(backbone)")
        return self

    def reference_features(self, reference: torch.Tensor) -> dict[int, torch.Tensor]:
        """(B, 3, H, W) in [-1, 1] -> {encoder feature index: (B, c_i, h_i, w_i)}, only those used."""
        vae = self._attached().backbone.vae
        used = set(self.sources.values())
        with torch.no_grad():  # the encoder runs only as deep as the deepest feature used
            feats = self.injector.encoder_features(reference.to(vae.device, vae.dtype), depth=max(used) + 1)
        return {i: f for i, f in enumerate(feats) if i in used}

    def decode_with(self, latents: torch.Tensor, features: dict[int, torch.Tensor], warm: int = 0) -> torch.Tensor:
        """(B, F, c, h, w) latents + :meth:`reference_features` -> (B, F_video, 3, H, W), unclamped, with grad
        (but for the first ``warm`` latent frames)."""
        vae = self._attached().backbone.vae
        prepared: dict[tuple[str, bool], torch.Tensor] = {}  # the layers' reference halves, once per decode

        def inject(block: int, x: torch.Tensor, rows: slice) -> torch.Tensor:
            if str(block) not in self.injections:
                return x
            layer = self.injections[str(block)]
            key = (str(block), torch.is_grad_enabled())  # warm frames decode without grad: not the same tensor
            if key not in prepared:  # every frame, slice and window of this decode shares it
                ref = resized(features[self.sources[str(block)]], x.shape[-2:])  # (B, c_ref, h_i, w_i)
                prepared[key] = layer.reference(ref)  # (B, ...)
            return layer(x, prepared[key][rows])  # (b*T, c_i, h_i, w_i)

        return self.injector.decode(latents.to(vae.device, vae.dtype), inject, warm)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """(B, F, c, h, w) latents, (B, 3, H, W) reference in [-1, 1] -> (B, F_video, 3, H, W) in [-1, 1].

        Honours the VAE's slicing (``runtime.vae_slicing``) as its injector does.
        """
        down = self._attached().injector.spatial_factor
        expected = (latents.shape[0], 3, latents.shape[-2] * down, latents.shape[-1] * down)
        if tuple(reference.shape) != expected:
            raise ValueError(f"reference of shape {tuple(reference.shape)} does not fit latents of shape "
                             f"{tuple(latents.shape)}: expected {expected}")
        return self.decode_with(latents, self.reference_features(reference)).clamp(-1, 1)

    def fit(self, clips: torch.Tensor, *, seed: int = 0, reporter: Reporter = NullReporter()) -> list[float]:
        """Fit the injections on ``clips`` with the options' settings; see :func:`fit_detail_decoder`."""
        return fit_detail_decoder(self, clips, seed=seed, reporter=reporter)


@torch.no_grad()
def _probe(backbone: Backbone, injector: VaeInjector) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(channels, size / image size) of every encoder feature and every decoder up-block output."""
    vae = backbone.vae
    side = 2 * injector.spatial_factor
    image = torch.zeros(1, 3, side, side, device=vae.device, dtype=vae.dtype)  # (1, 3, S, S)
    enc = [(f.shape[1], f.shape[-1] / side) for f in injector.encoder_features(image)]
    up: dict[int, tuple[int, float]] = {}

    def record(block: int, x: torch.Tensor, rows: slice) -> torch.Tensor:
        up[block] = (x.shape[1], x.shape[-1] / side)
        return x

    injector.decode(backbone.encode_video(image[:, None]).to(vae.dtype), record)  # latents (1, 1, c, h, w)
    return enc, [up[i] for i in range(injector.up_blocks)]


def fit_detail_decoder(decoder: DetailEnhanceDecoder, clips: torch.Tensor, *, steps: int | None = None,
                       lr: float | None = None, noise_std: float | None = None, batch_frames: int | None = None,
                       seed: int = 0, reporter: Reporter = NullReporter()) -> list[float]:
    """Fit the DED's injections on ``clips`` (N, F, 3, H, W) in [-1, 1]; returns the L1 loss per step.

    Reference = each clip's first frame; targets = its other frames, decoded from their clean latents
    plus ``noise_std`` Gaussian noise. Each step draws about ``batch_frames`` target frames, as the VAE's
    injector decodes them (:meth:`VaeInjector.fit_batch`: single frames of a 2-D VAE, a window of a clip for
    a causal 3-D one, its cache filled by the frames before it without gradient). The VAE stays frozen. Unset arguments come from the decoder's options. On a NaN/inf
    loss the injections are restored to what they were before fitting and :class:`TrainingDivergedError`
    is raised.
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
    latents = torch.cat([backbone.encode_video(clip[None]) for clip in clips])  # (N, F_z, c, h, w)
    features = decoder.reference_features(clips[:, 0])  # {i: (N, c_i, h_i, w_i)}
    params = list(decoder.parameters())
    before = {k: v.clone() for k, v in decoder.state_dict().items()}
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    history: list[float] = []
    reporter.start("detail decoder", total=steps)
    for step in range(steps):
        batch = decoder.injector.fit_batch(latents, clips, batch_frames, generator)
        noise = torch.randn(batch.latents.shape, generator=generator).to(latents)  # (K, F_z, c, h, w)
        pred = decoder.decode_with(batch.latents + noise_std * noise, {i: f[batch.clips] for i, f in features.items()},
                                   batch.warm)
        loss = (pred[:, batch.frames].float() - batch.target[:, batch.frames].float()).abs().mean()
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
