"""Do the eval metrics rank videos correctly? Scores known-good and known-bad videos on synthetic clips.

For every action of the synthetic world and ``--clips`` held-out people (``heldout`` pool, seeds 0..N-1),
the real clip is the ground truth (its frame 0 the reference) and each metric scores these candidates
against it:

* ``real``: the real continuation itself;
* ``other person``: the same action by another held-out person (seed N + i);
* one column per other action: that action by the same person (averaged over the actions it stands in for);
* ``frozen``: the first frame repeated;
* ``noise``: the first frame with fresh gaussian noise on every frame (``--noise``, std on the [-1, 1] scale);
* ``flicker``: the first frame with a random gain per colour channel on every later frame (``--flicker``,
  std of the gain): whole-frame colour flicker and no motion;
* ``backwards``: the real clip played backwards.

A key passes when the real continuation ranks first (its mean is best by the key's direction,
:mod:`flashctl.directions`, by more than a rounding error: a tie with ``backwards`` fails) and ``frozen``,
``noise`` and ``flicker`` all rank below ``other person`` (a real motion of the right action). Metrics default to the project's ``[eval] metrics`` (flashctl.toml), plus ``keypoints``
when a plugin registers it; ``--metrics`` overrides. Set-level metrics (e.g. ``fvd``) are skipped.

Run:   .venv/bin/python experiments/metric_sanity.py [--clips 16] [--metrics motion-track,transition] [--out FILE]
Prints the table (mean ± std per key and candidate, then PASS/FAIL) and writes it as markdown to ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "experiments" / "results" / "metric_sanity.md"
OPTIONAL = ["keypoints"]  # included automatically once a plugin registers them
BAD = ("frozen", "noise", "flicker")  # must rank below another person doing the right action
TIE = 1e-6  # relative: closer than this to the real clip's badness counts as a tie


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=16, help="held-out people per action")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--noise", type=float, default=0.1, help="std of the per-frame noise, [-1, 1] scale")
    parser.add_argument("--flicker", type=float, default=0.1, help="std of the per-frame colour gain")
    parser.add_argument("--metrics", type=lambda s: [m for m in s.split(",") if m],
                        help="comma-separated metric names (default: the project's [eval] metrics)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown table written here")
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


def candidates(action: str, seed: int, args: argparse.Namespace) -> dict[str, "torch.Tensor"]:
    """Every candidate video ``(F, 3, H, W)`` in [-1, 1] for one real clip; ``real`` first."""
    import torch

    from flashctl.video import frames_to_tensor
    from flashctl_synth.actions import ACTIONS
    from flashctl_synth.render import render_clip

    def clip(name: str, person: int) -> torch.Tensor:
        return frames_to_tensor(render_clip(name, frames=args.frames, size=args.size, seed=person,
                                            split="heldout")[0])

    real = clip(action, seed)
    first = real[:1].expand(len(real), -1, -1, -1)  # (F, 3, H, W)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(first.shape, generator=generator)  # (F, 3, H, W)
    gain = 1 + args.flicker * torch.randn(len(real), 3, 1, 1, generator=generator)  # (F, 3, 1, 1)
    gain[0] = 1  # frame 0 stays the reference, as under anchoring
    videos = {"real": real, "other person": clip(action, args.clips + seed)}
    videos.update({other: clip(other, seed) for other in ACTIONS if other != action})
    videos.update({"frozen": first, "noise": (first + args.noise * noise).clamp(-1, 1),
                   "flicker": ((first + 1) * gain - 1).clamp(-1, 1), "backwards": real.flip(0)})
    return videos


def build_metrics(names: list[str] | None) -> list[tuple[str, object, object]]:
    """(name, score function, traits) for each metric that scores single videos."""
    from flashctl.config import load_config
    from flashctl.plugins import host_for

    config = load_config(REPO / "flashctl.toml")
    registry = host_for(config).registry
    if names is None:
        known = {spec.name for spec in registry.specs("metric")}
        names = config.eval.metrics + [m for m in OPTIONAL if m in known and m not in config.eval.metrics]
    metrics = []
    for name in names:
        spec = registry.get("metric", name)
        if spec.traits.aggregate:
            print(f"skipping {name}: it scores a whole set, not one video", file=sys.stderr)
            continue
        score = registry.create("metric", name, config.component_options("metric", name))
        metrics.append((name, score, spec.traits))
    return metrics


def collect(metrics, args: argparse.Namespace) -> tuple[list[str], dict[str, dict[str, list[float]]], dict]:
    """Candidate columns, ``scores[metric/key][column]`` (one value per scored clip) and each key's direction."""
    from flashctl_synth.actions import ACTIONS

    columns = ["real", "other person", *ACTIONS, *BAD, "backwards"]
    scores: dict[str, dict[str, list[float]]] = {}
    directions: dict[str, object] = {}
    for action in ACTIONS:
        started = time.perf_counter()
        for seed in range(args.clips):
            videos = candidates(action, seed, args)
            real = videos["real"]
            for column, video in videos.items():
                for name, score, traits in metrics:
                    for key, value in score(video, reference=real[0], target=real).items():
                        scores.setdefault(f"{name}/{key}", {c: [] for c in columns})[column].append(float(value))
                        directions[f"{name}/{key}"] = traits.direction(key)
        print(f"{action}: {args.clips} clips in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return columns, scores, directions


def verdict(values: dict[str, list[float]], direction) -> tuple[bool, str]:
    """The sanity rule on the columns' means; (passed, why not)."""
    from flashctl.directions import badness

    if direction is None:
        return False, "no direction"
    bad = {c: badness(statistics.fmean(v), direction) for c, v in values.items() if v}
    margin = TIE * max(1.0, abs(bad["real"]))
    beaten = [c for c, b in bad.items() if c != "real" and b <= bad["real"] + margin]
    fooled = [c for c in BAD if bad[c] <= bad["other person"]]
    reasons = ([f"real not first ({', '.join(beaten)})"] if beaten else []) + (
        [f"{', '.join(fooled)} not below other person"] if fooled else [])
    return not reasons, "; ".join(reasons)


def table(columns: list[str], scores: dict[str, dict[str, list[float]]], directions: dict[str, object]) -> str:
    from flashctl.directions import ARROWS

    def cell(values: list[float]) -> str:
        if not values:
            return "–"
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):.3g} ± {spread:.2g}"

    lines = ["| key | better | " + " | ".join(columns) + " | rule |", "|---|:-:|" + "---:|" * len(columns) + "---|"]
    for key, values in scores.items():
        passed, why = verdict(values, directions[key])
        lines.append(f"| {key} | {ARROWS[directions[key]]} | " + " | ".join(cell(values[c]) for c in columns)
                     + f" | {'PASS' if passed else 'FAIL: ' + why} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from flashctl_synth.actions import ACTIONS

    torch.set_num_threads(args.threads)
    metrics = build_metrics(args.metrics)
    started = time.perf_counter()
    columns, scores, directions = collect(metrics, args)
    command = "python experiments/metric_sanity.py " + " ".join(argv if argv is not None else sys.argv[1:])
    markdown = "\n\n".join([
        f"`{command.strip()}`: {args.clips} held-out people x {len(ACTIONS)} actions, {args.frames} frames at "
        f"{args.size} px, noise std {args.noise}, flicker gain std {args.flicker}; "
        f"{time.perf_counter() - started:.0f} s on {args.threads} thread(s). "
        "Mean ± std over the clips; other-action columns: that action scored against each other action's real clip.",
        table(columns, scores, directions)]) + "\n"
    print(markdown)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown, encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
