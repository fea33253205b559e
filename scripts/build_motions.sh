#!/usr/bin/env bash
# Rebuild the shipped demo motion library in motions/ on the embedded default (flashctl.toml: the tiny
# pretrained base and its [train] recipe). The demo actions are ones the base never saw (its provenance.json
# lists the four it was pretrained on). Per action: 16 synthetic train-pool clips -> prepare -> train -> eval
# on 8 held-out people (their real continuation is the reference) -> preview.gif and report.
#
#   bash scripts/build_motions.sh [ACTION ...]      default: bow jump side_bend soccer_shot
#
# SYNTH_FLAGS (default --canonical: everyone faces right) go to `flashctl synth` for both clip sets. An
# action that already exists is replaced (its old version is deleted first). About 15 minutes per action on
# one CPU core; set JOBS=2 to build two actions at a time on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
export PATH="$PWD/.venv/bin:$PATH"
unset FLASHCTL_CONFIG  # the project's own flashctl.toml
actions=("$@")
[ ${#actions[@]} -gt 0 ] || actions=(bow jump side_bend soccer_shot)
synth_flags=${SYNTH_FLAGS---canonical}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

build() {
  local a=$1 prompt
  prompt=$(python -c "from flashctl_synth.actions import ACTIONS; print(ACTIONS['$a'].prompt)")
  flashctl synth "$a" --clips 16 --out "$work/$a" --seed 0 $synth_flags >/dev/null
  flashctl synth "$a" --clips 8 --out "$work/heldout-$a" --appearance-split heldout --seed 100 $synth_flags >/dev/null
  flashctl motions rm "$a" --yes >/dev/null 2>&1 || true
  flashctl prepare "$a" --clips "$work/$a" --prompt "$prompt" >/dev/null
  # motion.toml is the human-written manifest: say where these clips came from and under what terms
  sed -i -e "s|^source = \".*/\($a\)_train_0*\([0-9][0-9]*\)\.mp4\"|source = \"flashctl synth $a --seed \2 (train pool)\"|" \
         -e 's|^license = ""|license = "CC0-1.0 (rendered by flashctl synth)"|' \
         -e 's|^consent = ""|consent = "not needed: a synthetic person"|' \
         -e "s|^description = \"\"|description = \"Demo motion: 16 synthetic clips of an action the shipped tiny base never saw\"|" \
         "motions/$a/motion.toml"
  flashctl train "$a" >/dev/null
  (cd "$work" && flashctl --config "$repo/flashctl.toml" eval "$a" --clips "heldout-$a" \
      --set 'eval.metrics=["motion-track","transition","smoothness","motion-fidelity","keypoints"]' >/dev/null)
  echo "built $a: motions/$a (preview.gif, eval/report.html)"
}

pids=()
for a in "${actions[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "${JOBS:-1}" ]; do sleep 1; done
  build "$a" &
  pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
[ "$failed" -eq 0 ] || { echo "error: an action failed to build (its error is above); rerun with just that action" >&2; exit 1; }
flashctl motions verify
