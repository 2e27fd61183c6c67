"""Training-step cost of the paper's Speech Commands config (batch 2 x 16000 samples, forward +
backward + AdamW), liquid (PB degree 2) against plain S4 as the baseline, on this machine's CPU (and
CUDA when present). Prints a table and writes JSON.

    python bench/train_step.py [--threads 1,2] [--batch 2] [--steps 3]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from liquid_edge.config import ModelConfig
from liquid_edge.model import LiquidS4Classifier
from liquid_edge.train import TrainConfig, param_groups


def step_time(cfg: ModelConfig, batch: int, steps: int, device: str) -> tuple[float, float]:
    torch.manual_seed(0)
    m = LiquidS4Classifier(cfg).to(device).train()
    opt = torch.optim.AdamW(param_groups(m, TrainConfig()), lr=1e-3)
    x = torch.randn(batch, cfg.l_max, device=device)
    y = torch.randint(0, cfg.d_output, (batch,), device=device)
    times, kernel = [], []
    for i in range(steps + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = F.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    # the SSM kernel alone (naive Cauchy, forward + backward), one layer
    k = m.model.layers[0].layer.kernel.kernel
    for i in range(steps + 1):
        t0 = time.perf_counter()
        k.kernel(cfg.l_max).square().sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        if i:
            kernel.append(time.perf_counter() - t0)
    return min(times), min(kernel)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    base = dict(d_model=128, n_layers=6, d_state=7, n_ssm=128, d_output=35, dt_min=0.002, dt_max=0.2, l_max=16000)
    rows = []
    devices = [("cpu", int(t)) for t in a.threads.split(",")] + ([("cuda", 0)] if torch.cuda.is_available() else [])
    for dev, th in devices:
        if dev == "cpu":
            torch.set_num_threads(th)
        for name, kw in (("plain S4", dict(liquid_kernel=None)), ("liquid PB-2 (causal)", dict(liquid_kernel="polyb"))):
            s, k = step_time(ModelConfig(**base, **kw), a.batch, a.steps, dev)
            rows.append(dict(model=name, device=dev, threads=th, step_s=s, samples_per_s=a.batch * 16000 / s,
                             clips_per_s=a.batch / s, kernel_fwd_bwd_ms=k * 1e3))
    print(f"training step, paper SC config ({LiquidS4Classifier(ModelConfig(**base)).num_parameters():,} parameters), "
          f"batch {a.batch} x 16000; {platform.machine()}, torch {torch.__version__}")
    print(f"{'model':22s} {'device':6s} {'thr':>3s} {'step s':>8s} {'clips/s':>8s} {'samples/s':>10s} {'kernel ms':>10s} {'vs plain':>8s}")
    for r in rows:
        ref = next(x for x in rows if x["device"] == r["device"] and x["threads"] == r["threads"] and x["model"] == "plain S4")
        print(f"{r['model']:22s} {r['device']:6s} {r['threads']:3d} {r['step_s']:8.3f} {r['clips_per_s']:8.2f} "
              f"{r['samples_per_s']:10.0f} {r['kernel_fwd_bwd_ms']:10.1f} {r['step_s'] / ref['step_s']:7.2f}x")
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"train-step-{platform.node() or 'host'}.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
