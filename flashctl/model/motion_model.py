"""``MotionModel``: one learned motion as one object (backbone + motion LoRA + MAM + decoder).

Built from a config (:meth:`MotionModel.build`), it takes a fresh motion LoRA (:meth:`add_motion`),
the Motion Alignment Module for training (:meth:`align` / :meth:`unalign`), computes the training loss
with its backbone's own objective (:meth:`training_loss`), fits its decoder (:meth:`fit_decoder`),
samples (:meth:`sample`), and saves and loads itself symmetrically (:meth:`save_motion` /
:meth:`from_motion`, the files in :mod:`.motion_files`). The pipelines (train, animate, eval) only
orchestrate: clips, progress, the library's atomic swap.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from .. import __version__
from ..files import read_json
from ..progress import NullReporter, Reporter
from . import flash
from .interfaces import Backbone, Decoder
from .lora import (add_motion_lora, check_extra_targets, load_motion_lora, lora_state_dict, lora_targets,
                   set_motion_strength)
from .motion_alignment import install_mam, uninstall_mam
from .motion_files import (CONFIG_FILE, DECODER_FILE, FORMAT, LORA_FILE, check_compatible, check_format,
                           diffusers_component, load_lora, save_lora, write_json)

if TYPE_CHECKING:
    from ..config import AnimateSection, FlashConfig, MamSection
    from ..context import BuildContext
    from ..plugins import PluginHost


class MotionModel:
    """A backbone with ``[runtime]`` applied, its attached decoder, and (after :meth:`add_motion`) a motion LoRA."""

    def __init__(self, backbone: Backbone, decoder: Decoder, components: dict[str, dict[str, Any]]) -> None:
        self.backbone, self.decoder = backbone, decoder
        self.components = components  # {"backbone"|"decoder": {"name", "options" (resolved)}}
        self.lora: dict[str, Any] | None = None  # rank, alpha, targets once a motion LoRA is in
        self.decoder_fitted = False

    @classmethod
    def build(cls, config: FlashConfig, host: PluginHost, ctx: BuildContext, *, training: bool = False) -> MotionModel:
        """The configured backbone with ``[runtime]`` applied, and the decoder, attached; no motion yet.

        ``training``: build for ``train`` (inference-only switches such as ``runtime.cpu_offload`` stay off).
        """
        from .runtime import apply_runtime

        registry, m = host.registry, config.model
        raw_b, raw_d = config.component_options("backbone", m.backbone), config.component_options("decoder", m.decoder)
        backbone = registry.create("backbone", m.backbone, raw_b, ctx, where="model.backbone")
        apply_runtime(backbone, config.runtime, training=training, reporter=ctx.reporter)
        decoder = registry.create("decoder", m.decoder, raw_d, ctx, where="model.decoder")
        decoder.attach(backbone)
        components = {kind: {"name": name, "options": registry.get(kind, name).validate_options(
                                 raw, f"options.{kind}.{name}").model_dump(mode="json")}
                      for kind, name, raw in (("backbone", m.backbone, raw_b), ("decoder", m.decoder, raw_d))}
        return cls(backbone, decoder, components)

    # -- the motion ----------------------------------------------------------------------------

    def add_motion(self, rank: int, alpha: float, extra_targets: list[str] | tuple[str, ...] = ()) -> list[Any]:
        """A fresh motion LoRA (output unchanged until trained) on the backbone's targets + ``extra_targets``;
        returns its parameters, the only trainable ones."""
        check_extra_targets(self.backbone, extra_targets)
        targets = lora_targets(self.backbone, extra_targets)
        params = add_motion_lora(self.backbone, rank, alpha, targets)
        self.lora = {"file": LORA_FILE, "rank": rank, "alpha": alpha, "targets": targets,
                     "component": diffusers_component(self.backbone.unet)}  # the key prefix `export` writes
        return params

    def set_strength(self, strength: float) -> None:
        """Scale the motion LoRA (1 = as trained, 0 = the base alone)."""
        set_motion_strength(self.backbone, strength)

    def align(self, options: MamSection) -> dict[str, str]:
        """Install MAM's processors for training (layer name -> kind); nothing when no alignment is on."""
        return install_mam(self.backbone, options) if options.aligns else {}

    def unalign(self) -> None:
        """Restore the stock processors (MAM is training-only)."""
        uninstall_mam(self.backbone.unet)

    def training_loss(self, latents: torch.Tensor, prompt_emb: torch.Tensor, generator: torch.Generator,
                      augmented: torch.Tensor | None = None, augmented_weight: float = 1.0) -> torch.Tensor:
        """Mean denoising loss of ``(B, F, c, h, w)`` clip latents (+ their augmented copies, paired) under
        the backbone's objective; see :func:`flash.training_loss`."""
        return flash.training_loss(self.backbone, latents, prompt_emb, generator, augmented, augmented_weight)

    def fit_decoder(self, clips: torch.Tensor, *, seed: int, reporter: Reporter = NullReporter(),
                    autocast: bool = False, checkpointing: bool = False) -> list[float]:
        """Fit the decoder's per-motion layers on ``(N, F, 3, H, W)`` clips in [-1, 1]; returns the loss history.

        ``autocast``: under bfloat16 autocast (the trained layers and their AdamW state stay in the VAE's
        dtype). ``checkpointing``: the VAE decoder's up blocks keep only their inputs and recompute in backward
        (where the decoder's injector says they are ``recomputable``; Wan's causal blocks are not).
        """
        from .checkpointing import checkpoint_modules, uncheckpoint_modules

        vae_decoder = getattr(self.backbone.vae, "decoder", None)
        injector = getattr(self.decoder, "injector", None)  # a VAE whose blocks keep state is not recomputed
        checkpointing = checkpointing and vae_decoder is not None and getattr(injector, "recomputable", False)
        wrapped = checkpoint_modules(vae_decoder, r"up_blocks\.\d+") if checkpointing else []
        try:
            with torch.autocast(self.backbone.device.type, dtype=torch.bfloat16, enabled=autocast):
                losses = self.decoder.fit(clips, seed=seed, reporter=reporter)
        finally:
            if wrapped:
                uncheckpoint_modules(vae_decoder)
        self.decoder_fitted = True
        return losses

    @torch.no_grad()
    def sample(self, reference: torch.Tensor, prompt_emb: torch.Tensor, frames: int, settings: AnimateSection,
               negative_emb: torch.Tensor | None, generator: torch.Generator,
               on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Animate ``reference`` ``(B, 3, H, W)`` in [-1, 1] -> ``(B, F, 3, H, W)`` with ``[animate]``'s sampler
        settings (steps, scheduler, guidance, anchoring, start); ``on_step(i, total)`` after each denoising step."""
        scheduler = self.backbone.objective.sampler(settings.scheduler)
        return flash.sample(self.backbone, self.decoder, reference, prompt_emb, frames, settings.steps, scheduler,
                            settings.guidance_scale, negative_emb, generator, anchor=settings.anchor,
                            start=settings.start, on_step=on_step, anchor_tolerance=settings.anchor_tolerance)

    # -- saving and loading --------------------------------------------------------------------

    def motion_record(self, *, action: str, prompt: str, frames: int, size: int, fps: float) -> dict[str, Any]:
        """The content of ``weights/config.json``: everything :meth:`from_motion` needs to rebuild and check."""
        if self.lora is None:
            raise RuntimeError("MotionModel.motion_record before add_motion")
        return {
            "format": FORMAT,
            "flashctl_version": __version__,
            "action": action,
            "prompt": prompt,
            "backbone": {**self.components["backbone"], "geometry": self.backbone.geometry()},
            "decoder": {**self.components["decoder"], "file": DECODER_FILE if self.decoder_fitted else None},
            "frames": frames,
            "size": size,
            "fps": fps,
            "lora": self.lora,
            "scheduler": self.backbone.objective.scheduler_config,
        }

    def save_motion(self, folder: Path, record: dict[str, Any], metadata: dict[str, str]) -> None:
        """Write ``config.json`` (``record``, from :meth:`motion_record`), the LoRA (with string ``metadata``) and
        the fitted decoder layers into ``folder``."""
        folder = Path(folder)
        write_json(folder / CONFIG_FILE, record)
        save_lora(folder / LORA_FILE, lora_state_dict(self.backbone), {"format": "flashctl-motion-lora", **metadata})
        if self.decoder_fitted:
            self.decoder.save(folder / DECODER_FILE)

    @classmethod
    def from_motion(cls, folder: Path, config: FlashConfig, host: PluginHost, ctx: BuildContext,
                    action: str) -> tuple[MotionModel, dict[str, Any]]:
        """Rebuild the configured model and load a saved motion into it -> ``(model, weights/config.json)``.

        The format version is checked before anything is built, the geometry twice: from the folders'
        metadata before any weights load (:func:`precheck_motion`), then in full after the backbone is built
        (a mismatch names both sides); then the LoRA (at ``animate.strength``) and the decoder's layers.
        """
        folder = Path(folder)
        record = read_json(folder / CONFIG_FILE) or {}
        check_format(action, record, folder / CONFIG_FILE)
        precheck_motion(action, record, config, host, ctx)
        model = cls.build(config, host, ctx)
        check_compatible(action, record, model.backbone.geometry())
        lora = record["lora"]
        lora_path = folder / lora.get("file", LORA_FILE)
        load_motion_lora(model.backbone, load_lora(lora_path), lora["rank"], lora["alpha"], source=str(lora_path),
                         targets=lora.get("targets"))
        model.lora = lora
        model.set_strength(config.animate.strength)
        model._load_decoder(record, folder, ctx.reporter)
        return model, record

    def _load_decoder(self, record: dict[str, Any], folder: Path, reporter: Reporter) -> None:
        """The motion's fitted decoder layers, when the active decoder has per-motion weights and the motion has them."""
        saved = record.get("decoder") or {}
        if not self.decoder.has_weights:
            return
        if saved.get("name") != self.decoder.name or not saved.get("file"):
            reporter.note(f"motion has no fitted '{self.decoder.name}' weights (trained with decoder "
                          f"'{saved.get('name')}'); its untrained layers decode exactly like the stock VAE", level="info")
            return
        self.decoder.load(folder / saved["file"])
        self.decoder_fitted = True


def precheck_motion(action: str, record: dict[str, Any], config: FlashConfig, host: PluginHost,
                    ctx: BuildContext) -> None:
    """Refuse a motion whose geometry the configured backbone cannot match, from metadata only (no weights load).

    A backbone plugin offers this with a ``metadata_geometry(options, ctx)`` function in its package's
    ``backbone`` module (next to the factory's module), returning the geometry keys it can know from the
    folders' config files and content ids; without one only the backbone's name is compared.
    """
    import importlib

    name = config.model.backbone
    spec = host.registry.get("backbone", name, where="model.backbone")
    package, module = getattr(spec.factory, "__module__", None), None
    try:
        module = importlib.import_module(f"{package}.backbone") if package else None
    except ModuleNotFoundError as exc:  # no such module: no pre-check; a plugin's own broken import still raises
        if exc.name != f"{package}.backbone":
            raise
    metadata_geometry = getattr(module, "metadata_geometry", None)
    if metadata_geometry is None:
        active: dict[str, Any] = {"backbone": name}
    else:
        options = spec.validate_options(config.component_options("backbone", name), "model.backbone")
        active = metadata_geometry(options, ctx)
    check_compatible(action, record, active, partial=True)
