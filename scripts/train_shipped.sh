#!/usr/bin/env bash
# How models/kws-tiny.pt is made: synthetic data, then training on the CPU (or a GPU if present),
# then its evaluation on held-out voices (numbers in models/kws-tiny.md).
set -euo pipefail
cd "$(dirname "$0")/.."
LE=.venv/bin/liquid-edge
$LE data synth data/kws10 --per-word 250 --seed 0
$LE train --config models/configs/kws-tiny.yaml --data data/kws10 --out models/kws-tiny.pt
$LE export models/kws-tiny.pt -o out --chunk 80 --batch dynamic
$LE evaluate out/kws-tiny-c80-fp32.onnx data/kws10 --plot models/kws-tiny-frr-fa.png
