#!/usr/bin/env bash
# Fill .whl/ with what the GPU machine (device tool, kind nvidia-h200) lacks to run flashctl: run HERE,
# where PyPI is reachable, before `bash scripts/device/pretrain_base.sh` is sent with carry [".whl"].
#
#   bash scripts/device/wheels.sh        # rebuilds .whl/ from scratch
#
# The machine has python3 3.12 with torch 2.11, accelerate, huggingface-hub, safetensors, tokenizers,
# pluggy, typer, rich, einops, numpy, pillow (/work/.library/device/KINDS.md) but no diffusers, no pydantic,
# no importlib_metadata, and transformers 5.17 (pyproject asks >= 5.20). Carried, at constraints.txt's pins:
#   diffusers (+ importlib_metadata, lazy-importer, zipp); pydantic (+ pydantic-core cp312, annotated-types,
#   typing-inspection, typing_extensions >= 4.16); transformers (+ regex >= 2025.10.22, which it checks at
#   import) and peft at its pin to match it (LoRA training there); flashctl's own wheel (its dist-info holds the
#   plugins' entry points; pretrain_base.sh puts the travelling source tree ahead of it on PYTHONPATH).
# Not carried: torch (2.11 there; never carry it or torchvision), av / ffmpeg-python (imported lazily, only
# for video files, which pretraining never touches).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
PACKAGES=(diffusers importlib_metadata lazy-importer zipp pydantic pydantic_core annotated-types typing-inspection
          typing_extensions transformers regex peft)

grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
rm -rf .whl && mkdir .whl

pins=()
for name in "${PACKAGES[@]}"; do
    key=$(echo "$name" | tr 'A-Z_' 'a-z-')
    pin=$(grep -i -E "^${name//[-_]/[-_]}==" constraints.txt || true)
    [ -n "$pin" ] || { echo "error: constraints.txt pins no version of $name; add one (e.g. $key==X.Y.Z)" >&2; exit 1; }
    pins+=("$pin")
done

python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${pins[@]}" 2> >(grep -v "is ignored" >&2)
$PY -m pip wheel -q --no-deps --no-build-isolation -w .whl . >/dev/null

flashctl_whl=$(ls .whl/flashctl-*.whl)
listing=$(unzip -l "$flashctl_whl")
for must in flashctl/cli/__init__.py flashctl_animatediff/pretrain.py flashctl_synth/render.py \
            flashctl_animatediff/weights/tiny-base/unet/ flashctl_synth/weights/ entry_points.txt; do
    grep -q "$must" <<<"$listing" || { echo "error: $flashctl_whl lacks $must (pyproject packages/package-data)" >&2; exit 1; }
done
entry_points=$(unzip -p "$flashctl_whl" '*/entry_points.txt')
for plugin in animatediff synth; do
    grep -q "^$plugin = flashctl_$plugin" <<<"$entry_points" \
        || { echo "error: $flashctl_whl registers no '$plugin' plugin entry point" >&2; exit 1; }
done
if ls .whl | grep -i -E '^(torch|torchvision|nvidia)[-_]'; then
    echo "error: a torch/torchvision/nvidia wheel was pulled into .whl; the machine has torch already" >&2; exit 1
fi
dupes=$(ls .whl | sed -E 's/-[0-9].*//' | tr 'A-Z-' 'a-z_' | sort | uniq -d)
[ -z "$dupes" ] || { echo "error: two versions of $dupes in .whl stop the install there" >&2; exit 1; }

ls -l .whl | awk 'NR > 1 {printf "%8.1f MB  %s\n", $5 / 2^20, $9}'
tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- | tail -1 | cut -f1)
wheels=$(du -cb .whl | tail -1 | cut -f1)
awk -v t="$tree" -v w="$wheels" 'BEGIN {
    printf "wheels %.1f MB + travelling tree %.1f MB = %.1f MB of the 64 MiB a run may carry\n", w/2^20, t/2^20, (t+w)/2^20
    if (t + w > 56 * 2^20) { print "error: over 56 MB: leave room for the limit" > "/dev/stderr"; exit 1 } }'
