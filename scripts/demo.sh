#!/usr/bin/env bash
# The main job on the shipped example: inspect the model, export it to an ONNX step graph and for the
# native CPU kernel (both checked against the torch stepwise module), and spot the keyword in a
# recording it has never heard with each.
set -euo pipefail
cd "$(dirname "$0")/.."
LE=.venv/bin/liquid-edge
$LE info models/kws-tiny.pt
$LE export models/kws-tiny.pt -o out --chunk 80
echo "--- spotting keywords in models/samples/yes_at_1.50s.wav (\"yes\" starts at 1.50 s):"
$LE spot out/kws-tiny-c80-fp32.onnx models/samples/yes_at_1.50s.wav
$LE export models/kws-tiny.pt --target native -o out --chunk 80
echo "--- the same with the native CPU kernel (compiled on first use):"
$LE spot out/kws-tiny-c80-native.npz models/samples/yes_at_1.50s.wav
