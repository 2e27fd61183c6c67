"""Latency and throughput of a streaming step function, measured as a deployed stream uses it:
warm-up, then one call per chunk of synthetic audio with the state carried. numpy only.
"""
from __future__ import annotations

import os
import platform
import re
import resource
import time
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Timing:
    chunk: int
    streams: int
    calls: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    rtf: float                  # compute time / audio time (per call, all streams at once)
    streams_per_core: float     # real-time streams one core sustains: streams / (rtf * threads)
    peak_rss_mb: float

    def to_dict(self) -> dict:
        return asdict(self)


def synthetic_audio(seconds: float, sample_rate: int, streams: int = 1, seed: int = 0) -> np.ndarray:
    """Speech-like test signal: noise bursts shaped by a syllable-rate envelope. (streams, samples)."""
    g = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    env = 0.5 * (1 + np.sin(2 * np.pi * 4 * t[None] + g.uniform(0, 6.3, (streams, 1))))
    return (0.3 * env * g.standard_normal((streams, n))).astype(np.float32)


def time_stream(step, states, audio: np.ndarray, chunk: int, sample_rate: int, warmup: int = 20,
                threads: int = 1, max_calls: int | None = None) -> tuple[Timing, np.ndarray]:
    """step(x (B, chunk), states) -> (logits, features, states). Returns the timing and per-call ms."""
    B, n = audio.shape
    calls = n // chunk if max_calls is None else min(n // chunk, max_calls)
    for i in range(min(warmup, calls)):
        _, _, states = step(audio[:, i * chunk:(i + 1) * chunk], states)
    ts = np.empty(calls)
    for i in range(calls):
        x = audio[:, i * chunk:(i + 1) * chunk]
        t0 = time.perf_counter()
        _, _, states = step(x, states)
        ts[i] = time.perf_counter() - t0
    ms = ts * 1e3
    rtf = float(np.median(ts)) / (chunk / sample_rate)
    return Timing(chunk, B, calls, float(np.median(ms)), float(np.percentile(ms, 90)), float(np.percentile(ms, 99)),
                  float(ms.max()), rtf, B / (rtf * threads), peak_rss_mb()), ms


def machine_label() -> str:
    """'x86_64 AMD EPYC (2 cores)': what absolute times are labelled with."""
    cpu = platform.processor()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")) or cpu
    except (OSError, StopIteration):
        pass
    return f"{platform.machine()} {cpu} ({os.cpu_count()} cores)".replace("  ", " ")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def matmul_gflops(n: int = 2048, repeats: int = 3) -> float:
    """The machine's ceiling: a large fp32 matrix product through numpy's BLAS, in GFLOP/s."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = a.T.copy()
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def parse_trtexec(report: str) -> dict:
    """The GPU compute time statistics and throughput of a trtexec performance summary."""
    out = {}
    m = re.search(r"Throughput:\s*([\d.]+)\s*qps", report)
    if m:
        out["throughput_qps"] = float(m.group(1))
    m = re.search(r"GPU Compute Time:\s*(.*)", report)
    if m:
        for key, val in re.findall(r"(min|max|mean|median|percentile\(\d+%\))\s*=\s*([\d.]+)\s*ms", m.group(1)):
            out[key.replace("percentile(", "p").replace("%)", "") + "_ms"] = float(val)
    return out


def trtexec_bench_command(engine: str, shapes: str, duration_s: int = 10) -> list[str]:
    """trtexec with the usual flags for stable timings."""
    return ["trtexec", f"--loadEngine={engine}", f"--shapes={shapes}", "--warmUp=500", f"--duration={duration_s}",
            "--iterations=100", "--useCudaGraph", "--useSpinWait", "--noDataTransfers", "--separateProfileRun"]
