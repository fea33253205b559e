"""``train``: learn one action's motion LoRA from its prepared clips and save it atomically.

LAMP-style few-shot fine-tuning of the backbone's motion LoRA under ``accelerate`` (mixed
precision, gradient accumulation, warm-up). With ``train.strong_augment`` each step pairs the
batch x with x~, one motion-preserving augmentation per clip, noised alike and denoised in one
call; ``train.mam.motion_align`` / ``train.mam.correspondence_align`` install the Motion Alignment
Module's processors for training only (uninstalled before the preview is sampled). Every
ablation row of METHOD.md (#1..#6) is a choice of ``[train]`` switches; provenance records it.

``train.checkpoint_every`` saves everything that decides the next steps (:mod:`.checkpoint`);
``resume=True`` (``--resume``) continues from it bit-exactly: N steps straight and k steps, a crash,
then a resume give the same LoRA and losses. The step count may grow on resume; every other
setting, the clips and the process count must match (else :class:`CheckpointError` names what
changed). ``--resume`` without a checkpoint notes it and starts from step 0, so a job that always
passes it can simply be rerun.

Several processes (``accelerate launch --multi_gpu --num_processes P -m flashctl train ACTION``;
on CPU with ``runtime.device = "cpu"`` they use gloo): every process trains a replica on its own
draws (the training generator is seeded ``train.seed + process index``, so the global batch is
``batch_size * grad_accum * P`` clips), the LoRA gradients are averaged over processes before each
optimizer step (by hand rather than through DDP: backbones keep their bare U-Net, which MAM and
the backbone's own helpers address), and the reported losses are the mean over processes. Only
the main process takes the lock, reports progress and writes checkpoints and the motion;
provenance records the process count and each replica's LoRA hash.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pydantic import ValidationError

from .. import __version__
from ..config import TrainSection
from ..context import context_for
from ..errors import ConfigError, TrainingDivergedError
from ..library import new_run_id
from ..model import fsdp
from ..model.motion_files import file_hashes, write_json
from ..model_card import write_card
from ..progress import NullReporter, Reporter
from ..trackers import TrackerRun, Trackers, check_trackers, fixed_clip_loss
from ..validation import render_validation_error
from .checkpoint import STATE, clear_checkpoint
from .train_memory import apply_memory, augmented_bank, encode_clip, encode_frames, resolve_memory
from .train_records import fingerprint, lora_sha256, now, provenance, replica_hashes
from .train_resume import checkpoint_dir, resume_state, save_state

if TYPE_CHECKING:
    from ..config import FlashConfig
    from ..library import MotionLibrary
    from ..model.motion_model import MotionModel
    from ..plugins import PluginHost


@dataclass
class TrainResult:
    action: str
    steps: int
    final_loss: float
    seconds: float
    weights_dir: Path
    main_process: bool = True  # False in the other processes of a multi-process launch (they save nothing)


def train_settings(config: FlashConfig, manifest: Any, source: Path) -> TrainSection:
    """``[train]`` from the config with the action's own ``[train]`` overrides from motion.toml, its ``"auto"``
    low-memory settings resolved for the configured backbone (:func:`.train_memory.resolve_memory`)."""
    overrides = getattr(manifest, "train", None) or {}
    try:
        base = config.train.model_dump()
        mam = overrides.get("mam", {})  # a motion.toml [train.mam] changes only the keys it writes
        merged = {**base, **overrides, "mam": {**base["mam"], **mam} if isinstance(mam, dict) else mam}
        return resolve_memory(TrainSection.model_validate(merged), config)
    except ValidationError as exc:
        raise ConfigError(*render_validation_error(exc, f"{source}: train", TrainSection)) from None


def _wants_decoder_fit(settings: TrainSection, model: MotionModel, config: FlashConfig) -> bool:
    """``train.detail_decoder`` fits the decoder's per-motion layers; a decoder without any is a config error."""
    if not settings.detail_decoder:
        return False
    if not model.decoder.has_weights:
        raise ConfigError(f"train.detail_decoder = true, but model.decoder = '{config.model.decoder}' has no "
                          "per-motion layers to fit",
                          hint='set model.decoder = "detail-enhance", or train.detail_decoder = false')
    return True


def motion_augmentations(config: FlashConfig, settings: TrainSection, host: PluginHost, ctx: Any) -> list[tuple[str, Callable]]:
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
        if not spec.traits.preserves_motion:
            raise ConfigError(f"{where}: augmentation '{name}' (plugin {spec.plugin}) does not preserve motion",
                              hint="only augmentations registered with preserves_motion=True may feed the augmented "
                                   "branch; remove it from train.augmentations")
        chosen.append((name, host.registry.create("augmentation", name, config.component_options("augmentation", name),
                                                  ctx, where=where)))
    return chosen


def _preview(model: MotionModel, clip: Any, prompt_emb: Any, config: FlashConfig, generator: Any) -> Any:
    """The first clip's first frame animated with animate's sampler settings -> (F, H, W, 3) uint8.

    Same steps, scheduler, guidance and anchoring as ``flashctl animate``, so the preview looks like what
    the motion will produce.
    """
    from ..video import tensor_to_frames

    settings = config.animate
    guided = settings.guidance_scale > 1
    negative_emb = model.backbone.encode_prompt([settings.negative_prompt]).to(prompt_emb) if guided else None
    video = model.sample(clip[None, 0], prompt_emb, clip.shape[0], settings, negative_emb, generator)  # (1, F, 3, H, W)
    return tensor_to_frames(video[0].float().cpu())


def train(config: FlashConfig, library: MotionLibrary, action: str, host: PluginHost, *, reporter: Reporter = NullReporter(),
          steps: int | None = None, resume: bool = False, tracker_dir: Path | None = None) -> TrainResult:
    """Train ``action``'s motion and save weights/, provenance.json and preview.gif in one atomic swap.

    Under a multi-process launch every process calls this; only the main one locks, reports and saves.
    ``train.trackers`` log into ``tracker_dir/RUN_ID/`` (default: the action's ``.cache/runs/``; see
    :mod:`flashctl.trackers`).
    """
    library.require(action)
    manifest = library.manifest(action)
    settings = train_settings(config, manifest, library.path(action) / "motion.toml")
    check_trackers(settings.trackers, host)  # a wrong name or a missing package fails before anything is built
    accelerator = _accelerator(config, settings)
    main = accelerator.is_main_process
    with library.lock(action) if main else nullcontext(), Trackers() as trackers:  # finished on error too
        return _train_locked(config, library, action, host, reporter if main else NullReporter(), steps, resume,
                             manifest, settings, accelerator, trackers, tracker_dir)


def _accelerator(config: FlashConfig, settings: TrainSection) -> Any:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()  # a process may train several times with different precisions
    return Accelerator(mixed_precision=settings.mixed_precision, gradient_accumulation_steps=settings.grad_accum,
                       cpu=config.runtime.device == "cpu")


def _train_locked(config, library, action, host, reporter, steps, resume, manifest, settings,
                  accelerator, trackers, tracker_dir) -> TrainResult:
    import torch
    from diffusers.optimization import get_constant_schedule_with_warmup

    from ..model.motion_alignment import aligned
    from ..model.motion_model import MotionModel
    from ..video import frames_to_tensor, write_gif

    started, t0 = now(), time.perf_counter()
    main, rank, processes = accelerator.is_main_process, accelerator.process_index, accelerator.num_processes
    sharded = processes > 1 and fsdp.fsdp_requested()  # an FSDP config: the denoiser is sharded over processes
    if sharded:
        fsdp.check_fsdp(settings.checkpoint_every, resume)
    if processes > 1:  # each process builds on its own device (cuda:RANK; cpu stays cpu); sharded: on the CPU,
        runtime = config.runtime.model_copy(update={"device": str(accelerator.device)})  # shards move to the device
        config = config.model_copy(update={"runtime": runtime})
    build_config = config.model_copy(update={"runtime": config.runtime.model_copy(update={"device": "cpu"})}) \
        if sharded else config
    total = steps or settings.steps
    prep = config.prepare
    library.require_clips_unchanged(action, manifest)
    frames, meta = library.load_frames(action, expect={"frames": prep.frames, "size": prep.size, "fps": prep.fps,
                                                       "start": prep.start}, clips=manifest.clips)
    torch.manual_seed(settings.seed)  # the same model and LoRA init in every process
    generator = torch.Generator().manual_seed(settings.seed + rank)  # each process draws its own clips and noise
    ctx = context_for(config, host, reporter)
    model = MotionModel.build(build_config, host, context_for(build_config, host, reporter) if sharded else ctx,
                              training=True)
    model.backbone.objective.sampler(config.animate.scheduler)  # a sampler the backbone lacks fails before step 1
    backbone = model.backbone
    fit_decoder = _wants_decoder_fit(settings, model, config)
    augmentations = motion_augmentations(config, settings, host, ctx)
    bank = settings.augment_bank if augmentations else 0
    # low memory and no VAE inside the steps: encode one frame at a time (the peak of one frame)
    encode = encode_frames if settings.gradient_checkpointing and (bank or not augmentations) else encode_clip

    clips = torch.stack([frames_to_tensor(clip) for clip in frames])  # (N, F, 3, S, S)
    latents = torch.cat([encode(backbone, clip[None]) for clip in clips])  # (N, F, c, h, w)
    prompt_emb = backbone.encode_prompt([manifest.prompt])  # (1, seq, dim)
    copies = augmented_bank(clips, augmentations, bank, generator, backbone) if bank else None

    params = model.add_motion(settings.lora_rank, settings.lora_alpha, settings.lora_extra_targets)
    mam_installed = model.align(settings.mam) if settings.strong_augment else {}  # no copies: plain (#1)
    augmented_weight = settings.mam.augmented_weight if settings.strong_augment else 0.0
    unet = backbone.unet  # stays bare (no DDP wrapper): gradients are averaged by _average_gradients
    memory = apply_memory(backbone, settings, params)
    if memory["checkpointed"] or memory["frozen_dtype"] != "float32":
        reporter.note(f"low memory: gradient checkpointing {'on' if settings.gradient_checkpointing else 'off'} "
                      f"({len(memory['checkpointed'])} extra modules), frozen weights {memory['frozen_dtype']}, "
                      f"mixed precision {settings.mixed_precision}, augment bank {bank}")
    if sharded:  # the optimizer takes the sharded LoRA parameters FSDP put in place of the whole ones
        params = fsdp.shard_backbone(backbone, accelerator.device, settings.mixed_precision)
    unet.train()
    optimizer = torch.optim.AdamW(params, lr=settings.lr)
    schedule = get_constant_schedule_with_warmup(optimizer, settings.warmup_steps)  # stepped per optimizer step
    optimizer = accelerator.prepare(optimizer)
    latents, prompt_emb = latents.to(backbone.device), prompt_emb.to(backbone.device)
    run_id = new_run_id()  # also the name of the trackers' run folder
    runs = Path(tracker_dir) if tracker_dir else library.cache_dir(action) / "runs"
    run_config = {**config.model_dump(mode="json"), "train": settings.model_dump(mode="json")}
    trackers.open(config, host, TrackerRun(action, run_id, runs / run_id, run_config, total), names=settings.trackers,
                  ctx=ctx, reporter=reporter, active=main)
    if not sharded:  # the probe runs on the main process alone; a sharded forward needs every process
        probe = fixed_clip_loss(model, latents, prompt_emb, settings.seed)
        trackers.probe("train/fixed_clip_loss", lambda: _autocast(accelerator, probe), total)

    untracked = settings.model_copy(update={"trackers": []})  # trackers do not change the trajectory: resume may add one
    state_id = fingerprint(config, untracked, model, manifest, frames, augmentations, processes)
    folder = checkpoint_dir(library, action)
    start, losses = 0, []
    if resume:
        start, losses = resume_state(folder, state_id, total, accelerator, backbone, optimizer, schedule, generator,
                                reporter, action)
    elif (folder / STATE).is_file():
        reporter.note(f"'{action}' has a checkpoint in {folder}; training from step 0 replaces it "
                      "(pass --resume to continue from it)", level="warning")

    def batch() -> tuple[Any, Any]:
        """Latents x ``(B, F, c, h, w)`` and, with strong augmentation, x~ = A(x) of the same shape (else None)."""
        idx = torch.randint(len(latents), (settings.batch_size,), generator=generator)
        if not augmentations:
            return latents[idx], None
        if copies is not None:  # the bank: one of each clip's pre-encoded copies
            slots = torch.randint(copies.shape[1], (len(idx),), generator=generator)
            return latents[idx], copies[idx, slots].to(latents)
        picks = torch.randint(len(augmentations), (len(idx),), generator=generator).tolist()
        augmented = torch.stack([augmentations[k][1](clips[i], generator) for k, i in zip(picks, idx.tolist())])
        return latents[idx], backbone.encode_video(augmented)  # one draw per clip, identical on all frames

    phases = 2 + bool(fit_decoder and main)  # LoRA steps, [decoder fit], preview
    reporter.note(f"phase 1/{phases}: {total - start} LoRA training steps"
                  + (f" (resuming at step {start} of {total})" if start else ""))
    reporter.start("train", total=total)
    if start:
        reporter.advance(start)
    for step in range(start, total):
        step_loss = 0.0
        for _ in range(settings.grad_accum):
            # backward inside aligned() too: gradient checkpointing re-runs the MAM forwards there
            with accelerator.accumulate(unet), aligned(unet):
                x, x_aug = batch()
                with accelerator.autocast():
                    loss = model.training_loss(x, prompt_emb, generator, augmented=x_aug,
                                               augmented_weight=augmented_weight)
                mean_loss = accelerator.reduce(loss.detach(), "mean").item()  # every process sees a divergence
                if not math.isfinite(mean_loss):
                    reporter.finish()
                    raise TrainingDivergedError(
                        f"training '{action}' diverged at step {step + 1}: loss is {mean_loss}",
                        hint=f"lower train.lr (now {settings.lr}) or set train.mixed_precision = \"no\"; "
                             f"the saved motion was not touched")
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    if not sharded:  # FSDP already averaged them (reduce-scatter)
                        _average_gradients(params, accelerator)
                    optimizer.step()
                    if not optimizer.step_was_skipped:  # a mixed-precision overflow skips the step
                        schedule.step()
                    optimizer.zero_grad()
            step_loss += mean_loss / settings.grad_accum
        losses.append(step_loss)
        reporter.advance(1, loss=step_loss)
        trackers.log(step + 1, {"train/loss": step_loss, "train/lr": schedule.get_last_lr()[0]})
        if settings.checkpoint_every and (step + 1) % settings.checkpoint_every == 0 and step + 1 < total:
            save_state(folder, accelerator, backbone, optimizer, schedule, generator, step + 1, losses, state_id)
    reporter.finish()

    unet.eval()
    model.unalign()  # MAM is training-only
    trained = fsdp.gather_trainable(unet) if sharded else None  # every process: the whole LoRA
    replicas = None if sharded else replica_hashes(accelerator, backbone)
    final_loss = losses[-1] if losses else float("nan")
    if not main:
        return TrainResult(action, total, final_loss, time.perf_counter() - t0, library.weights_dir(action),
                           main_process=False)
    if sharded:  # the preview and the save run on the main process alone, on an unsharded model
        del unet, backbone, optimizer, params
        model = fsdp.unsharded_model(config, host, ctx, model.lora, settings.lora_extra_targets, trained)
        prompt_emb = prompt_emb.to(model.backbone.device)
        replicas = [lora_sha256(model.backbone).hex()] * processes  # one model, whole in every process's view
    if fit_decoder:
        fit_steps = getattr(getattr(model.decoder, "options", None), "train_steps", None)
        reporter.note(f"phase 2/{phases}: fitting the detail decoder "
                      + (f"({fit_steps} steps, options.decoder.{config.model.decoder}.train_steps; "
                         "train.detail_decoder = false skips it)" if fit_steps else "(train.detail_decoder)"))
    decoder_losses = model.fit_decoder(clips, seed=settings.seed, reporter=reporter,
                                       autocast=settings.mixed_precision == "bf16",
                                       checkpointing=settings.gradient_checkpointing) if fit_decoder else []
    trackers.log_series("decoder/fit_loss", decoder_losses, first_step=total + 1)
    reporter.note(f"phase {phases}/{phases}: rendering preview.gif ({config.animate.steps} denoising steps, "
                  "as flashctl animate)")
    with accelerator.autocast():  # frozen weights may be in the mixed-precision dtype
        preview = _preview(model, clips[0], prompt_emb, config, torch.Generator().manual_seed(settings.seed))
    trackers.log_preview(preview, frames[0], float(meta.get("fps", prep.fps)), step=total + len(decoder_losses))
    weights = model.motion_record(action=action, prompt=manifest.prompt, frames=clips.shape[1],
                                  size=clips.shape[-1], fps=float(meta.get("fps", prep.fps)))
    saved = host.pm.hook.on_motion_saved
    with library.stage(action, on_saved=lambda a, p: saved(action=a, path=p)) as stage:
        stage = Path(stage)
        model.save_motion(stage / "weights", weights,
                          {"action": action, "run_id": run_id, "backbone": config.model.backbone,
                           "rank": str(settings.lora_rank), "alpha": str(settings.lora_alpha),
                           "flashctl_version": __version__})
        write_gif(stage / "preview.gif", preview, weights["fps"])
        write_card(stage, action, manifest, weights, settings, run_id=run_id, steps=total)  # hashed below
        write_json(stage / "provenance.json", provenance(
            run_id, action, started, t0, host, config, settings, manifest, model, augmentations, losses, start,
            mam={"ablation": settings.ablation_row, "augmented_weight": augmented_weight, "layers": mam_installed},
            decoder_losses=decoder_losses,
            replicas=replicas,
            files=file_hashes(stage)))
    clear_checkpoint(folder)
    seconds = time.perf_counter() - t0
    reporter.note(f"saved motion '{action}' to {library.weights_dir(action)} ({total} steps, {seconds:.1f}s)")
    return TrainResult(action, total, final_loss, seconds, library.weights_dir(action))


def _autocast(accelerator: Any, measure: Callable[[], float]) -> float:
    """``measure()`` under the run's mixed-precision autocast (frozen weights may be in its dtype)."""
    with accelerator.autocast():
        return measure()


def _average_gradients(params: list[Any], accelerator: Any) -> None:
    """Average the LoRA gradients over processes before the optimizer step (what DDP would all-reduce)."""
    import torch

    if accelerator.num_processes == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    mean = accelerator.reduce(torch.cat([g.flatten() for g in grads]), "mean")  # (P,) all LoRA entries
    for p, g in zip(params, mean.split([p.numel() for p in params])):
        p.grad = g.view_as(p)
