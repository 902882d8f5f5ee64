#!/usr/bin/env bash
# Device call 4: the trainings that take CPU hours here, side by side on one GPU, each stopping by
# --max-minutes with a checkpoint (so a shorter lease leaves a run to --resume), then packed into
# $OUT. Usage: scripts/device/train_all.sh [MAX_MINUTES]
#   afd-v3                the AFD v3 recipe (issue 14), 5400 steps of 16
#   v3-ablation-*         one change at a time against v3's recipe, 1800 steps each
#   restorer-v2a / v2b    the compact restorer's architecture, and a 3x wider-deeper one (5% of
#                         SwinIR-M's multiply-adds), on BSDS500 + imagen photos (issue 15)
source scripts/device/env.sh
minutes=${1:-6.5}
data=../shared/data
mkdir -p runs
afd_common=(--data $data/imagenet-samples $data/photos-train --val $data/imagenet-val-100
            --val-qualities 5,10,original --no-progress --device cuda --threads 2 --max-minutes $minutes)
afd train "${afd_common[@]}" --steps 5400 --workers 5 --name afd-v3 --out runs/afd-v3 > runs/afd-v3.log 2>&1 &
ablation() {  # name, extra flags...
  local name=$1; shift
  afd train "${afd_common[@]}" --steps 1800 --workers 2 "$@" --out runs/v3-ablation-$name \
    > runs/v3-ablation-$name.log 2>&1 &
}
ablation reference
ablation half-res-fe --fe-downscale 2
ablation width-12 --width 12
ablation match-blocks2 --match-later blocks.2
ablation global-gate --gate global
restorer_common=(--data $data/restorer-photos --batch-size 32 --lr 5e-4 --warmup 200 --no-progress
                 --device cuda --threads 2 --workers 2 --val-images 0 --max-minutes $minutes)
afd train-restorer "${restorer_common[@]}" --steps 4000 --patch 64 --embed-dim 48 --depths 3 3 --heads 4 4 \
  --name v2a --out runs/restorer-v2a > runs/restorer-v2a.log 2>&1 &
afd train-restorer "${restorer_common[@]}" --steps 3000 --patch 96 --embed-dim 64 --depths 4 4 4 --heads 4 4 4 \
  --name v2b --out runs/restorer-v2b > runs/restorer-v2b.log 2>&1 &
while [ -n "$(jobs -r)" ]; do
  sleep 30
  for log in runs/*/train_log.jsonl; do echo "$log $(tail -1 $log | cut -c1-90)"; done
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
done
tail -n 4 runs/*.log
tar czf $OUT/afd-runs.tgz --exclude='*.log' runs/afd-v3 runs/v3-ablation-*
tar czf $OUT/restorer-runs.tgz runs/restorer-v2*
tar czf $OUT/logs.tgz runs/*.log
ls -la $OUT
