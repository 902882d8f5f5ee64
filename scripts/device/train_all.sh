#!/usr/bin/env bash
# Device call 4: the trainings that take CPU hours here, side by side on one GPU, each stopping by
# --max-minutes with a checkpoint (so a shorter lease leaves a run to --resume), then packed into
# $OUT. Usage: scripts/device/train_all.sh [MAX_MINUTES]
#   afd-v3-long           the AFD v3 recipe (issue 14) at its planned 5400 steps of 16
#   v3-ablation-*         one change at a time against v3's recipe (scripts/ablations_v3.sh)
#   restorer-v2a / v2b    train_restorers.sh: the compact restorer's architecture, and a 3x
#                         wider-deeper one (5% of SwinIR-M's multiply-adds), on BSDS500 + imagen
source scripts/device/env.sh
minutes=${1:-6.5}
data=../shared/data
mkdir -p runs
afd_common=(--data $data/imagenet-samples $data/photos-train --val $data/imagenet-val-100
            --val-qualities 5,10,original --no-progress --device cuda --threads 2 --max-minutes $minutes)
long_resume=(); [ -f runs/afd-v3-long/checkpoint.pt ] && long_resume=(--resume)  # a later lease continues it
afd train "${afd_common[@]}" --steps 5400 --workers 5 --name afd-v3-long --out runs/afd-v3-long "${long_resume[@]}" \
  >> runs/afd-v3-long.log 2>&1 &
# The ablations exactly as scripts/ablations_v3.sh trains them on the CPU (same folders, 1200 steps):
# a run begun here continues there and the other way round; the finished ones are skipped.
LANES=4 DEVICE=cuda THREADS=1 WORKERS=2 VAL=$data/imagenet-val-100 AFDSERVE="python3 -m afdserve.cli" \
  bash scripts/ablations_v3.sh 1200 "$minutes" > runs/ablations.log 2>&1 &
# The restorers (and the decode check) as train_restorers.sh runs them, beside the AFD runs.
bash scripts/device/train_restorers.sh "$minutes" > runs/restorers.log 2>&1 &
while [ -n "$(jobs -r)" ]; do
  sleep 30
  for log in runs/*/train_log.jsonl; do echo "$log $(tail -1 $log | cut -c1-90)"; done
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
done
tail -n 4 runs/*.log
tar czf $OUT/afd-runs.tgz --exclude="*.log" runs/afd-v3-long runs/v3-ablation-*
tar czf $OUT/logs.tgz runs/*.log
ls -la $OUT
