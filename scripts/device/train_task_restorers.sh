#!/usr/bin/env bash
# Issue 16 on a lent GPU: the task-aware restorer's lambda sweep. Each run fine-tunes the shipped
# restorer through the frozen Lite0 (KL to its answer on the clean crop, plus cross-entropy on the
# labelled imagenet-samples photos) on 224x224 classifier crops, JPEG quality 5-40; lambda 0 is
# the pixel loss alone on the same samples, the control. Needs every chunk (pack_data.py).
# Usage: scripts/device/train_task_restorers.sh [MAX_MINUTES] [INIT_WEIGHTS]
source scripts/device/env.sh
minutes=${1:-7}
init=${2:-afdserve/weights/swinir_compact_v2.pt}
data=../shared/data
mkdir -p runs
for weight in 0 0.03 0.1 0.3; do
  loss=kl+ce; [ "$weight" = 0 ] && loss=none
  afd train-restorer --data $data/imagenet-samples $data/photos-train --val $data/imagenet-val-100 \
    --init-weights "$init" --patch 64 --task-loss $loss --task-weight $weight --quality-range 5 40 --high-quality-share 0.2 \
    --steps 1500 --batch-size 16 --lr 1e-4 --warmup 50 --device cuda --threads 2 --workers 3 \
    --val-images 100 --no-progress --max-minutes $minutes --name task-$weight --out runs/restorer-task-$weight \
    > runs/restorer-task-$weight.log 2>&1 &
done
while [ -n "$(jobs -r)" ]; do
  sleep 45
  for log in runs/restorer-task-*/train_log.jsonl; do echo "$log $(tail -n 1 $log | cut -c1-110)"; done
done
tail -n 4 runs/restorer-task-*.log
tar czf $OUT/task-restorer-runs.tgz --exclude='checkpoint.pt' runs/restorer-task-*
