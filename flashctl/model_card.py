"""A trained motion's model card: ``weights/README.md``, what the motion is and where it came from.

``train`` writes it into the version it saves, before the provenance hashes are taken, so the card is
covered by ``provenance.json``'s ``files`` like the weights (and travels with ``motions pack``, which
packs ``weights/``). It lives in ``weights/`` because a save may only write the items of
:data:`flashctl.versions.ITEMS`; through the action folder's fixed ``weights`` link it reads as
``motions/ACTION/weights/README.md``.

Sections: what (action, prompt), the training clips (count, short sha256s, licence and consent from
motion.toml), the base (backbone, preset, base id, geometry hash), the ``[train]`` settings (switches,
ablation row, steps, lr, seed), metrics (the latest eval summary and the weights it scored) and how to
use it (animate, export). :func:`card_for_version` renders the card of any saved version, for motions
trained before cards existed (``flashctl motions card ACTION``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CARD_FILE = "README.md"
CARD_PATH = f"weights/{CARD_FILE}"  # relative to a version folder
SWITCHES = ("strong_augment", "detail_decoder", "motion_align", "correspondence_align")


def write_card(stage: Path, action: str, manifest: Any, weights: dict[str, Any], settings: Any, *, run_id: str,
               steps: int) -> Path:
    """Write the card of a motion being saved into ``stage`` (train's staging folder) -> its path.

    ``weights`` is the weights/config.json record, ``settings`` the resolved ``[train]`` section.
    """
    run = {"run_id": run_id, "train": settings.model_dump(mode="json"), "ablation": settings.ablation_row,
           "steps": steps, "seed": settings.seed}
    path = Path(stage) / CARD_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_card(action, manifest, weights, run, metrics=None), encoding="utf-8")
    return path


def card_for_version(action: str, manifest: Any, version: Path) -> str:
    """The card of a saved version folder, from its weights/config.json, provenance.json and eval/metrics.json."""
    from .files import read_json

    version = Path(version)
    provenance = read_json(version / "provenance.json") or {}
    losses = provenance.get("losses") or []
    run = {"run_id": provenance.get("run_id") or version.name, "train": provenance.get("train") or {},
           "ablation": (provenance.get("mam") or {}).get("ablation"), "steps": len(losses) or None,
           "seed": provenance.get("seed"), "final_loss": provenance.get("final_loss"),
           "finished_at": provenance.get("finished_at")}
    weights = read_json(version / "weights" / "config.json") or {}
    metrics = read_json(version / "eval" / "metrics.json")
    return render_card(action, manifest, weights, run, metrics=metrics)


def _flat_train(train: dict[str, Any]) -> dict[str, Any]:
    """``[train]`` with ``[train.mam]`` merged in (older provenance records have the switches flat)."""
    mam = train.get("mam") if isinstance(train.get("mam"), dict) else {}
    return {**train, **mam}


def _cell(value: Any) -> str:
    return str(value if value not in (None, "") else "–").replace("|", "\\|").replace("\n", " ")


def _clips(manifest: Any) -> list[str]:
    clips = list(getattr(manifest, "clips", []) or [])
    lines = [f"{len(clips)} clip{'s' if len(clips) != 1 else ''} listed in motion.toml "
             "(sha256 shortened to 12 hex digits; the full ones are in motion.toml and provenance.json)."]
    if not clips:
        return lines
    lines += ["", "| clip | sha256 | source | licence | consent |", "|---|---|---|---|---|"]
    lines += [f"| {_cell(c.file)} | `{c.sha256[:12]}` | {_cell(c.source)} | {_cell(c.license)} | {_cell(c.consent)} |"
              for c in clips]
    missing = [c.file for c in clips if not (c.license and c.consent)]
    if missing:
        lines += ["", f"**Licence or consent not recorded for {len(missing)} of {len(clips)} clips** (fill in "
                      "`license` and `consent` for each clip in motion.toml before sharing this motion)."]
    return lines


def _settings(run: dict[str, Any], weights: dict[str, Any]) -> list[str]:
    train = _flat_train(run.get("train") or {})
    lora = weights.get("lora") or {}
    switches = ", ".join(f"{k} = {str(train[k]).lower()}" for k in SWITCHES if k in train) or "not recorded"
    steps = run.get("steps") or train.get("steps")
    rows = [("ablation row (METHOD.md)", run.get("ablation") or "not recorded"), ("[train] switches", switches),
            ("steps", steps), ("lr", train.get("lr")), ("seed", run.get("seed", train.get("seed"))),
            ("batch size x grad accum", f"{train.get('batch_size', '–')} x {train.get('grad_accum', '–')}"),
            ("LoRA rank / alpha", f"{lora.get('rank', train.get('lora_rank'))} / {lora.get('alpha', train.get('lora_alpha'))}")]
    if run.get("final_loss") is not None:
        rows.append(("final loss", f"{run['final_loss']:.4g}"))
    return ["| setting | value |", "|---|---|"] + [f"| {k} | {_cell(v)} |" for k, v in rows]


def _metrics(action: str, metrics: dict[str, Any] | None) -> list[str]:
    if not metrics or not isinstance(metrics.get("summary"), dict):
        return [f"Not evaluated yet: `flashctl eval {action} --clips HELD_OUT_CLIPS/` scores it; "
                f"`flashctl motions card {action}` then prints this card with the results."]
    directions = metrics.get("higher_is_better") or {}
    arrow = {True: "↑", False: "↓", "near 1": "→1"}
    lines = [f"Latest eval ({metrics.get('created', 'date unknown')}, {len(metrics.get('samples') or [])} samples, "
             f"references: {metrics.get('references', 'unknown')}):", "",
             "| metric | better | mean |", "|---|:-:|---:|"]
    for key, value in metrics["summary"].items():
        shown = f"{value:.4g}" if isinstance(value, (int, float)) else "–"
        lines.append(f"| {_cell(key)} | {arrow.get(directions.get(key), '')} | {shown} |")
    scored = metrics.get("weights")
    if scored:
        extra = f", decoder.safetensors `{scored['decoder_sha256'][:12]}`" if scored.get("decoder_sha256") else ""
        lines += ["", f"Scored weights: run `{scored.get('run_id')}`, lora.safetensors "
                      f"`{str(scored.get('lora_sha256'))[:12]}`{extra}."]
    else:
        lines += ["", "Scored weights: not recorded in this metrics.json (written before eval recorded them)."]
    return lines


def render_card(action: str, manifest: Any, weights: dict[str, Any], run: dict[str, Any],
                metrics: dict[str, Any] | None) -> str:
    """The card as Markdown. ``run``: run_id, train (the [train] record), ablation, steps, seed[, final_loss]."""
    from .model.motion_files import geometry_sha256

    backbone = weights.get("backbone") or {}
    geometry = backbone.get("geometry") or {}
    prompt = weights.get("prompt") or getattr(manifest, "prompt", "")
    description = getattr(manifest, "description", "")
    what = [f"- action: `{action}`", f"- prompt: \"{prompt}\""]
    what += [f"- description: {description}"] if description else []
    what += [f"- run id: `{run.get('run_id')}`" + (f", finished {run['finished_at']}" if run.get("finished_at") else "")]
    if weights.get("frames"):
        what.append(f"- output: {weights.get('frames')} frames of {weights.get('size')} px at {weights.get('fps')} fps")
    decoder = weights.get("decoder") or {}
    base = [f"- backbone: {backbone.get('name', geometry.get('backbone', 'unknown'))}",
            f"- preset: {geometry.get('preset', 'unknown')}",
            f"- base id: `{geometry.get('base', 'unknown')}` (geometry sha256 `{geometry_sha256(geometry)}`)",
            f"- decoder: {decoder.get('name', 'unknown')}" + (" (fitted layers in weights/decoder.safetensors)"
                                                               if decoder.get("file") else "")]
    use = ["```bash", f"flashctl animate -a {action} -i photo.png -o {action}.mp4",
           f"flashctl export {action} --format diffusers -o {action}.diffusers.safetensors",
           f"flashctl export {action} --format comfyui -o {action}.comfyui.safetensors",
           "```", "",
           "The LoRA needs the same base (base id above) and flashctl's cross-frame attention to give flashctl's "
           "output; the exported files carry the base id and geometry hash in their metadata."]
    sections = [f"# Motion: {action}", "A flashctl motion (a LoRA on the video backbone) that animates a still image "
                f"of a person into a short video of \"{prompt}\", starting at the image.",
                "## What", "\n".join(what), "## Training clips", "\n".join(_clips(manifest)),
                "## Base", "\n".join(base), "## Settings", "\n".join(_settings(run, weights)),
                "## Metrics", "\n".join(_metrics(action, metrics)), "## How to use", "\n".join(use)]
    return "\n\n".join(sections) + "\n"
