"""CLIP similarity of the generated frames with the reference image and with the action's prompt.

Expected weights: the folder ``options.metric.clip-score.weights`` names, in transformers' CLIP layout,
as ``CLIPModel.save_pretrained`` + ``CLIPTokenizer.save_pretrained`` + ``CLIPImageProcessor.save_pretrained``
write it (a snapshot of e.g. ``openai/clip-vit-base-patch32``): ``config.json``, ``model.safetensors``,
the tokenizer files and ``preprocessor_config.json``. Loaded with ``local_files_only=True``.

Frames are preprocessed in torch as the processor describes (shortest edge resized bicubic with
antialiasing, centre crop, mean/std normalisation), without a round trip through 8-bit PIL images.
Similarities are cosines of the projected embeddings, in [-1, 1]; 1 = same embedding.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .loading import device_of, weights_folder

LAYOUT = ("a transformers CLIP folder (config.json, model.safetensors, tokenizer files, preprocessor_config.json; "
          "what CLIPModel/CLIPTokenizer/CLIPImageProcessor.save_pretrained write)")


class Preprocess:
    """The CLIP image processor's resize, centre crop and normalisation, on ``(N, 3, H, W)`` [-1, 1] tensors."""

    def __init__(self, processor: Any) -> None:
        self.shortest = processor.size.shortest_edge if processor.do_resize else None
        self.resize_to = None if self.shortest else (processor.size.height, processor.size.width)
        self.crop = (processor.crop_size.height, processor.crop_size.width) if processor.do_center_crop else None
        self.mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1)
        self.std = torch.tensor(processor.image_std).view(1, 3, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = ((images.float() + 1) / 2).clamp(0, 1)  # (N, 3, H, W) in [0, 1]
        height, width = x.shape[-2:]
        size = self.resize_to
        if self.shortest:
            scale = self.shortest / min(height, width)
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
        if size and size != (height, width):
            x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
        if self.crop:
            top, left = max(0, (x.shape[-2] - self.crop[0]) // 2), max(0, (x.shape[-1] - self.crop[1]) // 2)
            x = x[..., top:top + self.crop[0], left:left + self.crop[1]]  # (N, 3, crop_h, crop_w)
        return (x - self.mean.to(x)) / self.std.to(x)


class ClipScore:
    """``image_mean``/``image_min``: cosine(reference, frame) over the frames (frame 0 included);
    ``text``: mean cosine(prompt, frame), when a prompt is known (the option wins over the call's)."""

    def __init__(self, model: Any, tokenizer: Any, preprocess: Preprocess, prompt: str | None = None,
                 device: str = "cpu") -> None:
        self.model, self.tokenizer, self.preprocess = model.to(device), tokenizer, preprocess
        self.prompt, self.device = prompt, device

    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """Unit CLIP embeddings of ``(N, 3, H, W)`` images in [-1, 1]: ``(N, D)``."""
        pixels = self.preprocess(images.to(self.device))  # (N, 3, S, S)
        pooled = self.model.vision_model(pixel_values=pixels).pooler_output  # (N, hidden)
        return F.normalize(self.model.visual_projection(pooled), dim=-1)  # (N, D)

    def text_embedding(self, prompt: str) -> torch.Tensor:
        """Unit CLIP embedding of one prompt: ``(D,)``."""
        tokens = self.tokenizer([prompt], padding=True, truncation=True, return_tensors="pt").to(self.device)
        pooled = self.model.text_model(input_ids=tokens["input_ids"],
                                       attention_mask=tokens["attention_mask"]).pooler_output  # (1, hidden)
        return F.normalize(self.model.text_projection(pooled), dim=-1)[0]  # (D,)

    @torch.no_grad()
    def __call__(self, generated: torch.Tensor, *, reference: torch.Tensor, target: torch.Tensor | None = None,
                 prompt: str | None = None) -> dict[str, float]:
        emb = self.image_embeddings(torch.cat([reference[None], generated]))  # (F+1, D)
        image = emb[1:] @ emb[0]  # (F,)
        scores = {"image_mean": float(image.mean()), "image_min": float(image.min())}
        text = self.prompt or prompt
        if text:
            scores["text"] = float((emb[1:] @ self.text_embedding(text)).mean())
        return scores


def build(options: Any, ctx: Any) -> ClipScore:
    from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

    from flashctl.errors import WeightsFileError

    folder = weights_folder(options.weights, ctx, metric="clip-score", layout=LAYOUT)
    try:
        model = CLIPModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)  # never a pickle
        tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        processor = CLIPImageProcessorPil.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        detail = " ".join(str(exc).split())
        raise WeightsFileError(f"metric 'clip-score': cannot load CLIP from {folder}: {detail[:300]}",
                               hint=f"the folder must hold {LAYOUT}") from None
    return ClipScore(model.eval().requires_grad_(False), tokenizer, Preprocess(processor), options.prompt,
                     device_of(ctx))
