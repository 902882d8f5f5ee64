#!/usr/bin/env bash
# The AFD v3 ablations (issue 14): with nine times the photos, the v1 recipe against one change at
# a time, each at the same budget, trained on ../shared/data/imagenet-samples (its training split)
# and photos-train, validated on imagenet-val-1000 (never trained on).
# On the CPU, two lanes of runs with one torch thread each (on 2 cores that beats one 2-thread
# run). Safe to stop and start again: a finished run is skipped, an interrupted one resumes from
# its checkpoint, also on another machine (scripts/device/train_all.sh runs this on a GPU).
# Usage: scripts/ablations_v3.sh [STEPS] [MAX_MINUTES_PER_RUN]   (minutes of this invocation)
#   ONLY="reference width-12" scripts/ablations_v3.sh ...   runs only those (where a core is free)
#   LANES=8 DEVICE=cuda THREADS=2 WORKERS=2 VAL=DIR AFDSERVE="python3 -m afdserve.cli" ...   elsewhere
#   VAL_QUALITIES= ...   skips the run's own validation (5 CPU minutes a run): evaluate judges it anyway
#   then: .venv/bin/afdserve evaluate --run runs/v3-ablation-reference runs/v3-ablation-*/ \
#           --data ../shared/data/imagenet-val-1000 --quality original,5,10 --out results/afd-v3-ablations --resume
#   (the reference first: comparison.md then gives each variant against it, photo by photo)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-1200}
minutes=${2:-0}
data=../shared/data
read -r -a afdserve <<< "${AFDSERVE:-.venv/bin/afdserve}"
common=(--data "$data/imagenet-samples" "$data/photos-train" --val "${VAL:-$data/imagenet-val-1000}"
        --loss both --width 8 --steps "$steps" --batch-size 16 --high-quality-share 0.2
        --high-quality-range 75 100 --input-sized-share 0.3 --device "${DEVICE:-cpu}"
        --threads "${THREADS:-1}" --workers "${WORKERS:-1}"
        --val-qualities "${VAL_QUALITIES-5,10,original}" --no-progress --max-minutes "$minutes")
run() {  # name, extra flags...
  local name=$1; shift
  local out="runs/v3-ablation-$name"
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
  if [ -f "$out/afd_module.json" ] && grep -q '"completed": true' "$out/afd_module.json"; then
    echo "$name: done"; return
  fi
  local resume=()
  [ -f "$out/checkpoint.pt" ] && resume=(--resume)
  "${afdserve[@]}" train "${common[@]}" "$@" --out "$out" "${resume[@]}" >> "$out.log" 2>&1
}
# In the order of interest; lane i takes runs i, i + LANES, ...: each lane runs its runs in turn,
# so a lane whose run ends early goes on to its next instead of waiting for the others.
variants=("reference" "half-res-fe --fe-downscale 2" "width-12 --width 12" "match-blocks2 --match-later blocks.2"
          "kd-only --loss kd" "feature-only --loss feature" "global-gate --gate global" "no-quality --no-quality"
          "lr-3e-3 --lr 0.003" "quality-5-20 --quality-range 5 20")
lanes=${LANES:-2}
lane() {
  local i
  for ((i = $1; i < ${#variants[@]}; i += lanes)); do
    # shellcheck disable=SC2086  # a variant is its name and its flags, split on spaces
    run ${variants[$i]}
  done
}
mkdir -p runs
for ((l = 0; l < lanes; l++)); do lane "$l" & done
wait
echo "done: runs/v3-ablation-*"
