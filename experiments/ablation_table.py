"""One table (markdown, mean ± sample std over seeds) from several ablation folders' runs.jsonl.

    python experiments/ablation_table.py bench/results/soft-diverse-bow bench/results/soft-narrow-bow \
        [bench/results/lam05-narrow-bow="#5, lambda 0.5"]

A folder given as ``FOLDER=LABEL`` shows its rows under that label (a variant run with ``--set``); rows
are grouped by (training set, row) across folders, so seeds trained in different folders pool.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # the sibling experiment, also when loaded by path
from ablation import load_runs  # noqa: E402

COLUMNS = [("motion-track/correlation", "motion-track corr ↑"), ("keypoints/correlation", "pose corr ↑"),
           ("keypoints/gain", "pose gain →1"), ("recognised/accuracy", "recognised ↑"),
           ("heldout-loss/structure", "held-out loss vs base ↓"), ("train-loss/structure", "train loss vs base ↓")]
UNTRAINED = ("frozen", "base")


def cell(values: list[float]) -> str:
    if not values:
        return ""
    return f"{statistics.fmean(values):.3f}" + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")


def table(folders: list[tuple[Path, str | None]]) -> str:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for folder, label in folders:
        for record in load_runs(folder):
            if "error" not in record:
                set_name = "-" if record["row"] in UNTRAINED else record["appearance"]
                groups[(set_name, label or record["row"])].append(record)
    lines = ["| training set | row | seeds | " + " | ".join(title for _, title in COLUMNS) + " |",
             "|---|---|---|" + "---:|" * len(COLUMNS)]
    order = {"frozen": 0, "base": 1}
    for (set_name, row), records in sorted(groups.items(), key=lambda kv: (kv[0][0] != "-", kv[0][0],
                                                                            order.get(kv[0][1], 2), kv[0][1])):
        seeds = ",".join(str(r["seed"]) for r in sorted(records, key=lambda r: r["seed"]))
        cells = [cell([r["summary"][key] for r in records if r.get("summary", {}).get(key) is not None])
                 for key, _ in COLUMNS]
        lines.append(f"| {set_name} | {row} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", help="ablation folders (FOLDER or FOLDER=LABEL)")
    args = p.parse_args()
    folders = [(Path(f.partition("=")[0]), f.partition("=")[2] or None) for f in args.folders]
    print(table(folders))


if __name__ == "__main__":
    main()
