#!/usr/bin/env bash
# Set up flashctl in ./.venv: ffmpeg (Debian) if missing, CPU torch 2.13.0, then the package with
# pinned versions. Safe to run again. Needs only the package registries (PyPI, Debian).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v ffmpeg >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null
  else
    echo "ffmpeg not found and apt-get unavailable: flashctl will use the imageio-ffmpeg wheel" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# torch first and pinned: a bare `torch` pulls gigabytes of CUDA packages.
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e ".[test,report,ffmpeg]"

# Guard: torchvision (always a CUDA build here) breaks diffusers; torch must stay the CPU pin.
.venv/bin/python - <<'PY'
import importlib.util, torch
assert torch.__version__.startswith("2.13.0"), f"torch {torch.__version__} replaced the pinned 2.13.0"
assert importlib.util.find_spec("torchvision") is None, "torchvision crept into the environment"
PY
echo "flashctl ready: .venv/bin/flashctl" >&2
