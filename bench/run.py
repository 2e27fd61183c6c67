"""The benchmark suite: one model, one synthetic audio signal, every way of running it, in one run.

    python bench/run.py [--model CKPT] [--seconds 10] [--chunks 80,160,320,1600] [--out bench/results]

1. the stepwise form at several chunk sizes, one stream and 8 batched: the native CPU kernel
   (runtime/native.c), ONNX Runtime, torch
2. the naive edge alternative: the convolution form re-run over a sliding 1-second window
3. the recurrent step() style loop: one sample per call
4. the machine's ceiling (a 2048^3 fp32 matmul, best of several, before, between and after) and the
   fraction of it each stepwise run reaches (counting the model's own multiply-adds per sample)
All on one CPU thread. Ratios are the headline (against the native kernel at 10 ms chunks); absolute
times are labelled with the machine. Default model: the paper's Speech Commands config, random weights.
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
from liquid_edge.export.pipeline import open_exported
from liquid_edge.export.stepwise import StepwiseModel
from liquid_edge.model import LiquidS4Classifier
from liquid_edge.runtime.benchmark import machine_label, matmul_gflops, synthetic_audio, time_stream

PAPER_SC = ModelConfig(d_model=128, n_layers=6, d_state=7, n_ssm=128, d_output=35, dt_min=0.002, dt_max=0.2)
# the issue's targets for the paper's SC config at 10 ms chunks, one thread
TARGETS = {"rtf": 0.12, "ceiling_fraction": 0.65, "p99_ms": 2.0, "batch8_over_1": 1.5}


def torch_step(module):
    @torch.no_grad()
    def step(x, states):
        lo, f, *st = module(torch.from_numpy(x), *states)
        return lo, f, st
    return step, module.initial_state(1)


def exported_step(module, tmp: Path, backend: str, streams: int):
    """The module exported for ONNX Runtime (dynamic batch) or the native kernel, opened as a device would."""
    sess = open_exported(module, tmp / f"m{module.chunk}.{'onnx' if backend == 'onnxruntime' else 'npz'}")
    return sess.step, sess.initial_state(streams)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="checkpoint [default: the paper's SC config, random weights]")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--chunks", default=None, help="comma-separated [default: 10, 20, 40 and 100 ms]")
    ap.add_argument("--out", default="bench/results")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = load_checkpoint(a.model) if a.model else LiquidS4Classifier(PAPER_SC).eval()
    name = Path(a.model).stem if a.model else "paper-sc-random"
    sr = model.cfg.sample_rate
    T10 = sr // 100                                   # a 10 ms chunk
    chunks = [int(c) for c in a.chunks.split(",")] if a.chunks else [T10, 2 * T10, 4 * T10, 10 * T10]
    chunks = sorted(set(chunks) | {T10})
    audio = synthetic_audio(a.seconds, sr, 8)
    rows, tmp = [], Path(tempfile.mkdtemp())
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731

    log("ceiling: 2048^3 fp32 matmul, one thread")
    ceilings = [matmul_gflops()]
    macs = StepwiseModel(model, T10).macs_per_sample()

    def add(form, backend, T, streams, timing):
        gflops = 2 * macs["recurrent"] * streams * T / (timing.median_ms / 1e3) / 1e9
        rows.append(dict(form=form, backend=backend, chunk=T, streams=streams, median_ms=timing.median_ms,
                         p90_ms=timing.p90_ms, p99_ms=timing.p99_ms, rtf=timing.rtf, gflops=gflops))

    for T in chunks:
        for backend in ("native", "onnxruntime"):
            for streams in (1, 8):
                log(f"stepwise chunk {T}: {backend}, {streams} stream(s)")
                fn, st = exported_step(StepwiseModel(model, T), tmp, backend, streams)
                t, _ = time_stream(fn, st, audio[:streams], T, sr, max_calls=600 if streams == 1 else 200)
                add("stepwise", backend, T, streams, t)
        log(f"stepwise chunk {T}: torch")
        fn, st = torch_step(StepwiseModel(model, T))
        t, _ = time_stream(fn, st, audio[:1], T, sr, max_calls=200)
        add("stepwise", "torch", T, 1, t)
        ceilings.append(matmul_gflops())

    log("naive: convolution form over a sliding 1 s window")
    clip = torch.from_numpy(audio[:1, :sr])
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
                         median_ms=conv_s * 1e3, p90_ms=float("nan"), p99_ms=max(ts) * 1e3, rtf=conv_s / (hop_ms / 1000),
                         gflops=float("nan")))

    log("recurrent step loop: one sample per call")
    for backend in ("native", "onnxruntime"):
        fn, st = exported_step(StepwiseModel(model, 1), tmp, backend, 1)
        t, _ = time_stream(fn, st, audio[:1], 1, sr, max_calls=4000)
        add("step() loop", backend, 1, 1, t)
    fn, st = torch_step(StepwiseModel(model, 1))
    t, _ = time_stream(fn, st, audio[:1], 1, sr, max_calls=2000)
    add("step() loop", "torch", 1, 1, t)
    ceilings.append(matmul_gflops())

    ceiling = max(ceilings)
    for r in rows:
        r["ceiling_fraction"] = r["gflops"] / ceiling
    pick = lambda form, backend, T, s=1: next(r for r in rows if (r["form"], r["backend"], r["chunk"], r["streams"]) == (form, backend, T, s))  # noqa: E731
    base = pick("stepwise", "native", T10)
    summary = {"rtf": base["rtf"], "ceiling_fraction": base["ceiling_fraction"], "p99_ms": base["p99_ms"],
               "batch8_over_1": pick("stepwise", "native", T10, 8)["median_ms"] / base["median_ms"]}
    machine = f"{machine_label()}, torch {torch.__version__}"
    print(f"\nliquid-edge benchmark: {name}, {macs['recurrent']:,.0f} MACs/sample (recurrent); one CPU thread")
    print(f"machine: {machine}; matmul ceiling {ceiling:.1f} GFLOP/s (best of {len(ceilings)} measurements: "
          + ", ".join(f"{c:.0f}" for c in ceilings) + ")\n")
    print(f"{'form':26s} {'backend':12s} {'chunk':>6s} {'streams':>7s} {'median ms':>10s} {'p99 ms':>8s} "
          f"{'RTF':>8s} {'vs native':>10s} {'% ceiling':>9s}")
    for r in rows:
        frac = "" if np.isnan(r["ceiling_fraction"]) else f"{r['ceiling_fraction']:9.1%}"
        print(f"{r['form']:26s} {r['backend']:12s} {r['chunk']:6d} {r['streams']:7d} {r['median_ms']:10.3f} "
              f"{r['p99_ms']:8.3f} {r['rtf']:8.3f} {r['rtf'] / base['rtf']:9.1f}x {frac:>9s}")
    print(f"\ntargets set for the paper's SC config (native kernel, {T10}-sample = 10 ms chunks, one thread)"
          + ("" if name == "paper-sc-random" else f"; {name} shown for reference") + ":")
    for k, want in TARGETS.items():
        ok = summary[k] >= want if k == "ceiling_fraction" else summary[k] <= want
        print(f"  {k:17s} {summary[k]:8.3f}  target {'>=' if k == 'ceiling_fraction' else '<='} {want}  "
              f"{'met' if ok else 'MISSED'}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"model": name, "machine": machine, "ceiling_gflops": ceiling, "ceilings": ceilings,
           "macs_per_sample": macs, "rows": rows, "summary": summary, "targets": TARGETS, "seconds": a.seconds}
    path = out / f"{name}-{platform.node() or 'host'}.json"
    path.write_text(json.dumps(res, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
