"""Regenerate the reference images in examples/ (deterministic).

* actor.png: a held-out-pool synthetic actor (`flashctl synth arm_wave --appearance-split heldout --seed 7`).
* actor_side.png: the same person seen from the side, facing right, as the demo motions' clips are
  (`flashctl synth bow --appearance-split heldout --seed 7 --canonical`).
* drawn_figure.png: a flat cartoon figure (outlined shapes on a warm paper background; its shirt, (230, 90, 60),
  is a held-out clothing colour, the rest belongs to neither pool), to check how animation copes with an
  image unlike the training world. `flashctl synth --appearance-split drawn` renders people in this style
  doing any action, with ground truth, for scoring.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parents[1] / "examples"


def drawn_figure(size: int = 128) -> Image.Image:
    scale = 4
    s = size * scale
    image = Image.new("RGB", (s, s), (246, 236, 214))  # paper
    draw = ImageDraw.Draw(image)
    ink, width = (40, 32, 30), 3 * scale

    def pt(x: float, y: float) -> tuple[int, int]:
        return int(x * s), int(y * s)

    draw.rectangle([pt(0, 0.86), pt(1, 1)], fill=(214, 190, 150))  # floor
    limbs = [((0.44, 0.45), (0.37, 0.55), (0.35, 0.64)), ((0.56, 0.45), (0.63, 0.55), (0.65, 0.64)),  # arms
             ((0.46, 0.64), (0.45, 0.75), (0.44, 0.86)), ((0.54, 0.64), (0.55, 0.75), (0.56, 0.86))]  # legs
    for a, b, c in limbs:
        draw.line([pt(*a), pt(*b), pt(*c)], fill=ink, width=9 * scale, joint="curve")
        draw.line([pt(*a), pt(*b), pt(*c)], fill=(60, 140, 200), width=6 * scale, joint="curve")
    draw.rounded_rectangle([pt(0.42, 0.42), pt(0.58, 0.66)], radius=4 * scale, fill=(230, 90, 60),
                           outline=ink, width=width)  # torso
    draw.ellipse([pt(0.43, 0.27), pt(0.57, 0.42)], fill=(250, 210, 170), outline=ink, width=width)  # head
    draw.chord([pt(0.43, 0.26), pt(0.57, 0.36)], 180, 360, fill=(120, 60, 140), outline=ink, width=width)  # hair
    return image.resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    import shutil
    import tempfile

    from flashctl_synth.render import write_clips

    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        (first,) = write_clips("arm_wave", 1, Path(tmp), size=128, seed=7, split="heldout", reference_only=True)
        shutil.copyfile(first, OUT / "actor.png")
        (side,) = write_clips("bow", 1, Path(tmp) / "side", size=128, seed=7, split="heldout", reference_only=True,
                              canonical=True)
        shutil.copyfile(side, OUT / "actor_side.png")
    drawn_figure().save(OUT / "drawn_figure.png")
    print(OUT / "actor.png", OUT / "actor_side.png", OUT / "drawn_figure.png", sep="\n")


if __name__ == "__main__":
    main()
