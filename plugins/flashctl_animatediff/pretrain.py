"""The tiny AnimateDiff base's pretraining recipe: a small video base from scratch on a clip source, resumably.

The base shipped in ``weights/tiny-base/`` was made by this recipe, run by ``scripts/pretrain_base.py``;
its ``provenance.json`` records that command and its settings.

Stage ``vae``: the backbone's AutoencoderKL learns to reconstruct single frames (L1 + a small KL),
then its latent scale is set to 1/std and a base folder ``OUT/vae-base/`` is written. Stage
``decoder`` (optional, ``decoder_steps`` > 0): the encoder stays frozen (unless ``encoder_anchor`` > 0, for a
finished base only), so the latent space the U-Net learns in does not move, while the decoder alone goes on learning (L1 plus L1 on image
gradients, which keeps thin limbs sharp); its latest checkpoint replaces vae-base's decoder when
``final/`` is written, so it can run beside the U-Net stage. Stage ``unet``: that base is rebuilt
through ``build`` (this plugin's ``base=`` option), the VAE and text encoder stay frozen, and the
whole video U-Net learns the LAMP-style loss of :func:`flashctl.model.flash.training_loss` on latent
clips of every action, each conditioned on its action's prompt (dropped to "" for ``uncond_prob`` of
the clips, for classifier-free guidance). The result is ``OUT/final/`` in the layout
``backbone.save_pretrained`` writes, plus provenance.

Each stage checkpoints to ``OUT/checkpoints/<stage>/`` (:mod:`.pretrain_loop`) every
``checkpoint_every`` steps and on KeyboardInterrupt; ``resume`` continues from there. Batches and
noise are pure functions of ``(seed, step)``, so a resumed run draws what an uninterrupted one would.
Clips come from the caller's :class:`.pretrain_data.ClipSource`.
"""

from __future__ import annotations

import copy
import json
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from flashctl.errors import ConfigError, WeightsNotFoundError
from flashctl.files import atomic_path
from flashctl.pipeline.checkpoint import Checkpoint
from flashctl.progress import NullReporter, Reporter

from .pretrain_data import SAMPLES, ClipSource, Pool, frame_drawer, heldout, reconstructions, sheet
from .pretrain_loop import Run, checkpoint_dir, loop, saved_stage

STAGES = ("vae", "decoder", "unet", "all")
VAE_BASE, DECODER_BASE, FINAL = "vae-base", "decoder-base", "final"
MAX_BYTES = 40 * 2**20


@dataclass(frozen=True)
class PretrainSettings:
    out: Path
    stage: str = "all"  # "vae" | "decoder" | "unet" | "all"
    steps: int = 3000  # U-Net steps (total, also when resuming)
    vae_steps: int = 600
    decoder_steps: int = 0  # decoder-only fine-tune after the VAE stage; 0 = none
    batch: int = 4
    frames: int = 16
    size: int = 64
    actions: tuple[str, ...] = ()  # () = every action of the source
    clips_per_action: int = 200
    checkpoint_every: int = 100
    sample_every: int = 250
    sample_steps: int = 20
    samples: int = 4
    seed: int = 0
    lr: float = 1e-3
    vae_lr: float = 1e-3
    decoder_lr: float = 5e-4
    edge_weight: float = 1.0  # decoder stage: weight of the L1 on image gradients
    encoder_anchor: float = 0.0  # decoder stage alone: > 0 refits the encoder too, its latents pulled to the original's
    warmup: int = 50
    kl_weight: float = 1e-4  # times the KL per latent element
    uncond_prob: float = 0.1
    target: str = "residual"  # the backbone's "latent" | "residual" parameterisation
    prediction_type: str = "v_prediction"  # v: the residual itself is the target at high noise, so motion is learned
    channels: tuple[int, ...] = (32, 64)
    vae_channels: tuple[int, ...] = (16, 32, 32)
    device: str = "cpu"
    resume: bool = False
    vae_minutes: float | None = None  # wall-clock budget of each stage in this run (None: until its steps are done)
    decoder_minutes: float | None = None
    unet_minutes: float | None = None
    render_workers: int = 0  # > 1: render each stage's clips up front in that many processes

    def record(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items()}


def pretrain(settings: PretrainSettings, source: ClipSource, build: Callable[[dict[str, Any]], Any],
             reporter: Reporter | None = None, command: str = "") -> Path:
    """Run the chosen stage(s) into ``settings.out``; returns ``OUT/final`` (``OUT/vae-base`` for vae,
    ``OUT/decoder-base`` for decoder).

    ``build(options)`` makes the backbone from this plugin's options (the tiny preset's).
    """
    reporter = reporter or NullReporter()
    _check(settings, source)
    settings = replace(settings, actions=settings.actions or tuple(source.prompts))
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    if settings.stage in ("vae", "all"):
        _vae_stage(settings, source, build, reporter)
    if settings.stage == "decoder" or (settings.stage == "all" and settings.decoder_steps > 0):
        _decoder_stage(settings, source, build, reporter)
    if settings.stage == "decoder":
        return _write_decoder_base(settings, build, reporter, command)
    if settings.stage == "vae":
        return out / VAE_BASE
    return _unet_stage(settings, source, build, reporter, command)


def _check(s: PretrainSettings, source: ClipSource) -> None:
    problems = [
        (s.stage not in STAGES, "--stage", s.stage, f"one of {', '.join(STAGES)}"),
        (s.stage == "decoder" and s.decoder_steps < 1, "--decoder-steps", s.decoder_steps,
         "at least 1 for --stage decoder"),
        (s.frames < 2, "--frames", s.frames, "at least 2: frame 0 is the reference, the loss is on the rest"),
        (s.size % 2 ** (len(s.vae_channels) - 1) != 0, "--size", s.size,
         f"a multiple of the VAE downsample {2 ** (len(s.vae_channels) - 1)}"),
        (s.batch < 1 or s.steps < 1 or s.vae_steps < 1, "--batch/--steps", (s.batch, s.steps, s.vae_steps),
         "positive numbers"),
        (s.checkpoint_every < 1, "--checkpoint-every", s.checkpoint_every, "at least 1"),
        (s.encoder_anchor < 0 or (s.encoder_anchor > 0 and s.stage != "decoder"), "--encoder-anchor",
         s.encoder_anchor, "0, or a positive weight with --stage decoder alone (a U-Net trains on the encoder's latents)"),
    ]
    unknown = [a for a in s.actions if a not in source.prompts]
    if unknown:
        problems.append((True, "--actions", ",".join(unknown), f"choose from {', '.join(source.prompts)}"))
    for bad, key, value, hint in problems:
        if bad:
            raise ConfigError(f"pretrain: {key} {value!r} is not valid", hint=hint)


def _backbone_options(s: PretrainSettings, base: Path | None) -> dict[str, Any]:
    options = {"preset": "tiny", "target": s.target, "prediction_type": s.prediction_type, "init_seed": s.seed}
    if base is None:
        return {**options, "channels": s.channels, "vae_channels": s.vae_channels}
    return {**options, "base": str(base)}


# ---------------------------------------------------------------- stage 1: the VAE

def _vae_stage(s: PretrainSettings, source: ClipSource, build: Callable, reporter: Reporter) -> None:
    import torch

    from flashctl.video import frames_to_tensor

    out = Path(s.out)
    if s.stage == "all" and s.resume and (out / VAE_BASE).is_dir():
        reporter.note(f"{out / VAE_BASE} exists; the VAE stage is done")
        return
    backbone = build(_backbone_options(s, None))
    vae = backbone.vae.requires_grad_(True).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=s.vae_lr, weight_decay=0.0)
    draw = frame_drawer(s, source)

    def loss_at(step: int) -> Any:
        x = frames_to_tensor(draw(step)).to(backbone.device)  # (N, 3, H, W) in [-1, 1]
        posterior = vae.encode(x).latent_dist
        z = posterior.sample(generator=torch.Generator().manual_seed(s.seed * 1_000_003 + step))  # (N, c, h, w)
        rec = vae.decode(z).sample  # (N, 3, H, W)
        kl = posterior.kl().mean() / z[0].numel()
        return (rec - x).abs().mean() + s.kl_weight * kl

    loop("vae", s, vae, optimizer, s.vae_lr, s.vae_steps, loss_at,
         reconstructions(s, source, backbone, "vae", reporter), reporter)
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        latents = backbone.encode_video(heldout(s, source, count=8, split="train").to(backbone.device))
    scale = float(backbone.vae.config.scaling_factor / latents.std())  # unit-variance latents for diffusion
    vae.register_to_config(scaling_factor=scale)
    with atomic_path(out / VAE_BASE) as tmp:
        backbone.save_pretrained(tmp)
    reporter.note(f"VAE stage done: latent scaling_factor {scale:.4f}; base written to {out / VAE_BASE}")


def _decoder_stage(s: PretrainSettings, source: ClipSource, build: Callable, reporter: Reporter) -> None:
    import torch

    from flashctl.video import frames_to_tensor

    backbone = _built_from_vae_base(s, build, "decoder")
    vae = backbone.vae.requires_grad_(False)
    trained = [vae.decoder, vae.post_quant_conv]  # the encoder (and so the latent space) stays as it is ...
    original = copy.deepcopy(vae).eval() if s.encoder_anchor > 0 else None
    if original is not None:  # ... unless it is refitted, held near its own latents
        trained += [vae.encoder, vae.quant_conv]
    scale = vae.config.scaling_factor
    for part in trained:
        part.requires_grad_(True).train()
    optimizer = torch.optim.AdamW([p for part in trained for p in part.parameters()], lr=s.decoder_lr,
                                  weight_decay=0.0)
    draw = frame_drawer(s, source)

    def loss_at(step: int) -> Any:
        x = frames_to_tensor(draw(step)).to(backbone.device)  # (N, 3, H, W) in [-1, 1]
        with torch.set_grad_enabled(original is not None):
            z = vae.encode(x).latent_dist.mode()  # (N, c, h, w): what encode_video hands the U-Net, unscaled
        rec = vae.decode(z).sample  # (N, 3, H, W)
        edges = sum((d(rec) - d(x)).abs().mean() for d in _GRADIENTS)
        loss = (rec - x).abs().mean() + s.edge_weight * edges
        if original is None:
            return loss
        with torch.no_grad():
            z0 = original.encode(x).latent_dist.mode()  # (N, c, h, w)
        # frames the original encodes well gain nothing by moving, so the pull keeps them where the U-Net learned
        return loss + s.encoder_anchor * ((z - z0) * scale).pow(2).mean()  # in the U-Net's unit-variance units

    run = loop("decoder", s, vae, optimizer, s.decoder_lr, s.decoder_steps, loss_at,
               reconstructions(s, source, backbone, "decoder", reporter), reporter)
    reporter.note(f"decoder stage done at step {run.step}; final/ takes its decoder from "
                  f"{checkpoint_dir(s, 'decoder')}")


def _write_decoder_base(s: PretrainSettings, build: Callable, reporter: Reporter, command: str) -> Path:
    """``OUT/decoder-base/``: vae-base with the decoder stage's latest decoder, a base on its own.

    Its encoder, U-Net and latent space are vae-base's, so a finished base copied to ``OUT/vae-base`` gets a
    new decoder without retraining its U-Net (motions record the whole base's content id: they are refused on
    the result until retrained). vae-base's provenance is kept and the refit is recorded under ``decoder_refit``.
    """
    out = Path(s.out)
    backbone = _built_from_vae_base(s, build, "decoder")
    decoder = saved_stage(s, "decoder")
    backbone.vae.load_state_dict(decoder.lora)
    earlier = out / VAE_BASE / "provenance.json"
    provenance = json.loads(earlier.read_text()) if earlier.is_file() else {}
    provenance["decoder_refit"] = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                   "command": command, "settings": s.record(), **_stage_record(decoder)}
    with atomic_path(out / DECODER_BASE) as tmp:
        backbone.save_pretrained(tmp)
        (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2))
        if "unet" in provenance:  # a finished base's record: its README says what changed
            (tmp / "README.md").write_text(_readme(provenance))
    reporter.note(f"wrote {out / DECODER_BASE}: {out / VAE_BASE} with the decoder of step {decoder.step}")
    return out / DECODER_BASE


_GRADIENTS = (lambda im: im[..., 1:, :] - im[..., :-1, :], lambda im: im[..., :, 1:] - im[..., :, :-1])  # dy, dx


def _built_from_vae_base(s: PretrainSettings, build: Callable, stage: str) -> Any:
    out = Path(s.out)
    if not (out / VAE_BASE).is_dir():
        raise WeightsNotFoundError(f"pretrain: {out / VAE_BASE} is missing, the {stage} stage needs the trained VAE",
                                   hint=f"run the VAE stage first: --stage vae --out {out}")
    return build(_backbone_options(s, out / VAE_BASE))


# ---------------------------------------------------------------- stage 2: the video U-Net

def _unet_stage(s: PretrainSettings, source: ClipSource, build: Callable, reporter: Reporter, command: str) -> Path:
    import torch

    from flashctl.model.flash import sample_latents, training_loss
    from flashctl.video import frames_to_tensor

    out = Path(s.out)
    backbone = _built_from_vae_base(s, build, "U-Net")
    actions = s.actions
    prompts = list(actions) + [""]
    emb = backbone.encode_prompt([source.prompts[a] for a in actions] + [""])  # (A+1, seq, dim), text encoder frozen
    unet = backbone.unet.requires_grad_(True).train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=s.lr, weight_decay=0.0)

    def keep(frames: np.ndarray) -> Any:
        return backbone.encode_video(frames_to_tensor(frames)[None].to(backbone.device))[0]  # (F, c, h, w)

    pool = Pool(source, actions, s.clips_per_action, keep, workers=s.render_workers)

    def loss_at(step: int) -> Any:
        drawn = pool.draw(s.seed, step, s.batch)
        rng = np.random.default_rng([s.seed, step, 2])
        which = [prompts.index(a) if rng.random() >= s.uncond_prob else len(actions) for a, _ in drawn]
        latents = torch.stack([z for _, z in drawn])  # (B, F, c, h, w)
        generator = torch.Generator().manual_seed(s.seed * 1_000_003 + step)
        return training_loss(backbone, latents, emb[which], generator)

    def show(step: int) -> None:
        clips = heldout(s, source, count=s.samples)  # (n, F, 3, H, W)
        picked = [actions[i % len(actions)] for i in range(len(clips))]
        unet.eval()
        reference = backbone.encode_video(clips[:, :1].to(backbone.device))[:, 0]  # (n, c, h, w)
        latents = sample_latents(backbone, reference, emb[[prompts.index(a) for a in picked]], s.frames,
                                 s.sample_steps, backbone.objective.sampler("ddim"),
                                 generator=torch.Generator().manual_seed(s.seed))
        sheet(out / SAMPLES / f"step-{step}.png", clips, backbone.decode_latents(latents).cpu())
        unet.train()

    run = loop("unet", s, unet, optimizer, s.lr, s.steps, loss_at, show, reporter)
    unet.eval().requires_grad_(False)
    return _write_final(s, backbone, run, command, reporter)


def _write_final(s: PretrainSettings, backbone: Any, run: Run, command: str, reporter: Reporter) -> Path:
    out = Path(s.out)
    vae, decoder = saved_stage(s, "vae"), saved_stage(s, "decoder")
    if decoder is not None:  # the decoder stage's latest weights; its encoder half equals vae-base's
        backbone.vae.load_state_dict(decoder.lora)
    with atomic_path(out / FINAL) as tmp:
        backbone.save_pretrained(tmp)
        size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
        provenance = {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command,
            "settings": s.record(),
            "vae": _stage_record(vae),
            "decoder": _stage_record(decoder),
            "unet": _stage_record(run),
            "bytes": size,
            "machine": _machine(s.device),
        }
        (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2))
        (tmp / "README.md").write_text(_readme(provenance))
    if size > MAX_BYTES:
        reporter.note(f"{out / FINAL} is {size / 2**20:.1f} MB, over the {MAX_BYTES // 2**20} MB package budget; "
                      f"shrink --channels / --vae-channels", level="warning")
    reporter.note(f"wrote {out / FINAL} ({size / 2**20:.1f} MB)")
    return out / FINAL


# ---------------------------------------------------------------- provenance

def _stage_record(run: Run | Checkpoint | None) -> dict[str, Any]:
    """Steps, seconds and the mean of the last 50 losses of a :class:`Run` or a stage's checkpoint (None: never ran)."""
    run = run or Run()
    final = round(float(np.mean(run.losses[-50:])), 6) if run.losses else None
    return {"steps": run.step, "seconds": round(run.seconds, 1), "final_loss": final}


def _machine(device: str) -> dict[str, Any]:
    import os

    import torch

    gpu = torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else None
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": device, "gpu": gpu, "torch": torch.__version__}


def _readme(p: dict[str, Any]) -> str:
    s = p["settings"]
    return (f"# Tiny pretrained AnimateDiff base\n\n"
            f"Trained from scratch by `scripts/pretrain_base.py` on synthetic clips of {len(s['actions'])} actions "
            f"({', '.join(s['actions'])}), {s['frames']} frames at {s['size']} px, target `{s['target']}`.\n"
            f"VAE: {p['vae']['steps']} steps ({p['vae']['seconds']:.0f} s), then the decoder alone "
            f"{p['decoder']['steps']} steps ({p['decoder']['seconds']:.0f} s); U-Net: {p['unet']['steps']} steps "
            f"({p['unet']['seconds']:.0f} s), final loss {p['unet']['final_loss']}. "
            f"Size {p['bytes'] / 2**20:.1f} MB.\n\n"
            f"Load it with `[options.backbone.animatediff] preset = \"tiny\"`, `base = \"<this folder>\"`, "
            f"`target = \"{s['target']}\"`.\n\nCommand: `{p['command']}`\n" + _refit_line(p))


def _refit_line(p: dict[str, Any]) -> str:
    refit = p.get("decoder_refit")
    if refit is None:
        return ""
    anchor = refit["settings"].get("encoder_anchor", 0)
    what = (f"the VAE was refitted (encoder held near its latents, weight {anchor})" if anchor
            else "the decoder alone was refitted (encoder unchanged)")
    return f"\nThen {what} {refit['steps']} steps ({refit['seconds']:.0f} s, U-Net unchanged): `{refit['command']}`\n"
