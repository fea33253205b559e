#!/usr/bin/env bash
# Pretrain a broader-prior tiny AnimateDiff base on the lent GPU machine in one command (docs/device.md):
#
#   device run: command "bash scripts/device/pretrain_base.sh", carry [".whl"], timeout_s 600
#
# after `bash scripts/device/wheels.sh` here. Budgets and sizes are env vars (defaults below), e.g.
# "UNET_MINUTES=3 bash scripts/device/pretrain_base.sh". Back in $OUT: tiny-base-wide.tar.gz (final/),
# provenance.json, train.log, the last U-Net and VAE sample sheets, log.txt (this output).
# CPU dry run here: DEVICE=cpu PYTHON=.venv/bin/python OUT=/tmp/kit-out BASE_OUT=/tmp/kit-base \
#   VAE_MINUTES=0.1 UNET_MINUTES=0.2 BATCH=2 CLIPS=3 SAMPLE_STEPS=2 bash scripts/device/pretrain_base.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?set OUT to the folder the files go to (the device tool sets it)}"
if [ -z "${KIT_TEED:-}" ]; then  # everything this prints also goes to $OUT/log.txt
    mkdir -p "$OUT"
    KIT_TEED=1 bash "$0" "$@" 2>&1 | tee "$OUT/log.txt"
    exit "${PIPESTATUS[0]}"
fi

DEVICE=${DEVICE:-cuda} PYTHON=${PYTHON:-python3} BASE_OUT=${BASE_OUT:-/tmp/base}
VAE_MINUTES=${VAE_MINUTES:-2} DECODER_MINUTES=${DECODER_MINUTES:-0} UNET_MINUTES=${UNET_MINUTES:-4.5}
BATCH=${BATCH:-32} CLIPS=${CLIPS:-200} SAMPLE_STEPS=${SAMPLE_STEPS:-20} APPEARANCE=${APPEARANCE:-wide}
ACTIONS=${ACTIONS:-jumping_jack,squat,arm_wave,kick,wander_side,wander_front}
export PYTHONUNBUFFERED=1
began=$(date +%s)
stamp() { echo "[kit +$(( $(date +%s) - began ))s] $*"; }

if ! "$PYTHON" -c "import diffusers, pydantic" 2>/dev/null; then
    ls .whl/*.whl >/dev/null 2>&1 || { echo "error: diffusers/pydantic missing and no .whl/; run bash scripts/device/wheels.sh here and carry [\".whl\"]" >&2; exit 1; }
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=$PWD:$PWD/plugins:/tmp/site  # the travelling source first; the wheel adds the entry points
    stamp "installed $(ls .whl | wc -l) wheels into /tmp/site"
fi
if [ "$DEVICE" = cuda ]; then
    "$PYTHON" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null \
        || { echo "error: torch sees no CUDA device here; run on the GPU machine, or DEVICE=cpu for a dry run" >&2; exit 1; }
fi
"$PYTHON" - <<'EOF'
import diffusers, pydantic, torch, transformers
from flashctl.plugins import build_host
host = build_host()
bad = [f"{f.name}: {f.error}" for f in host.failures if f.name in ("animatediff", "synth")]
assert not bad, "plugins failed to load: " + "; ".join(bad)
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
print(f"torch {torch.__version__} ({gpu}), diffusers {diffusers.__version__}, transformers {transformers.__version__}, "
      f"pydantic {pydantic.VERSION}; plugins {', '.join(p.name for p in host.plugins)}")
EOF

[ ! -e "$BASE_OUT" ] || [ -f "$BASE_OUT/train.log" ] \
    || { echo "error: BASE_OUT=$BASE_OUT exists and is no pretraining folder; choose an empty or new folder" >&2; exit 1; }
rm -rf "$BASE_OUT"
stages=(--vae-minutes "$VAE_MINUTES" --unet-minutes "$UNET_MINUTES")
if [ "$DECODER_MINUTES" != 0 ]; then stages+=(--decoder-steps 1000000 --decoder-minutes "$DECODER_MINUTES"); fi
stamp "pretraining: vae ${VAE_MINUTES} min, decoder ${DECODER_MINUTES} min, unet ${UNET_MINUTES} min, batch $BATCH"
"$PYTHON" scripts/pretrain_base.py --out "$BASE_OUT" --device "$DEVICE" --stage all --actions "$ACTIONS" \
    --appearance "$APPEARANCE" --batch "$BATCH" --clips-per-action "$CLIPS" --vae-steps 1000000 --steps 1000000 \
    --render-workers "${RENDER_WORKERS:-$(nproc)}" \
    "${stages[@]}" --checkpoint-every 1000000 --sample-every 1000000 --sample-steps "$SAMPLE_STEPS" --log-every 100
stamp "pretraining done"

tar -czf "$OUT/tiny-base-wide.tar.gz" -C "$BASE_OUT" final
cp "$BASE_OUT/final/provenance.json" "$BASE_OUT/train.log" "$OUT/"
for prefix in step vae-step decoder-step; do  # the last sheet of each stage that ran
    last=$(ls -v "$BASE_OUT/samples" | grep -E "^$prefix-[0-9]+\.png$" | tail -1 || true)
    [ -z "$last" ] || cp "$BASE_OUT/samples/$last" "$OUT/"
done
"$PYTHON" - "$OUT" "$BASE_OUT" <<'EOF'
import json, sys
from pathlib import Path
out, base = Path(sys.argv[1]), Path(sys.argv[2])
p = json.loads((out / "provenance.json").read_text())
for stage in ("vae", "decoder", "unet"):
    r = p[stage]
    rate = f"{r['seconds'] / r['steps']:.3f} s/step" if r["steps"] else "not run"
    print(f"{stage}: {r['steps']} steps in {r['seconds']:.0f} s ({rate}), final loss {r['final_loss']}")
l1 = [line.split()[-1] for line in (base / "train.log").read_text().splitlines() if "held-out L1" in line]
print(f"VAE held-out L1 (last): {l1[-1] if l1 else 'none'}; machine {p['machine']}")
limit = 16 * 2**20
for f in sorted(out.iterdir()):
    flag = "  OVER the 16 MiB a file may take back" if f.stat().st_size > limit else ""
    print(f"  {f.stat().st_size / 2**20:8.2f} MB  {f.name}{flag}")
assert len(list(out.iterdir())) <= 8, "more than 8 files in OUT: the device tool returns 8"
EOF
stamp "done"
