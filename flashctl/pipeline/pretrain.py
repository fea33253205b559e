"""``pretrain``: train a small video base from scratch on a clip source, resumably (scripts/pretrain_base.py).

Stage ``vae``: the backbone's AutoencoderKL learns to reconstruct single frames (L1 + a small KL),
then its latent scale is set to 1/std and a base folder ``OUT/vae-base/`` is written. Stage
``decoder`` (optional, ``decoder_steps`` > 0): the encoder stays frozen, so the latent space the
U-Net learns in does not move, while the decoder alone goes on learning (L1 plus L1 on image
gradients, which keeps thin limbs sharp); its latest checkpoint replaces vae-base's decoder when
``final/`` is written, so it can run beside the U-Net stage. Stage ``unet``: that base is rebuilt
through ``build`` (the backbone plugin's ``base=`` option), the VAE and text encoder stay frozen,
and the whole video U-Net learns the LAMP-style loss of :func:`flashctl.model.flash.training_loss`
on latent clips of every action, each conditioned on its action's prompt (dropped to "" for ``uncond_prob`` of the clips, for classifier-free guidance).
The result is ``OUT/final/`` in the layout ``backbone.save_pretrained`` writes, plus provenance.

Each stage checkpoints to ``OUT/checkpoints/<stage>/`` (model and AdamW tensors as safetensors,
the rest as JSON) every ``checkpoint_every`` steps and on KeyboardInterrupt; ``resume`` continues
from there. Batches and noise are pure functions of ``(seed, step)``, so a resumed run draws what
an uninterrupted one would. Clips come from the caller's :class:`ClipSource`, so the core never
imports a plugin.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import (
    ConfigError,
    FlashctlError,
    TrainingDivergedError,
    WeightsNotFoundError,
)
from ..library import atomic_path
from ..progress import NullReporter, Reporter

STAGES = ("vae", "decoder", "unet", "all")
VAE_BASE, FINAL, CHECKPOINTS, SAMPLES, LOG = "vae-base", "final", "checkpoints", "samples", "train.log"
MAX_BYTES = 40 * 2**20
RESUME_KEYS = ("frames", "size", "actions", "seed", "target", "prediction_type", "vae_channels", "channels")


@dataclass(frozen=True)
class ClipSource:
    """Training data: a prompt per action and ``render(action, seed, split) -> (F, H, W, 3) uint8``."""

    prompts: dict[str, str]
    render: Callable[[str, int, str], np.ndarray]


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
    warmup: int = 50
    kl_weight: float = 1e-4  # times the KL per latent element
    uncond_prob: float = 0.1
    target: str = "residual"  # the backbone's "latent" | "residual" parameterisation
    prediction_type: str = "v_prediction"  # v: the residual itself is the target at high noise, so motion is learned
    channels: tuple[int, ...] = (32, 64)
    vae_channels: tuple[int, ...] = (16, 32, 32)
    device: str = "cpu"
    resume: bool = False

    def record(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items()}


@dataclass
class _Run:
    """One stage's training state: what a checkpoint holds besides the tensors."""

    step: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)


class _Pool:
    """Clips drawn by ``(seed, step)``: ``clips_per_action`` train seeds per action, kept after the first render."""

    def __init__(self, source: ClipSource, actions: tuple[str, ...], count: int,
                 keep: Callable[[np.ndarray], Any]) -> None:
        self.source, self.actions, self.count, self.keep = source, actions, count, keep
        self._cache: dict[tuple[str, int], Any] = {}

    def draw(self, seed: int, step: int, n: int) -> list[tuple[str, Any]]:
        rng = np.random.default_rng([seed, step])
        picks = [(self.actions[int(rng.integers(len(self.actions)))], int(rng.integers(self.count))) for _ in range(n)]
        for key in picks:
            if key not in self._cache:
                self._cache[key] = self.keep(self.source.render(key[0], key[1], "train"))
        return [(action, self._cache[(action, s)]) for action, s in picks]


def pretrain(settings: PretrainSettings, source: ClipSource, build: Callable[[dict[str, Any]], Any],
             reporter: Reporter | None = None, command: str = "") -> Path:
    """Run the chosen stage(s) into ``settings.out``; returns ``OUT/final`` (``OUT/vae-base`` for vae, decoder).

    ``build(options)`` makes the backbone from backbone options (the tiny AnimateDiff preset's).
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
    if settings.stage in ("vae", "decoder"):
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

    from ..video import frames_to_tensor

    out = Path(s.out)
    if s.stage == "all" and s.resume and (out / VAE_BASE).is_dir():
        reporter.note(f"{out / VAE_BASE} exists; the VAE stage is done")
        return
    backbone = build(_backbone_options(s, None))
    vae = backbone.vae.requires_grad_(True).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=s.vae_lr, weight_decay=0.0)
    draw = _frame_drawer(s, source)

    def loss_at(step: int) -> Any:
        x = frames_to_tensor(draw(step)).to(backbone.device)  # (N, 3, H, W) in [-1, 1]
        posterior = vae.encode(x).latent_dist
        z = posterior.sample(generator=torch.Generator().manual_seed(s.seed * 1_000_003 + step))  # (N, c, h, w)
        rec = vae.decode(z).sample  # (N, 3, H, W)
        kl = posterior.kl().mean() / z[0].numel()
        return (rec - x).abs().mean() + s.kl_weight * kl

    _loop("vae", s, vae, optimizer, s.vae_lr, s.vae_steps, loss_at,
          _reconstructions(s, source, backbone, "vae", reporter), reporter)
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        latents = backbone.encode_video(_heldout(s, source, count=8, split="train").to(backbone.device))
    scale = float(backbone.vae.config.scaling_factor / latents.std())  # unit-variance latents for diffusion
    vae.register_to_config(scaling_factor=scale)
    with atomic_path(out / VAE_BASE) as tmp:
        backbone.save_pretrained(tmp)
    reporter.note(f"VAE stage done: latent scaling_factor {scale:.4f}; base written to {out / VAE_BASE}")


def _frame_drawer(s: PretrainSettings, source: ClipSource) -> Callable[[int], np.ndarray]:
    """``step -> (4 * batch, H, W, 3)`` uint8: one random frame from each of the ``4 * batch`` clips drawn then."""
    pool = _Pool(source, s.actions, s.clips_per_action, keep=lambda frames: frames)
    per_clip = 4

    def draw(step: int) -> np.ndarray:
        rng = np.random.default_rng([s.seed, step, 1])
        return np.stack([clip[rng.integers(len(clip))] for _, clip in pool.draw(s.seed, step, per_clip * s.batch)])

    return draw


def _reconstructions(s: PretrainSettings, source: ClipSource, backbone: Any, name: str,
                     reporter: Reporter) -> Callable[[int], None]:
    """A ``show(step)``: held-out clips and their VAE round trips to ``samples/<name>-step-N.png``, L1 to the log."""
    def show(step: int) -> None:
        import torch

        clips = _heldout(s, source, count=s.samples)  # (n, F, 3, H, W)
        with torch.no_grad():
            rec = backbone.decode_latents(backbone.encode_video(clips.to(backbone.device))).cpu()  # (n, F, 3, H, W)
        _sheet(Path(s.out) / SAMPLES / f"{name}-step-{step}.png", clips, rec)
        l1 = float((rec - clips).abs().mean())
        _log(s, f"{name} step {step} held-out L1 {l1:.4f}")
        reporter.note(f"{name} step {step}: held-out reconstruction L1 {l1:.4f} (pixels in [-1, 1])")

    return show


def _decoder_stage(s: PretrainSettings, source: ClipSource, build: Callable, reporter: Reporter) -> None:
    import torch

    from ..video import frames_to_tensor

    backbone = _built_from_vae_base(s, build, "decoder")
    vae = backbone.vae.requires_grad_(False)
    trained = [vae.decoder, vae.post_quant_conv]  # the encoder (and so the latent space) stays as it is
    for part in trained:
        part.requires_grad_(True).train()
    optimizer = torch.optim.AdamW([p for part in trained for p in part.parameters()], lr=s.decoder_lr,
                                  weight_decay=0.0)
    draw = _frame_drawer(s, source)

    def loss_at(step: int) -> Any:
        x = frames_to_tensor(draw(step)).to(backbone.device)  # (N, 3, H, W) in [-1, 1]
        with torch.no_grad():
            z = vae.encode(x).latent_dist.mode()  # (N, c, h, w): what encode_video hands the U-Net, unscaled
        rec = vae.decode(z).sample  # (N, 3, H, W)
        edges = sum((d(rec) - d(x)).abs().mean() for d in _GRADIENTS)
        return (rec - x).abs().mean() + s.edge_weight * edges

    _loop("decoder", s, vae, optimizer, s.decoder_lr, s.decoder_steps, loss_at,
          _reconstructions(s, source, backbone, "decoder", reporter), reporter)
    reporter.note(f"decoder stage done at step {s.decoder_steps}; final/ takes its decoder from "
                  f"{Path(s.out) / CHECKPOINTS / 'decoder'}")


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

    from ..model.diffusion import make_scheduler
    from ..model.flash import sample_latents, training_loss
    from ..video import frames_to_tensor

    out = Path(s.out)
    backbone = _built_from_vae_base(s, build, "U-Net")
    actions = s.actions
    prompts = list(actions) + [""]
    emb = backbone.encode_prompt([source.prompts[a] for a in actions] + [""])  # (A+1, seq, dim), text encoder frozen
    unet = backbone.unet.requires_grad_(True).train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=s.lr, weight_decay=0.0)

    def keep(frames: np.ndarray) -> Any:
        return backbone.encode_video(frames_to_tensor(frames)[None].to(backbone.device))[0]  # (F, c, h, w)

    pool = _Pool(source, actions, s.clips_per_action, keep)

    def loss_at(step: int) -> Any:
        drawn = pool.draw(s.seed, step, s.batch)
        rng = np.random.default_rng([s.seed, step, 2])
        which = [prompts.index(a) if rng.random() >= s.uncond_prob else len(actions) for a, _ in drawn]
        latents = torch.stack([z for _, z in drawn])  # (B, F, c, h, w)
        generator = torch.Generator().manual_seed(s.seed * 1_000_003 + step)
        return training_loss(backbone, latents, emb[which], generator)

    def show(step: int) -> None:
        clips = _heldout(s, source, count=s.samples)  # (n, F, 3, H, W)
        picked = [actions[i % len(actions)] for i in range(len(clips))]
        unet.eval()
        reference = backbone.encode_video(clips[:, :1].to(backbone.device))[:, 0]  # (n, c, h, w)
        latents = sample_latents(backbone, reference, emb[[prompts.index(a) for a in picked]], s.frames,
                                 s.sample_steps, make_scheduler("ddim", backbone.scheduler_config),
                                 generator=torch.Generator().manual_seed(s.seed))
        _sheet(out / SAMPLES / f"step-{step}.png", clips, backbone.decode_latents(latents).cpu())
        unet.train()

    run = _loop("unet", s, unet, optimizer, s.lr, s.steps, loss_at, show, reporter)
    unet.eval().requires_grad_(False)
    return _write_final(s, backbone, run, command, reporter)


def _write_final(s: PretrainSettings, backbone: Any, run: _Run, command: str, reporter: Reporter) -> Path:
    from safetensors.torch import load_file

    out = Path(s.out)
    vae_state, decoder_state = _read_state(out / CHECKPOINTS / "vae"), _read_state(out / CHECKPOINTS / "decoder")
    if decoder_state.step:  # the decoder stage's latest weights; its encoder half equals vae-base's
        backbone.vae.load_state_dict(load_file(str(out / CHECKPOINTS / "decoder" / "model.safetensors")))
    with atomic_path(out / FINAL) as tmp:
        backbone.save_pretrained(tmp)
        size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
        provenance = {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": command,
            "settings": s.record(),
            "vae": {"steps": vae_state.step, "seconds": round(vae_state.seconds, 1),
                    "final_loss": _tail_mean(vae_state.losses)},
            "decoder": {"steps": decoder_state.step, "seconds": round(decoder_state.seconds, 1),
                        "final_loss": _tail_mean(decoder_state.losses)},
            "unet": {"steps": run.step, "seconds": round(run.seconds, 1), "final_loss": _tail_mean(run.losses)},
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


# ---------------------------------------------------------------- the shared loop and its checkpoints

def _loop(name: str, s: PretrainSettings, module: Any, optimizer: Any, lr: float, total: int,
          loss_at: Callable[[int], Any], show: Callable[[int], None], reporter: Reporter) -> _Run:
    """Steps ``run.step .. total - 1``: warm-up then constant ``lr``, grad-norm clip 1, checkpoints, samples."""
    import torch

    folder = Path(s.out) / CHECKPOINTS / name
    run = _start(folder, name, s, module, optimizer, reporter)
    reporter.start(f"pretrain {name}", total)
    reporter.advance(run.step)
    saved = run.step
    try:
        while run.step < total:
            began = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = lr * min(1.0, (run.step + 1) / s.warmup)
            loss = loss_at(run.step)
            if not math.isfinite(loss.item()):
                raise TrainingDivergedError(
                    f"pretrain {name} diverged at step {run.step + 1}: loss is {loss.item()}",
                    hint=f"lower the learning rate; --resume restarts from the checkpoint at step {saved}")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            elapsed = time.perf_counter() - began
            run.step, run.seconds = run.step + 1, run.seconds + elapsed
            run.losses.append(round(loss.item(), 6))
            reporter.advance(1, loss=loss.item(), s_per_step=elapsed)
            _log(s, f"{name} step {run.step} loss {loss.item():.5f} s/step {elapsed:.2f}")
            if run.step % s.checkpoint_every == 0 or run.step == total:
                _save(folder, s, module, optimizer, run)
                saved = run.step
            if run.step % s.sample_every == 0 or run.step == total:
                show(run.step)
    except KeyboardInterrupt:
        if run.step > saved:
            _save(folder, s, module, optimizer, run)
        reporter.note(f"interrupted: checkpoint at step {run.step} in {folder}; continue with --resume",
                      level="warning")
        raise
    finally:
        reporter.finish()
    return run


def _start(folder: Path, name: str, s: PretrainSettings, module: Any, optimizer: Any, reporter: Reporter) -> _Run:
    from safetensors.torch import load_file

    if not (folder / "state.json").exists():
        return _Run()
    run = _read_state(folder)
    if not s.resume:
        raise FlashctlError(f"pretrain: {folder} already holds a '{name}' checkpoint at step {run.step}",
                            hint="pass --resume to continue it, or choose another --out")
    saved = json.loads((folder / "state.json").read_text())["settings"]
    changed = [k for k in RESUME_KEYS if saved.get(k) != s.record()[k]]
    if changed:
        now = s.record()
        raise ConfigError(f"pretrain --resume: {folder} was trained with "
                          f"{', '.join(f'{k}={saved.get(k)}' for k in changed)}, not "
                          f"{', '.join(f'{k}={now[k]}' for k in changed)}",
                          hint=f"resume with the same {', '.join(changed)}, or start another --out")
    module.load_state_dict(load_file(str(folder / "model.safetensors")))
    optimizer.load_state_dict(_optimizer_state(folder, optimizer))
    reporter.note(f"resuming '{name}' from step {run.step}")
    return run


def _save(folder: Path, s: PretrainSettings, module: Any, optimizer: Any, run: _Run) -> None:
    """Write model + optimizer tensors and state.json as one unit (a staged folder renamed over the old one)."""
    from safetensors.torch import save_file

    state = optimizer.state_dict()
    tensors = {f"{i}.{k}": v.contiguous() for i, slots in state["state"].items() for k, v in slots.items()}
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state["param_groups"]]
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp / "model.safetensors"))
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(json.dumps({**asdict(run), "param_groups": groups,
                                                    "settings": s.record()}))


def _optimizer_state(folder: Path, optimizer: Any) -> dict[str, Any]:
    from safetensors.torch import load_file

    groups = json.loads((folder / "state.json").read_text())["param_groups"]
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in load_file(str(folder / "optimizer.safetensors")).items():
        index, slot = key.split(".", 1)
        state.setdefault(int(index), {})[slot] = tensor
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in groups]
    return {"state": state, "param_groups": groups}


def _read_state(folder: Path) -> _Run:
    if not (folder / "state.json").exists():
        return _Run()
    raw = json.loads((folder / "state.json").read_text())
    return _Run(step=int(raw["step"]), seconds=float(raw["seconds"]), losses=list(raw["losses"]))


# ---------------------------------------------------------------- samples, logs, provenance

def _heldout(s: PretrainSettings, source: ClipSource, count: int, split: str = "heldout") -> Any:
    """``count`` clips of the actions in turn, seeds 0.. of ``split``: ``(count, F, 3, H, W)`` in [-1, 1]."""
    import torch

    from ..video import frames_to_tensor

    actions = s.actions
    return torch.stack([frames_to_tensor(source.render(actions[i % len(actions)], i, split)) for i in range(count)])


def _sheet(path: Path, real: Any, made: Any) -> None:
    """Rows alternate real clip / model output, one frame per column, as a PNG."""
    import torch
    from PIL import Image

    from ..video import contact_sheet, tensor_to_frames

    rows = torch.stack([real, made], dim=1).flatten(0, 2)  # (2*n*F, 3, H, W): clip 0 real, clip 0 made, ...
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(contact_sheet(tensor_to_frames(rows), columns=real.shape[1])).save(path)


def _log(s: PretrainSettings, line: str) -> None:
    with open(Path(s.out) / LOG, "a") as fh:
        fh.write(f"{datetime.now().isoformat(timespec='seconds')} {line}\n")


def _tail_mean(losses: list[float], n: int = 50) -> float | None:
    return round(float(np.mean(losses[-n:])), 6) if losses else None


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
            f"`target = \"{s['target']}\"`.\n\nCommand: `{p['command']}`\n")
