#!/usr/bin/env bash
# Device call 2: the GPU serving path's first run on a GPU. Builds the two classifier archives
# (afd_classifier with nvJPEG decoding, --gpu-decode), compares the device decode with the Pillow
# path on 100 validation photos (scripts/check_device_decode.py), and times the archives
# in-process on the GPU (afdserve bench --device cuda; the device machine has no Java, so no
# TorchServe there).
source scripts/device/env.sh
store=/tmp/model_store
afd build --model-store $store --models lite0_baseline 2>&1 | tail -2
afd build --model-store $store --models afd_classifier --gpu-decode 2>&1 | tail -2
python3 scripts/check_device_decode.py --data ../shared/data/imagenet-val-100 --model-store $store \
  --qualities original,10,5 --out $OUT/device-decode 2>&1 | grep -v "it/s" | tail -12
afd bench --device cuda --no-served --model-store $store --models afd_classifier,lite0_baseline \
  --repeats 32 --threads 8 --out $OUT/bench-gpu 2>&1 | tail -4
cat $OUT/bench-gpu/bench.md | head -12
