"""How fast `flashctl --help` and `flashctl plugins` answer (target: under a second each).

Run: .venv/bin/python bench/cli_startup.py [--repeat 5]
Prints the median wall time of each command over fresh processes, and whether torch was imported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = [["--help"], ["plugins"], ["plugins", "--json"], ["config", "show"]]
PROBE = "import sys; from flashctl.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n" \
        "sys.stderr.write('TORCH=' + str('torch' in sys.modules))"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    exe = Path(sys.executable).with_name("flashctl")
    rows = []
    for argv in COMMANDS:
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            subprocess.run([str(exe), *argv], capture_output=True, check=True)
            times.append(time.perf_counter() - t0)
        probe = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True)
        rows.append({"command": "flashctl " + " ".join(argv), "median_s": round(statistics.median(times), 3),
                     "target_s": 1.0, "ratio": round(statistics.median(times) / 1.0, 2),
                     "imports_torch": probe.stderr.strip().endswith("True")})
    width = max(len(r["command"]) for r in rows)
    print(f"{'command':<{width}}  median_s  ratio_to_1s  imports_torch")
    for r in rows:
        print(f"{r['command']:<{width}}  {r['median_s']:8.3f}  {r['ratio']:11.2f}  {r['imports_torch']}")
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/cli_startup.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
