#!/usr/bin/env bash
# The restorer trainings alone (issue 15), on the BSDS500 + imagen photos a call carries, with the
# decode check first. Usage: scripts/device/train_restorers.sh [MAX_MINUTES]
source scripts/device/env.sh
minutes=${1:-6}
python3 scripts/check_device_decode.py --data ../shared/data/imagenet-val-100 --model-store /tmp/model_store \
  --qualities original,10 --out $OUT/device-decode 2>&1 | grep "^|" | tail -6
mkdir -p runs
common=(--data ../shared/data/restorer-photos --batch-size 32 --lr 5e-4 --warmup 200 --no-progress
        --device cuda --threads 2 --workers 7 --val-images 0 --max-minutes $minutes --log-every 50)
afd train-restorer "${common[@]}" --steps 4000 --patch 64 --embed-dim 48 --depths 3 3 --heads 4 4 \
  --name v2a --out runs/restorer-v2a > runs/restorer-v2a.log 2>&1 &
afd train-restorer "${common[@]}" --steps 3000 --patch 96 --embed-dim 64 --depths 4 4 4 --heads 4 4 4 \
  --name v2b --out runs/restorer-v2b > runs/restorer-v2b.log 2>&1 &
while [ -n "$(jobs -r)" ]; do
  sleep 45
  for log in runs/*/train_log.jsonl; do echo "$log $(tail -n 1 $log | cut -c1-100)"; done
done
tail -n 3 runs/*.log
tar czf $OUT/restorer-runs.tgz runs/restorer-v2*
