#!/usr/bin/env bash
# The issue-3 ablations: the default recipe against one change at a time, each a short run at the
# same budget, validated on the held-out split (full-image JPEG q10 and the stored files).
# Two runs at a time with one torch thread each: on 2 cores that beats one 2-thread run, and
# two 2-thread runs side by side collapse.
# Usage: scripts/ablations.sh [STEPS]   (results: runs/ablation-*/afd_module.json, then
#        .venv/bin/afdserve evaluate --run runs/ablation-* --quality original,10 --protocols P1,P2)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-150}
common=(--loss both --width 8 --steps "$steps" --batch-size 16 --high-quality-share 0.2
        --high-quality-range 75 100 --input-sized-share 0.3 --threads 1 --workers 1
        --val-qualities 10,original --no-progress)
run() {  # name, extra flags...
  local name=$1; shift
  .venv/bin/afdserve train "${common[@]}" "$@" --out "runs/ablation-$name" \
    > "runs/ablation-$name.log" 2>&1
}
run reference & run global-gate --gate global & wait
run resized-dct --dct-source resized & run no-quality --no-quality & wait
run after-blocks1 --insert-after blocks.1 & wait
echo "done: runs/ablation-*"
