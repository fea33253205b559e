"""What a training run records: its fingerprint (what a resume must find unchanged), each replica's LoRA
hash, and ``provenance.json`` (what actually ran)."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timezone
from typing import Any

from .. import __version__


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def lora_sha256(backbone: Any) -> bytes:
    """sha256 of the backbone's LoRA tensors (names and bytes, in name order)."""
    import torch

    from ..model.lora import lora_state_dict

    digest = hashlib.sha256()
    for name, tensor in sorted(lora_state_dict(backbone).items()):
        digest.update(name.encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.digest()


def replica_hashes(accelerator: Any, backbone: Any) -> list[str]:
    """sha256 of every process's LoRA tensors, by process index (a collective); all equal while in sync."""
    import torch

    mine = torch.frombuffer(bytearray(lora_sha256(backbone)), dtype=torch.uint8)  # (32,)
    return [bytes(row.tolist()).hex() for row in accelerator.gather(mine[None].to(accelerator.device)).cpu()]


def fingerprint(config, settings, model, manifest, frames, augmentations, processes) -> dict[str, Any]:
    """What the training trajectory depends on besides the step count: a resume must find the same."""
    import numpy as np
    import torch

    return {
        "train": settings.model_dump(mode="json", exclude={"steps", "checkpoint_every"}),
        "backbone": {**model.components["backbone"], "geometry": model.backbone.geometry()},
        "augmentations": {name: config.component_options("augmentation", name) for name, _ in augmentations},
        "runtime": {"device": torch.device(config.runtime.device).type, "attention": config.runtime.attention},
        "prompt": manifest.prompt,
        "clips": [c.sha256 for c in manifest.clips],
        "frames_sha256": hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest(),
        "num_processes": processes,
    }


def provenance(run_id, action, started, t0, host, config, settings, manifest, model, augmentations, losses, start,
                mam, decoder_losses, replicas, files) -> dict[str, Any]:
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
        "finished_at": now(),
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
        "num_processes": len(replicas),
        "process_seeds": [settings.seed + rank for rank in range(len(replicas))],
        "replica_lora_sha256": replicas,
        "losses": losses,
        "final_loss": losses[-1] if losses else None,
        "decoder_losses": decoder_losses,
        "files": files,
    }
