"""``animate``: load a trained motion once and turn still images into videos of that action."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..context import context_for
from ..errors import MotionNotTrainedError
from ..library import read_json
from ..progress import NullReporter, Reporter
from .motion_weights import CONFIG_FILE, LORA_FILE, Model, build_model, check_compatible, load_decoder_weights, load_lora


@dataclass
class AnimateResult:
    image: Path
    outputs: list[Path]
    frames: int
    seconds: float


class Animator:
    """A loaded motion: backbone + LoRA + decoder + prompt embeddings, ready to render many images."""

    def __init__(self, model: Model, action: str, weights: dict[str, Any], animate: Any, prompt_emb: Any,
                 negative_emb: Any) -> None:
        self.model, self.action, self.weights, self.settings = model, action, weights, animate
        self.frames, self.size, self.fps = int(weights["frames"]), int(weights["size"]), float(weights["fps"])
        self.prompt_emb, self.negative_emb = prompt_emb, negative_emb

    def render(self, image: np.ndarray, seed: int) -> np.ndarray:
        """``(H, W, 3)`` uint8 -> ``(F, S, S, 3)`` uint8 video of the motion starting at the image."""
        import torch

        from ..model.diffusion import make_scheduler
        from ..model.flash import sample
        from ..video import fit_square, frames_to_tensor, tensor_to_frames

        backbone, s = self.model.backbone, self.settings
        reference = frames_to_tensor(fit_square(image, self.size)[None])  # (1, 3, S, S)
        scheduler = make_scheduler(s.scheduler, backbone.scheduler_config)
        video = sample(backbone, self.model.decoder, reference, self.prompt_emb, self.frames, s.steps, scheduler,
                       s.guidance_scale, self.negative_emb, torch.Generator().manual_seed(seed),
                       anchor=s.anchor, start=s.start)  # (1, F, 3, S, S)
        return tensor_to_frames(video[0].float().cpu())


def load_animator(config: Any, library: Any, action: str, host: Any, reporter: Reporter = NullReporter()) -> Animator:
    """Build the configured backbone (``[runtime]`` applied), check the motion fits it, load its LoRA and decoder."""
    from ..model.lora import load_motion_lora, set_motion_strength

    library.require(action)
    version = library.version_dir(action)  # resolved once: every file below comes from the same save
    weights_dir = version / "weights"
    if not (weights_dir / CONFIG_FILE).is_file():
        raise MotionNotTrainedError(f"motion '{action}' has no weights yet (no {weights_dir / CONFIG_FILE})",
                                    hint=f"train it first: flashctl train {action}")
    library.check_version(action, version)
    weights = read_json(weights_dir / CONFIG_FILE)
    model = build_model(config, host, context_for(config, host, reporter))
    check_compatible(action, weights, model.backbone.geometry())
    lora_path = weights_dir / weights["lora"].get("file", LORA_FILE)
    load_motion_lora(model.backbone, load_lora(lora_path), weights["lora"]["rank"], weights["lora"]["alpha"],
                     source=str(lora_path), targets=weights["lora"].get("targets"))
    set_motion_strength(model.backbone, config.animate.strength)
    load_decoder_weights(model, weights, weights_dir, reporter)
    settings = config.animate
    prompt_emb = model.backbone.encode_prompt([weights["prompt"]])  # (1, seq, dim)
    negative_emb = model.backbone.encode_prompt([settings.negative_prompt]) if settings.guidance_scale > 1 else None
    return Animator(model, action, weights, settings, prompt_emb, negative_emb)


def animate(config: Any, library: Any, action: str, images: list[Path], out_dir: Path, host: Any, *,
            reporter: Reporter = NullReporter(), formats: list[str] | None = None,
            seed: int | None = None) -> list[AnimateResult]:
    """Render every image with one model load; write ``<out_dir>/<stem>.<ext>`` per format (+ contact sheet)."""
    from ..library import atomic_write
    from ..video import contact_sheet, read_image

    formats = list(formats or config.animate.formats)
    writers = [_writer(host, config, name) for name in formats]  # unknown formats fail before any work
    sources = [(Path(p), read_image(Path(p))) for p in images]  # unreadable images fail before the model loads
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)  # so does an output folder that is a file or read-only
    animator = load_animator(config, library, action, host, reporter)
    seed = config.animate.seed if seed is None else seed
    results = []
    reporter.start("animate", total=len(sources))
    for path, image in sources:
        t0 = time.perf_counter()
        frames = animator.render(image, seed)  # (F, S, S, 3) uint8
        outputs = [write(out_dir / f"{path.stem}{ext}", frames, animator.fps) for write, ext in writers]
        if config.animate.contact_sheet:
            sheet = out_dir / f"{path.stem}_sheet.png"
            atomic_write(sheet, _png_bytes(contact_sheet(frames)))
            outputs.append(sheet)
        results.append(AnimateResult(path, [Path(o) for o in outputs], len(frames), time.perf_counter() - t0))
        reporter.advance(1)
    reporter.finish()
    return results


def _writer(host: Any, config: Any, name: str) -> tuple[Any, str]:
    spec = host.registry.get("video_format", name, where="animate.formats")
    write = host.registry.create("video_format", name, config.component_options("video_format", name),
                                 where=f"options.video_format.{name}")
    return write, spec.attrs.get("extensions", (f".{name}",))[0]


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
