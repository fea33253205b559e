"""Training memory of FLASH at full model size, measured on the CPU (or a GPU), extrapolated to 512x512x16.

Builds the SD1.5-size AnimateDiff (U-Net from SD1.5's config, the v1-5-2 MotionAdapter's config, the SD VAE,
CLIP ViT-L/14's text model) or the SVD-size backbone (SVD img2vid's U-Net, temporal VAE and CLIP ViT-H/14
image encoder configs) with random weights, saves it in the hub layout in a temporary folder (deleted after;
no download, nothing committed), and runs ``flashctl.pipeline.train.train`` itself on it, as ``flashctl
train`` does: 2 clips of 16 frames, paired ``[x; x~]`` batch with both MAM alignments, 2 LoRA steps, then
(AnimateDiff) a 2-step detail-decoder fit and a 1-step preview. Each point runs in a fresh process.

Per phase it reports the peak of live tensor bytes above the phase's start (:mod:`memory_tracker`: every
operation's output storage until freed: activations, recomputation, gradients, optimizer state,
temporaries), the parameters and buffers by dtype, on CUDA ``torch.cuda.max_memory_allocated``, and the
process's peak RSS. It fits the LoRA step's bytes as ``a + b * tokens`` (latent tokens of one step: videos x
frames x h x w, the paired batch counting twice) and extrapolates to 256x256x16 and 512x512x16.

Variants (``--variants``) switch the low-memory settings one at a time, so each lever's saving is measured:
none, issue (bf16 autocast + diffusers' checkpointing, the starting point of issue 14), +ckpt (checkpointing
through motion modules and whole transformers), +frozen (frozen weights bf16), +bank (augmented copies encoded
once), defaults (the real-preset defaults: all of the above + the decoder fit under autocast, checkpointed).

  python bench/memory.py --backbone animatediff --sizes 32 64 96 --variants defaults
  python bench/memory.py --backbone svd --sizes 32 64 --variants issue defaults
  python bench/memory.py --device cuda --sizes 256 512     # on a GPU: the allocator's peak, measured
  python bench/memory.py --tiny                            # the same code on the tiny presets (seconds)

Writes bench/results/memory-BACKBONE.json (or --out) and prints the table docs/performance.md shows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
FRAMES, CLIPS, MB = 16, 2, 2**20

SD15_UNET = dict(  # stable-diffusion-v1-5 unet/config.json
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768, attention_head_dim=8,
    downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, norm_num_groups=32, norm_eps=1e-5, act_fn="silu")
SD15_ADAPTER = dict(  # guoyww/animatediff-motion-adapter-v1-5-2 config.json
    block_out_channels=(320, 640, 1280, 1280), motion_layers_per_block=2, motion_mid_block_layers_per_block=1,
    motion_num_attention_heads=8, motion_norm_num_groups=32, motion_max_seq_length=32, use_motion_mid_block=True)
SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
              layers_per_block=2, sample_size=512, scaling_factor=0.18215)
CLIP_L_TEXT = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                   projection_dim=768, max_position_embeddings=77, vocab_size=49408, hidden_act="quick_gelu")
SVD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
               down_block_types=("DownEncoderBlock2D",) * 4, layers_per_block=2, sample_size=768,
               scaling_factor=0.18215, force_upcast=True)
CLIP_H_VISION = dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=16, num_hidden_layers=32,
                     patch_size=14, image_size=224, projection_dim=1024, hidden_act="gelu")
# the SVD U-Net is diffusers' UNetSpatioTemporalConditionModel() defaults: img2vid-xt's config

VARIANTS: dict[str, dict[str, Any]] = {  # [train] overrides; legacy_ckpt: diffusers' checkpointing only
    "none": {"train": {"mixed_precision": "no", "gradient_checkpointing": False, "frozen_dtype": "float32",
                       "augment_bank": 0}, "legacy_ckpt": True, "plain_fit": True},
    "issue": {"train": {"mixed_precision": "bf16", "gradient_checkpointing": True, "frozen_dtype": "float32",
                        "augment_bank": 0}, "legacy_ckpt": True, "plain_fit": True},
    "+ckpt": {"train": {"mixed_precision": "bf16", "gradient_checkpointing": True, "frozen_dtype": "float32",
                        "augment_bank": 0}, "plain_fit": True},
    "+frozen": {"train": {"mixed_precision": "bf16", "gradient_checkpointing": True, "frozen_dtype": "mixed",
                          "augment_bank": 0}, "plain_fit": True},
    "+bank": {"train": {"mixed_precision": "bf16", "gradient_checkpointing": True, "frozen_dtype": "mixed",
                        "augment_bank": 8}, "plain_fit": True},
    "defaults": {"train": {}},  # every low-memory setting "auto": what a real preset trains with
}
TINY_LOW = {"mixed_precision": "bf16", "gradient_checkpointing": True, "frozen_dtype": "mixed", "augment_bank": 2}


def build_folder(backbone: str, root: Path) -> Path:
    """Random full-size weights from the real configs, saved in the hub layout under ``root``."""
    import torch

    torch.manual_seed(0)
    if backbone == "animatediff":
        from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel
        from flashctl_animatediff.components import byte_level_tokenizer
        from transformers import CLIPTextConfig, CLIPTextModel

        tokenizer = byte_level_tokenizer()  # its 514 ids all lie inside CLIP's vocabulary
        UNet2DConditionModel(**SD15_UNET).save_pretrained(root / "unet")
        MotionAdapter(**SD15_ADAPTER).save_pretrained(root / "motion_adapter")
        AutoencoderKL(**SD_VAE).save_pretrained(root / "vae")
        CLIPTextModel(CLIPTextConfig(**CLIP_L_TEXT, bos_token_id=tokenizer.bos_token_id,
                                     eos_token_id=tokenizer.eos_token_id,
                                     pad_token_id=tokenizer.pad_token_id)).save_pretrained(root / "text_encoder")
        tokenizer.save_pretrained(root / "tokenizer")
    else:
        from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
        from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModelWithProjection

        UNetSpatioTemporalConditionModel().save_pretrained(root / "unet")
        AutoencoderKLTemporalDecoder(**SVD_VAE).save_pretrained(root / "vae")
        CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_H_VISION)).save_pretrained(root / "image_encoder")
        CLIPImageProcessorPil().save_pretrained(root / "feature_extractor")
    return root


def backbone_options(backbone: str, folder: Path | None) -> dict[str, Any]:
    if folder is None:  # --tiny: random tiny weights
        return {"preset": "tiny"}
    if backbone == "animatediff":
        return {"preset": "sd15", "base": str(folder), "motion_adapter": str(folder / "motion_adapter")}
    return {"preset": "svd", "base": str(folder)}


def point_config(backbone: str, folder: Path | None, size: int, variant: str, device: str, root: Path,
                 threads: int = 1) -> Any:
    from flashctl.config import FlashConfig

    ded = backbone == "animatediff"
    train = {**(TINY_LOW if folder is None and variant == "defaults" else VARIANTS[variant]["train"])}
    return FlashConfig.model_validate({
        "source": str(root / "flashctl.toml"),
        "model": {"backbone": backbone, "decoder": "detail-enhance" if ded else "vae"},
        "prepare": {"frames": FRAMES, "size": size, "fps": 8.0},
        "train": {"steps": 2, "lr": 1e-4, "strong_augment": True, "detail_decoder": ded,
                  "mam": {"motion_align": True, "correspondence_align": True}, **train},
        "animate": {"steps": 1, "formats": ["gif"]},
        "runtime": {"device": device, "threads": threads},
        "options": {"backbone": {backbone: backbone_options(backbone, folder)},
                    "decoder": {"detail-enhance": {"train_steps": 2}}},
    })


def make_library(config: Any, size: int) -> Any:
    """An action of CLIPS smooth random clips of FRAMES frames at ``size`` px, as prepare leaves it."""
    import hashlib

    import numpy as np
    from flashctl.library import MotionLibrary
    from flashctl.manifest import ClipEntry, MotionManifest

    library, entries = MotionLibrary(config.library_path()), []
    for i in range(CLIPS):
        data = f"clip {i}".encode()
        entries.append(ClipEntry(file=f"clips/c{i}.mp4", sha256=hashlib.sha256(data).hexdigest()))
        path = library.path("bench") / entries[-1].file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    library.write_manifest("bench", MotionManifest(name="bench", prompt="a person waves", clips=entries))
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 255, (CLIPS, FRAMES, 4, 4, 3)).astype(np.uint8)
    frames = coarse.repeat(size // 4, axis=2).repeat(size // 4, axis=3)  # (N, F, S, S, 3)
    library.save_frames("bench", frames, {"frames": FRAMES, "fps": 8.0, "size": size, "start": 0.0})
    return library


def run_point(backbone: str, folder: Path | None, size: int, variant: str, device: str,
              threads: int = 1) -> dict[str, Any]:
    """One ``train`` run under the tracker; this process's figures."""
    import torch
    from flashctl.model import motion_model
    from flashctl.pipeline.train import train
    from flashctl.plugins import build_host
    from memory_tracker import LiveBytes, PhaseReporter, peak_rss_bytes, static_bytes

    spec = VARIANTS.get(variant, {})
    if spec.get("legacy_ckpt"):  # diffusers' checkpointing only, as before issue 14
        for cls in _backbone_classes():
            cls.checkpoint_modules = None
    built: list[Any] = []
    build, fit = motion_model.MotionModel.build, motion_model.MotionModel.fit_decoder
    motion_model.MotionModel.build = classmethod(lambda cls, *a, **k: built.append(build(*a, **k)) or built[-1])
    if spec.get("plain_fit"):  # the decoder fit as before issue 14: float32, not checkpointed
        motion_model.MotionModel.fit_decoder = lambda self, clips, **k: fit(
            self, clips, **{**k, "autocast": False, "checkpointing": False})
    with tempfile.TemporaryDirectory() as tmp:
        config = point_config(backbone, folder, size, variant, device, Path(tmp), threads)
        library = make_library(config, size)
        tracker = LiveBytes()
        reporter = PhaseReporter(tracker, device)
        with tracker:
            train(config, library, "bench", host=build_host(), reporter=reporter)
        phases = reporter.close()
        settings = json.loads((library.path("bench") / "provenance.json").read_text())["train"]
    model = built[-1].backbone
    modules = {n: getattr(model, n) for n in ("unet", "vae", "text_encoder", "image_encoder") if hasattr(model, n)}
    modules["decoder"] = built[-1].decoder if isinstance(built[-1].decoder, torch.nn.Module) else torch.nn.Module()
    latent = size // 8
    return {"backbone": backbone, "size": size, "frames": FRAMES, "variant": variant, "device": device,
            "tokens": 2 * FRAMES * latent * latent, "static": static_bytes(modules), "phases": phases,
            "peak_rss": peak_rss_bytes(), "settings": {k: settings[k] for k in VARIANTS["none"]["train"]},
            "torch": torch.__version__}


def run_load(backbone: str, folder: Path, how: str) -> dict[str, Any]:
    """Build the backbone from ``folder`` as ``train`` does; peak RSS while loading vs the model it holds.

    ``how``: ``meta`` (flashctl's motion U-Net, built on meta and assigned the loaded tensors) or ``from_unet2d``
    (diffusers' ``UNetMotionModel.from_unet2d``, which initialises a second U-Net and copies into it).
    """
    import torch
    from flashctl.context import BuildContext
    from flashctl.plugins import build_host
    from memory_tracker import peak_rss_bytes, static_bytes

    if how == "from_unet2d":
        from diffusers import UNetMotionModel
        from flashctl_animatediff import backbone as plugin

        plugin.motion_unet = UNetMotionModel.from_unet2d
    host = build_host()
    before = peak_rss_bytes()
    model = host.registry.create("backbone", backbone, backbone_options(backbone, folder), BuildContext())
    peak = peak_rss_bytes()
    modules = {n: getattr(model, n) for n in ("unet", "vae", "text_encoder", "image_encoder") if hasattr(model, n)}
    steady = static_bytes(modules)["total"]
    with torch.no_grad():  # read one value per 4 KiB page of every weight: all of the model resident, as in use
        for module in modules.values():
            for t in [*module.parameters(), *module.buffers()]:
                t.reshape(-1)[::4096 // t.element_size()].sum()
    resident = int(Path("/proc/self/statm").read_text().split()[1]) * 4096
    return {"backbone": backbone, "load": how, "rss_before": before, "peak_rss": peak, "model_bytes": steady,
            "peak_over_model": round((peak - before) / steady, 3), "rss_in_use": resident,
            "peak_in_use_over_model": round((peak_rss_bytes() - before) / steady, 3), "torch": torch.__version__}


def _backbone_classes() -> list[Any]:
    from flashctl_animatediff.backbone import AnimateDiffBackbone
    from flashctl_svd.backbone import SVDBackbone

    return [AnimateDiffBackbone, SVDBackbone]


def step_phase(point: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in point["phases"] if "training steps" in p["phase"])


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b * x``; one point gives ``b = 0``."""
    n, mx, my = len(xs), sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if n > 1 and var else 0.0
    return my - b * mx, b


def fit_phase(point: dict[str, Any]) -> dict[str, Any] | None:
    return next((q for q in point["phases"] if "decoder" in q["phase"]), None)


def table(points: list[dict[str, Any]]) -> str:
    """Markdown: per point the measured bytes; per variant the fitted slopes and the extrapolations.

    The LoRA step is fitted per latent token; the decoder fit per output pixel (each fitting step decodes
    ``batch_frames`` frames at the clip size).
    """
    rows = ["| variant | px | tokens | static MB (weights) | LoRA step MB above static | decoder fit MB | "
            "peak RSS MB | CUDA peak MB |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for p in points:
        step, fit = step_phase(p), fit_phase(p)
        fit_mb = f"{fit['above_start'] / MB:.1f}" if fit else "–"
        cuda = f"{step['cuda_peak'] / MB:.0f}" if step.get("cuda_peak") else "–"
        rows.append(f"| {p['variant']} | {p['size']} | {p['tokens']} | {p['static']['total'] / MB:.0f} | "
                    f"{step['above_start'] / MB:.1f} | {fit_mb} | {p['peak_rss'] / MB:.0f} | {cuda} |")
    rows += ["", "| variant | points | step MB/token | step intercept MB | static MB | fit MB/kpx | "
                 "256x256x16 GB: step / fit | 512x512x16 GB: step / fit |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for variant in dict.fromkeys(p["variant"] for p in points):
        group = [p for p in points if p["variant"] == variant]
        a, b = fit_line([p["tokens"] for p in group], [step_phase(p)["above_start"] for p in group])
        fits = [p for p in group if fit_phase(p)]
        fa, fb = fit_line([p["size"] ** 2 for p in fits], [fit_phase(p)["above_start"] for p in fits]) if fits \
            else (0.0, 0.0)
        static = group[-1]["static"]["total"]
        est = {s: [(static + a + b * 2 * FRAMES * (s // 8) ** 2) / 2**30,
                   (static + fa + fb * s * s) / 2**30 if fits else None] for s in (256, 512)}
        shown = {s: f"{v[0]:.1f} / " + (f"{v[1]:.1f}" if v[1] is not None else "–") for s, v in est.items()}
        fit_slope = f"{fb * 1000 / MB:.3f}" if fits else "–"
        rows.append(f"| {variant} | {len(group)} | {b / MB:.4f} | {a / MB:.1f} | {static / MB:.0f} | {fit_slope} | "
                    f"{shown[256]} | {shown[512]} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", choices=["animatediff", "svd"], default="animatediff")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 96])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["defaults"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tiny", action="store_true", help="the tiny preset (no folder): a quick rot check")
    parser.add_argument("--folder", type=Path, help="random full-size weights saved here, built if missing (kept)")
    parser.add_argument("--threads", type=int, default=1, help="runtime.threads of every point (0 = torch's)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, nargs="+", help="only print the table of these saved results")
    parser.add_argument("--load", nargs="+", choices=["meta", "from_unet2d"],
                        help="instead: peak RSS while loading the full-size folder, each way in a fresh process")
    parser.add_argument("--point", nargs=4, metavar=("FOLDER", "SIZE", "VARIANT", "DEVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.table:
        print(table([p for path in args.table for p in json.loads(path.read_text())]))
        return 0
    if args.point:  # a child: one point, one JSON line
        folder, size, variant, device = args.point
        if variant in ("meta", "from_unet2d"):
            result = run_load(args.backbone, Path(folder), variant)
        else:
            result = run_point(args.backbone, None if folder == "-" else Path(folder), int(size), variant, device,
                               args.threads)
        print("POINT " + json.dumps(result))
        return 0
    tmp = None if args.tiny or args.folder else Path(tempfile.mkdtemp(prefix=f"flashctl-{args.backbone}-"))
    folder = None if args.tiny else args.folder or tmp
    if folder is not None and not (folder / "unet").is_dir():
        build_folder(args.backbone, folder)
    kind = "load" if args.load else "memory"
    out = args.out or RESULTS / f"{kind}-{args.backbone}{'-tiny' if args.tiny else ''}.json"
    jobs = [(how, 0) for how in args.load] if args.load else [(v, s) for v in args.variants for s in args.sizes]
    points = []
    try:
        for variant, size in jobs:
            points.append(child(args, folder, size, variant))
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(points, indent=1) + "\n")
            p = points[-1]
            print(f"{variant}: load peak {(p['peak_rss'] - p['rss_before']) / MB:.0f} MB for a "
                  f"{p['model_bytes'] / MB:.0f} MB model ({p['peak_over_model']}x; all weights read: "
                  f"{p['peak_in_use_over_model']}x)" if args.load else
                  f"{variant} {size}px: LoRA step {step_phase(p)['above_start'] / MB:.1f} MB above static "
                  f"{p['static']['total'] / MB:.0f} MB, {step_phase(p)['seconds']} s", flush=True)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if not args.load:
        print(table(points))
    print(f"wrote {out}")
    return 0


def child(args: argparse.Namespace, folder: Path | None, size: int, variant: str) -> dict[str, Any]:
    """One point in a fresh process (its own peak RSS); its JSON result."""
    run = subprocess.run([sys.executable, __file__, "--backbone", args.backbone, "--threads", str(args.threads),
                          "--point", str(folder or "-"), str(size), variant, args.device],
                         capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    line = next((ln for ln in run.stdout.splitlines() if ln.startswith("POINT ")), None)
    if run.returncode or line is None:
        sys.exit(f"point {variant} {size}px failed:\n{run.stderr[-3000:]}")
    return json.loads(line[6:])


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
