"""One table (markdown, mean ± sample std over seeds) from several ablation folders' runs.jsonl.

    python experiments/ablation_table.py bench/results/soft-diverse-bow bench/results/soft-narrow-bow \
        [bench/results/lam05-narrow-bow="#5, lambda 0.5"] [bench/data/demo-jump.jsonl]

A folder given as ``FOLDER=LABEL`` shows its rows under that label (a variant run with ``--set``;
``{row}`` in the label stands for each record's row, so ``FOLDER="{row}, keep"`` keeps #5 and #6 apart); rows
are grouped by (action, held-out split, training set, row) across folders, so seeds trained in different folders pool.
A ``.jsonl`` path stands for a folder's ``runs.jsonl`` (the copies kept in ``bench/data/``).

The last column is issue 10's bar for a trained row: its pose-correlation gap over the same action's base
alone, in units of twice the larger of the two seed spreads (above 1 = learned by more than twice the
spread; empty with fewer than 2 seeds on either side).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # the sibling experiment, also when loaded by path
from ablation import load_runs  # noqa: E402

POSE = "keypoints/correlation"
COLUMNS = [("motion-track/correlation", "motion-track corr ↑"), (POSE, "pose corr ↑"),
           ("keypoints/gain", "pose gain →1"), ("recognised/accuracy", "recognised ↑"),
           ("heldout-loss/structure", "held-out loss vs base ↓"), ("train-loss/structure", "train loss vs base ↓")]
UNTRAINED = ("frozen", "base")


def cell(values: list[float]) -> str:
    if not values:
        return ""
    return f"{statistics.fmean(values):.3f}" + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")


def bar(records: list[dict], base: list[dict]) -> str:
    """Pose-correlation gap over the base alone / (2 x the larger seed spread); "" when it cannot be told."""
    mine, theirs = ([r["summary"][POSE] for r in rs if r.get("summary", {}).get(POSE) is not None]
                    for rs in (records, base))
    if len(mine) < 2 or len(theirs) < 2:
        return ""
    spread = max(statistics.stdev(mine), statistics.stdev(theirs))
    gap = statistics.fmean(mine) - statistics.fmean(theirs)
    return f"{gap / (2 * spread):+.2f}" if spread > 0 else ("inf" if gap > 0 else "-inf")


def scored_on(record: dict) -> str:
    """The action, and the held-out people it was scored on when they are not the ``heldout`` pool."""
    split = record.get("heldout_split", "heldout")
    return record["action"] + ("" if split == "heldout" else f" ({split} people)")


def table(folders: list[tuple[Path, str | None]]) -> str:
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for folder, label in folders:
        for record in load_runs(folder):
            if "error" not in record:
                set_name = "-" if record["row"] in UNTRAINED else record["appearance"]
                row = label.replace("{row}", record["row"]) if label else record["row"]
                groups[(scored_on(record), set_name, row)].append(record)
    lines = ["| action | training set | row | seeds | " + " | ".join(title for _, title in COLUMNS)
             + " | pose gap / 2 spreads ↑ |", "|---|---|---|---|" + "---:|" * (len(COLUMNS) + 1)]
    order = {"frozen": 0, "base": 1}
    for (action, set_name, row), records in sorted(groups.items(), key=lambda kv: (
            kv[0][0], kv[0][1] != "-", kv[0][1], order.get(kv[0][2], 2), kv[0][2])):
        seeds = ",".join(str(r["seed"]) for r in sorted(records, key=lambda r: r["seed"]))
        cells = [cell([r["summary"][key] for r in records if r.get("summary", {}).get(key) is not None])
                 for key, _ in COLUMNS]
        verdict = "" if row in UNTRAINED else bar(records, groups.get((action, "-", "base"), []))
        lines.append(f"| {action} | {set_name} | {row} | {seeds} | " + " | ".join(cells) + f" | {verdict} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", help="ablation folders or runs.jsonl copies (PATH or PATH=LABEL)")
    args = p.parse_args()
    folders = [(Path(f.partition("=")[0]), f.partition("=")[2] or None) for f in args.folders]
    print(table(folders))


if __name__ == "__main__":
    main()
