#!/usr/bin/env bash
# The AFD v3 ablations (issue 14): with nine times the photos, the v1 recipe against one change at
# a time, each at the same budget, trained on ../shared/data/imagenet-samples (its training split)
# and photos-train, validated on imagenet-val-1000 (never trained on).
# Two runs at a time with one torch thread each (on 2 cores that beats one 2-thread run). Safe to
# stop and start again: a finished run is skipped, an interrupted one resumes from its checkpoint.
# Usage: scripts/ablations_v3.sh [STEPS] [MAX_MINUTES_PER_RUN]   (minutes of this invocation)
#   ONLY="reference width-12" scripts/ablations_v3.sh ...   runs only those (where a core is free)
#   then: .venv/bin/afdserve evaluate --run runs/v3-ablation-reference runs/v3-ablation-*/ \
#           --data ../shared/data/imagenet-val-1000 --quality original,5,10 --out results/afd-v3-ablations --resume
#   (the reference first: comparison.md then gives each variant against it, photo by photo)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-1200}
minutes=${2:-0}
data=../shared/data
common=(--data "$data/imagenet-samples" "$data/photos-train" --val "$data/imagenet-val-1000"
        --loss both --width 8 --steps "$steps" --batch-size 16 --high-quality-share 0.2
        --high-quality-range 75 100 --input-sized-share 0.3 --threads 1 --workers 1
        --val-qualities 5,10,original --no-progress --max-minutes "$minutes")
run() {  # name, extra flags...
  local name=$1; shift
  local out="runs/v3-ablation-$name"
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
  if [ -f "$out/afd_module.json" ] && grep -q '"completed": true' "$out/afd_module.json"; then
    echo "$name: done"; return
  fi
  local resume=()
  [ -f "$out/checkpoint.pt" ] && resume=(--resume)
  .venv/bin/afdserve train "${common[@]}" "$@" --out "$out" "${resume[@]}" >> "$out.log" 2>&1
}
mkdir -p runs
# Two lanes, one per core, each running its runs in turn, so that a core whose run ends early goes
# on to the next instead of waiting for the other; the order is the order of interest.
lane_a() { run reference; run width-12 --width 12; run kd-only --loss kd; run global-gate --gate global; }
lane_b() { run half-res-fe --fe-downscale 2; run match-blocks2 --match-later blocks.2
           run feature-only --loss feature; run no-quality --no-quality; }
lane_a & lane_b & wait
echo "done: runs/v3-ablation-*"
