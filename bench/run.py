"""The benchmark suite: one model, one synthetic audio signal, every way of running it, in one run.

    python bench/run.py [--model CKPT] [--seconds 10] [--out bench/results]

1. the stepwise form (torch and ONNX Runtime) at several chunk sizes, one stream and 8 batched
2. the naive edge alternative: the convolution form re-run over a sliding 1-second window
3. the recurrent step() style loop: one sample per call
4. the machine's ceiling (a 2048^3 fp32 matmul) and the fraction of it the stepwise form reaches
All on one CPU thread. Ratios are the headline; absolute times are labelled with the machine.
Default model: the paper's Speech Commands config with random weights.
"""
from __future__ import annotations

import os
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from liquid_edge.checkpoint import load_checkpoint
from liquid_edge.config import ModelConfig
from liquid_edge.export.onnx_graph import export_onnx
from liquid_edge.export.stepwise import StepwiseModel
from liquid_edge.model import LiquidS4Classifier
from liquid_edge.runtime.benchmark import matmul_gflops, synthetic_audio, time_stream
from liquid_edge.runtime.session import OnnxStream, manifest_path

PAPER_SC = ModelConfig(d_model=128, n_layers=6, d_state=7, n_ssm=128, d_output=35, dt_min=0.002, dt_max=0.2)


def torch_step(module):
    @torch.no_grad()
    def step(x, states):
        lo, f, *st = module(torch.from_numpy(x), *states)
        return lo, f, st
    return step


def onnx_step(module, tmp: Path, batch):
    path = tmp / f"m{module.chunk}.onnx"
    man = export_onnx(module, path, batch=batch)
    manifest_path(path).write_text(json.dumps(man))
    sess = OnnxStream(path, threads=1)
    return sess.step, sess.initial_state(1 if batch == 1 else 8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint [default: the paper's SC config, random weights]")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--chunks", default="80,160,320,1600")
    ap.add_argument("--out", default="bench/results")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = load_checkpoint(a.model) if a.model else LiquidS4Classifier(PAPER_SC).eval()
    name = Path(a.model).stem if a.model else "paper-sc-random"
    sr = model.cfg.sample_rate
    audio = synthetic_audio(a.seconds, sr, 8)
    rows, tmp = [], Path(tempfile.mkdtemp())
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731

    log("ceiling: 2048^3 fp32 matmul, one thread")
    ceiling = matmul_gflops()
    macs = StepwiseModel(model, 160).macs_per_sample()

    def add(form, backend, T, streams, timing):
        gflops = 2 * macs["recurrent"] * streams * T / (timing.median_ms / 1e3) / 1e9
        rows.append(dict(form=form, backend=backend, chunk=T, streams=streams, median_ms=timing.median_ms,
                         p99_ms=timing.p99_ms, rtf=timing.rtf, gflops=gflops, ceiling_fraction=gflops / ceiling))

    for T in [int(c) for c in a.chunks.split(",")]:
        step = StepwiseModel(model, T)
        log(f"stepwise chunk {T}: torch, onnxruntime (1 and 8 streams)")
        t, _ = time_stream(torch_step(step), step.initial_state(1), audio[:1], T, sr, max_calls=300)
        add("stepwise", "torch", T, 1, t)
        fn, st = onnx_step(StepwiseModel(model, T), tmp, 1)
        t1, _ = time_stream(fn, st, audio[:1], T, sr, max_calls=500)
        add("stepwise", "onnxruntime", T, 1, t1)
        fn, st = onnx_step(StepwiseModel(model, T), tmp, None)
        t8, _ = time_stream(fn, st, audio, T, sr, max_calls=300)
        add("stepwise", "onnxruntime", T, 8, t8)

    log("naive: convolution form over a sliding 1 s window")
    clip = torch.from_numpy(audio[:1, : model.cfg.l_max])
    with torch.no_grad():
        model(clip)
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            model(clip)
            ts.append(time.perf_counter() - t0)
    conv_s = float(np.median(ts))
    for hop_ms in (10, 100):
        rows.append(dict(form=f"conv window, {hop_ms} ms hop", backend="torch", chunk=hop_ms * sr // 1000, streams=1,
                         median_ms=conv_s * 1e3, p99_ms=max(ts) * 1e3, rtf=conv_s / (hop_ms / 1000),
                         gflops=float("nan"), ceiling_fraction=float("nan")))

    log("recurrent step loop: one sample per call")
    step1 = StepwiseModel(model, 1)
    t, _ = time_stream(torch_step(step1), step1.initial_state(1), audio[:1], 1, sr, max_calls=2000)
    add("step() loop", "torch", 1, 1, t)
    fn, st = onnx_step(StepwiseModel(model, 1), tmp, 1)
    t, _ = time_stream(fn, st, audio[:1], 1, sr, max_calls=4000)
    add("step() loop", "onnxruntime", 1, 1, t)

    machine = f"{platform.machine()} {platform.processor() or ''} ({os.cpu_count()} cores), torch {torch.__version__}".strip()
    base = next(r for r in rows if r["form"] == "stepwise" and r["backend"] == "onnxruntime" and r["chunk"] == 160 and r["streams"] == 1)
    one = base["median_ms"]
    eight = next(r for r in rows if r["form"] == "stepwise" and r["chunk"] == 160 and r["streams"] == 8)["median_ms"]
    print(f"\nliquid-edge benchmark: {name}, {macs['recurrent']:,.0f} MACs/sample (recurrent), "
          f"{macs['graph']:,.0f} (chunked graph at T=160); one CPU thread")
    print(f"machine: {machine}; matmul ceiling {ceiling:.1f} GFLOP/s\n")
    print(f"{'form':26s} {'backend':12s} {'chunk':>6s} {'streams':>7s} {'median ms':>10s} {'p99 ms':>8s} "
          f"{'RTF':>8s} {'vs ORT T=160':>12s} {'% ceiling':>9s}")
    for r in rows:
        print(f"{r['form']:26s} {r['backend']:12s} {r['chunk']:6d} {r['streams']:7d} {r['median_ms']:10.3f} "
              f"{r['p99_ms']:8.3f} {r['rtf']:8.3f} {r['rtf'] / base['rtf']:11.1f}x {r['ceiling_fraction']:9.1%}")
    print(f"\n8 batched streams / 1 stream, per chunk (T=160, onnxruntime): {eight / one:.2f}x")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"model": name, "machine": machine, "ceiling_gflops": ceiling, "macs_per_sample": macs, "rows": rows,
           "batch8_over_1": eight / one, "seconds": a.seconds}
    path = out / f"{name}-{platform.node() or 'host'}.json"
    path.write_text(json.dumps(res, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
