#!/usr/bin/env bash
# The main job on the embedded default, nothing downloaded: each shipped motion (motions/: actions the tiny
# pretrained base never saw, each learned from 16 synthetic clips) animates every image in examples/.
# Writes outputs/<action>/<image>.mp4, .gif and _sheet.png (16 frames, 64 px).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
unset FLASHCTL_CONFIG  # the project's flashctl.toml: library motions/, base = "shipped"
flashctl motions list
for action in $(flashctl motions list --json | python -c "import json, sys; print(*[m['name'] for m in json.load(sys.stdin)])"); do
  flashctl animate --action "$action" --image examples --out "outputs/$action" --format mp4 --format gif --overwrite
done
echo "outputs in outputs/<action>/ (mp4, gif, contact sheets)" >&2
