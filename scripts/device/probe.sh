#!/usr/bin/env bash
# Device call 1: what the machine has, and 40 steps of each training on the GPU, to size the
# real runs (images per second with the data workers this machine can feed).
source scripts/device/env.sh
{ nvidia-smi -L; nproc; python3 -V; python3 -c "import torch, torchvision, timm, PIL; print(torch.__version__, torchvision.__version__, timm.__version__, PIL.__version__, torch.cuda.is_available())"
  command -v java || echo "no java"; python3 -c "import afdserve.cli, afdserve.train.afd, afdserve.train.restorer; print('imports ok')"; } 2>&1 | tee $OUT/probe.txt
rm -rf /tmp/smoke-afd /tmp/smoke-restorer  # a warm machine keeps them, and a run folder is never started over
afd train --data ../shared/data/imagenet-val-100 --out /tmp/smoke-afd --steps 60 --batch-size 16 --workers 4 \
  --val-qualities 10 --no-progress --device cuda --log-every 20 2>&1 | tail -8 | tee -a $OUT/probe.txt
afd train-restorer --data ../shared/data/imagenet-val-100 --out /tmp/smoke-restorer --steps 60 --batch-size 32 \
  --patch 96 --embed-dim 64 --depths 4 4 4 --heads 4 4 4 --workers 3 --no-progress --device cuda --log-every 20 \
  --val-images 0 2>&1 | tail -6 | tee -a $OUT/probe.txt
tail -2 /tmp/smoke-afd/train_log.jsonl /tmp/smoke-restorer/train_log.jsonl | tee -a $OUT/probe.txt
