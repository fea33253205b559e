"""``train``: learn one action's motion LoRA from its prepared clips and save it atomically.

LAMP-style few-shot fine-tuning of the backbone's motion LoRA under ``accelerate`` (mixed
precision, gradient accumulation, warm-up). With ``train.strong_augment`` each step pairs the
batch x with x~, one motion-preserving augmentation per clip, noised alike and denoised in one
call; ``train.motion_align`` / ``train.correspondence_align`` install the Motion Alignment
Module's processors for training only (uninstalled before the preview is sampled). Every
ablation row of METHOD.md (#1..#6) is a choice of ``[train]`` switches; provenance records it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from .. import __version__
from ..config import TrainSection, render_validation_error
from ..context import context_for
from ..errors import ConfigError, TrainingDivergedError
from ..library import atomic_path, atomic_write, new_run_id
from ..progress import NullReporter, Reporter
from .motion_weights import (CONFIG_FILE, DECODER_FILE, LORA_FILE, Model, build_model, file_hashes, load_lora,
                             motion_config, save_lora, write_json)

PREVIEW_STEPS = 4
CHECKPOINT = "checkpoint"


@dataclass
class TrainResult:
    action: str
    steps: int
    final_loss: float
    seconds: float
    weights_dir: Path


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def train_settings(config: Any, manifest: Any, source: Path) -> TrainSection:
    """``[train]`` from the config with the action's own ``[train]`` overrides from motion.toml."""
    overrides = getattr(manifest, "train", None) or {}
    try:
        return TrainSection.model_validate({**config.train.model_dump(), **overrides})
    except ValidationError as exc:
        raise ConfigError(*render_validation_error(exc, f"{source}: train", TrainSection)) from None


def _wants_decoder_fit(settings: TrainSection, model: Any, config: Any) -> bool:
    """``train.detail_decoder`` fits the decoder's per-motion layers; a decoder without any is a config error."""
    if not settings.detail_decoder:
        return False
    if not model.decoder.has_weights:
        raise ConfigError(f"train.detail_decoder = true, but model.decoder = '{config.model.decoder}' has no "
                          "per-motion layers to fit",
                          hint='set model.decoder = "detail-enhance", or train.detail_decoder = false')
    return True


def motion_augmentations(config: Any, settings: TrainSection, host: Any, ctx: Any) -> list[tuple[str, Callable]]:
    """The strong augmentations for the augmented branch; only motion-preserving ones are allowed."""
    if not settings.strong_augment:
        return []
    if not settings.augmentations:
        raise ConfigError("train.augmentations: empty while train.strong_augment = true",
                          hint="list augmentations (see `flashctl plugins`) or set train.strong_augment = false")
    chosen = []
    for i, name in enumerate(settings.augmentations):
        where = f"train.augmentations[{i}]"
        spec = host.registry.get("augmentation", name, where=where)
        if not spec.attrs.get("preserves_motion", False):
            raise ConfigError(f"{where}: augmentation '{name}' (plugin {spec.plugin}) does not preserve motion",
                              hint="only augmentations registered with preserves_motion=True may feed the augmented "
                                   "branch; remove it from train.augmentations")
        chosen.append((name, host.registry.create("augmentation", name, config.component_options("augmentation", name),
                                                  ctx, where=where)))
    return chosen


def _preview(model: Model, clip: Any, prompt_emb: Any, config: Any, generator: Any) -> Any:
    """One short animation of the first clip's first frame -> (F, H, W, 3) uint8."""
    from ..model.diffusion import make_scheduler
    from ..model.flash import sample
    from ..video import tensor_to_frames

    scheduler = make_scheduler(config.animate.scheduler, model.backbone.scheduler_config)
    video = sample(model.backbone, model.decoder, clip[None, 0], prompt_emb, clip.shape[0],
                   min(PREVIEW_STEPS, config.animate.steps), scheduler, generator=generator)  # (1, F, 3, H, W)
    return tensor_to_frames(video[0].float().cpu())


def train(config: Any, library: Any, action: str, host: Any, *, reporter: Reporter = NullReporter(),
          steps: int | None = None, resume: bool = False) -> TrainResult:
    """Train ``action``'s motion and save weights/, provenance.json and preview.gif in one atomic swap."""
    library.require(action)
    with library.lock(action):
        return _train_locked(config, library, action, host, reporter, steps, resume)


def _train_locked(config, library, action, host, reporter, steps, resume) -> TrainResult:
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from diffusers.optimization import get_constant_schedule_with_warmup

    from ..model import flash
    from ..model.lora import add_motion_lora, lora_state_dict
    from ..model.motion_alignment import ablation_row, aligned, install_mam, mam_options, uninstall_mam
    from ..video import frames_to_tensor, write_gif

    started, t0 = _now(), time.perf_counter()
    manifest = library.manifest(action)
    settings = train_settings(config, manifest, library.path(action) / "motion.toml")
    mam = mam_options(settings)  # None: plain fine-tuning (#1); refuses impossible switch combinations
    total = steps or settings.steps
    prep = config.prepare
    frames, meta = library.load_frames(action, expect={"frames": prep.frames, "size": prep.size, "fps": prep.fps,
                                                       "start": prep.start})
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    ctx = context_for(config, host, reporter)
    model = build_model(config, host, ctx, training=True)
    backbone = model.backbone
    fit_decoder = _wants_decoder_fit(settings, model, config)
    augmentations = motion_augmentations(config, settings, host, ctx)

    clips = torch.stack([frames_to_tensor(clip) for clip in frames])  # (N, F, 3, S, S)
    latents = torch.cat([backbone.encode_video(clip[None]) for clip in clips])  # (N, F, c, h, w)
    prompt_emb = backbone.encode_prompt([manifest.prompt])  # (1, seq, dim)

    params = add_motion_lora(backbone, settings.lora_rank, settings.lora_alpha)
    mam_installed = install_mam(backbone, mam) if mam is not None and mam.aligns else {}
    augmented_weight = mam.augmented_weight if mam is not None else 0.0
    start, losses = _resume(library, action, backbone, reporter) if resume else (0, [])
    AcceleratorState._reset_state()  # a process may train several times with different precisions
    accelerator = Accelerator(mixed_precision=settings.mixed_precision, gradient_accumulation_steps=settings.grad_accum,
                              cpu=config.runtime.device == "cpu")
    optimizer = torch.optim.AdamW(params, lr=settings.lr)
    schedule = get_constant_schedule_with_warmup(optimizer, settings.warmup_steps)
    backbone.unet, optimizer, schedule = accelerator.prepare(backbone.unet, optimizer, schedule)
    if settings.gradient_checkpointing:
        backbone.unet.enable_gradient_checkpointing()
    backbone.unet.train()
    latents, prompt_emb = latents.to(accelerator.device), prompt_emb.to(accelerator.device)

    def batch() -> tuple[Any, Any]:
        """Latents x ``(B, F, c, h, w)`` and, with strong augmentation, x~ = A(x) of the same shape (else None)."""
        idx = torch.randint(len(latents), (settings.batch_size,), generator=generator)
        if not augmentations:
            return latents[idx], None
        picks = torch.randint(len(augmentations), (len(idx),), generator=generator).tolist()
        augmented = torch.stack([augmentations[k][1](clips[i], generator) for k, i in zip(picks, idx.tolist())])
        return latents[idx], backbone.encode_video(augmented)  # one draw per clip, identical on all frames

    reporter.start("train", total=total)
    if start:
        reporter.advance(start)
    for step in range(start, total):
        step_loss = 0.0
        for _ in range(settings.grad_accum):
            # backward inside aligned() too: gradient checkpointing re-runs the MAM forwards there
            with accelerator.accumulate(backbone.unet), aligned(backbone.unet):
                x, x_aug = batch()
                loss = flash.training_loss(backbone, x, prompt_emb, generator, augmented=x_aug,
                                           augmented_weight=augmented_weight)
                if not math.isfinite(loss.item()):
                    reporter.finish()
                    raise TrainingDivergedError(
                        f"training '{action}' diverged at step {step + 1}: loss is {loss.item()}",
                        hint=f"lower train.lr (now {settings.lr}) or set train.mixed_precision = \"no\"; "
                             f"the saved motion was not touched")
                accelerator.backward(loss)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
            step_loss += loss.item() / settings.grad_accum
        losses.append(step_loss)
        reporter.advance(1, loss=step_loss)
        if settings.checkpoint_every and (step + 1) % settings.checkpoint_every == 0 and step + 1 < total:
            _checkpoint(library, action, backbone, step + 1, losses)
    reporter.finish()

    backbone.unet = accelerator.unwrap_model(backbone.unet).eval()
    uninstall_mam(backbone.unet)  # MAM is training-only
    decoder_losses = model.decoder.fit(clips, seed=settings.seed, reporter=reporter) if fit_decoder else []
    preview = _preview(model, clips[0], prompt_emb, config, torch.Generator().manual_seed(settings.seed))
    run_id = new_run_id()
    weights = motion_config(model, config, action=action, prompt=manifest.prompt, frames=clips.shape[1],
                            size=clips.shape[-1], fps=float(meta.get("fps", prep.fps)),
                            lora_rank=settings.lora_rank, lora_alpha=settings.lora_alpha, decoder_fitted=fit_decoder)
    saved = host.pm.hook.on_motion_saved
    with library.stage(action, on_saved=lambda a, p: saved(action=a, path=p)) as stage:
        stage = Path(stage)
        write_json(stage / "weights" / CONFIG_FILE, weights)
        save_lora(stage / "weights" / LORA_FILE, lora_state_dict(backbone),
                  {"format": "flashctl-motion-lora", "action": action, "run_id": run_id,
                   "backbone": config.model.backbone, "rank": str(settings.lora_rank),
                   "alpha": str(settings.lora_alpha), "flashctl_version": __version__})
        if fit_decoder:
            model.decoder.save(stage / "weights" / DECODER_FILE)
        write_gif(stage / "preview.gif", preview, weights["fps"])
        write_json(stage / "provenance.json", _provenance(
            run_id, action, started, t0, host, config, settings, manifest, model, augmentations, losses, start,
            mam={"ablation": ablation_row(settings), "augmented_weight": augmented_weight, "layers": mam_installed},
            decoder_losses=decoder_losses,
            files=file_hashes(stage)))
    _clear_checkpoint(library, action)
    seconds = time.perf_counter() - t0
    reporter.note(f"saved motion '{action}' to {library.weights_dir(action)} ({total} steps, {seconds:.1f}s)")
    return TrainResult(action, total, losses[-1] if losses else float("nan"), seconds, library.weights_dir(action))


def _provenance(run_id, action, started, t0, host, config, settings, manifest, model, augmentations, losses, start,
                mam, decoder_losses, files) -> dict[str, Any]:
    import accelerate
    import diffusers
    import peft
    import torch
    import transformers

    spec = host.registry.get
    b, d = spec("backbone", config.model.backbone), spec("decoder", config.model.decoder)
    return {
        "run_id": run_id,
        "action": action,
        "started_at": started,
        "finished_at": _now(),
        "seconds": round(time.perf_counter() - t0, 3),
        "versions": {"flashctl": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__, "peft": peft.__version__,
                     "accelerate": accelerate.__version__},
        "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version} for p in host.plugins],
        "components": {
            "backbone": {"name": b.name, "plugin": b.plugin, "plugin_version": b.plugin_version},
            "decoder": {"name": d.name, "plugin": d.plugin, "plugin_version": d.plugin_version},
            "augmentations": [{"name": n, "plugin": spec("augmentation", n).plugin} for n, _ in augmentations],
        },
        "geometry": model.backbone.geometry(),
        "config": config.model_dump(mode="json"),
        "train": settings.model_dump(mode="json"),
        "seed": settings.seed,
        "mam": mam,
        "clips": [{"file": c.file, "sha256": c.sha256} for c in manifest.clips],
        "resumed_from_step": start or None,
        "losses": losses,
        "final_loss": losses[-1] if losses else None,
        "decoder_losses": decoder_losses,
        "files": files,
    }


def _checkpoint_dir(library: Any, action: str) -> Path:
    return Path(library.cache_dir(action)) / CHECKPOINT


def _checkpoint(library: Any, action: str, backbone: Any, step: int, losses: list[float]) -> None:
    """LoRA + step + losses into the action's cache (optimizer state restarts on resume)."""
    import json

    from ..model.lora import lora_state_dict

    folder = _checkpoint_dir(library, action)
    with atomic_path(folder / LORA_FILE) as tmp:
        save_lora(tmp, lora_state_dict(backbone), {"step": str(step)})
    atomic_write(folder / "state.json", json.dumps({"step": step, "losses": losses,
                                                    "geometry": backbone.geometry()}))


def _resume(library: Any, action: str, backbone: Any, reporter: Reporter) -> tuple[int, list[float]]:
    import json

    from peft import set_peft_model_state_dict

    from ..model.lora import ADAPTER

    folder = _checkpoint_dir(library, action)
    if not (folder / "state.json").exists():
        reporter.note(f"no checkpoint for '{action}' in {folder}; starting from step 0", level="warning")
        return 0, []
    state = json.loads((folder / "state.json").read_text())
    if state.get("geometry") != backbone.geometry():
        reporter.note(f"checkpoint in {folder} is for another backbone; starting from step 0", level="warning")
        return 0, []
    set_peft_model_state_dict(backbone.unet, load_lora(folder / LORA_FILE), adapter_name=ADAPTER)
    reporter.note(f"resuming '{action}' from step {state['step']}")
    return int(state["step"]), list(state["losses"])


def _clear_checkpoint(library: Any, action: str) -> None:
    folder = _checkpoint_dir(library, action)
    for name in (LORA_FILE, "state.json"):
        (folder / name).unlink(missing_ok=True)
