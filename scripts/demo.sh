#!/usr/bin/env bash
# The main job end to end on the CPU, nothing downloaded: synthesise 8 clips of a jumping jack,
# learn the action (full FLASH: MAM + DED), animate held-out people and examples/*.png, score the result.
# The tiny base is randomly initialised until a pretrained one ships: expect the pipeline, not a dance.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" FLASHCTL_CONFIG="$PWD/examples/demo.toml"
rm -rf .demo && mkdir -p .demo

flashctl synth jumping_jack --clips 8 --out .demo/clips --seed 0 >/dev/null
flashctl synth jumping_jack --clips 2 --out .demo/heldout --appearance-split heldout --seed 100 >/dev/null
flashctl synth jumping_jack --clips 2 --out .demo/refs --appearance-split heldout --seed 100 --reference-only >/dev/null
flashctl prepare jumping_jack --clips .demo/clips --prompt "a person doing jumping jacks" >/dev/null
flashctl train jumping_jack >/dev/null
flashctl motions list
flashctl animate --action jumping_jack --image .demo/refs --image examples
flashctl eval jumping_jack --clips .demo/heldout   # held-out people, scored against their real continuation
echo "outputs in .demo/outputs (mp4, gif, contact sheets); report in .demo/motions/jumping_jack/eval/report.html" >&2
