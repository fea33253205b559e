"""Build the small eval report and comparison shown in docs/reports.md (synthetic clips, stand-in animators).

Usage (from the repository root): .venv/bin/python docs/images/report_screenshots.py OUT_DIR
"""
import sys

import numpy as np
from pathlib import Path

sys.path.insert(0, "tests")
import test_report as kit  # noqa: E402

kit.FRAMES, kit.SIZE = 12, 48  # bigger than the unit tests, still tiny
from flashctl.config import FlashConfig  # noqa: E402
from flashctl.pipeline.evaluate import evaluate  # noqa: E402
from flashctl.pipeline.report import compare, write_comparison, write_report  # noqa: E402
from flashctl.plugins import host_for  # noqa: E402



class Sliding(kit.Drifting):
    """Slides the reference image right one pixel a frame: moves, a little like the clip."""

    def render(self, image, seed):
        video = np.stack([np.roll(image, t, axis=1) for t in range(kit.FRAMES)])  # (F, H, W, 3)
        self.rendered.append(video)
        return video


root = Path(sys.argv[1])
library = kit.make_library(root / "motions", ("wave", "squat"))
config = FlashConfig.model_validate({"eval": {"metrics": ["motion-track", "transition", "smoothness", "motion-fidelity",
                                                           "first-frame"]}, "prepare": {"size": kit.SIZE}})
host = host_for(config)
results = []
for action, animator in (("wave", kit.Drifting()), ("squat", Sliding())):
    result = evaluate(config, library, action, host, animator=animator, out_dir=root / "out" / action)
    write_report(result, result.path.parent)
    results.append(result)
write_comparison(compare(results, host.registry), root / "out")
print(root / "out")
