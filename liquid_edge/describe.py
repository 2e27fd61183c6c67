"""What a model is: architecture, size, liquid settings, and whether it can stream exactly."""
from __future__ import annotations

import torch

from .model import LiquidS4Classifier


@torch.no_grad()
def measured_causal(model: LiquidS4Classifier, L: int = 256, t0: int | None = None, seed: int = 0) -> bool:
    """Perturb the input at t0 (default: the last sample, which the official liquid terms reach back
    from) and check that no per-step feature before t0 moves (float64)."""
    m = LiquidS4Classifier(model.cfg).double().eval()
    m.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, L, model.cfg.d_input, generator=g, dtype=torch.float64)
    t0 = L - 1 if t0 is None else t0
    x2 = x.clone()
    x2[:, t0] += 1.0
    return bool((m.features(x)[:, :t0] - m.features(x2)[:, :t0]).abs().max() < 1e-9)


def streaming_blocker(model: LiquidS4Classifier) -> str | None:
    """None when the model converts exactly to the stepwise form; otherwise why not (one line)."""
    cfg = model.cfg
    if cfg.bidirectional:
        return "bidirectional layers see future inputs: exact streaming is impossible (use windowed inference)"
    if cfg.liquid_mode == "official" and cfg.liquid_kernel is not None:
        return ("official liquid terms are time-reversed (output t depends on later inputs): exact streaming is "
                "impossible; use --liquid-mode causal (measured deviation) or --liquid-mode window (exact, windowed)")
    return None


def describe(model: LiquidS4Classifier) -> dict:
    cfg = model.cfg
    blocker = streaming_blocker(model)
    return {
        "config": cfg.to_dict(),
        "parameters": model.num_parameters(),
        "architecture": (f"{cfg.n_layers} x Liquid-S4 block (d_model {cfg.d_model}, d_state {cfg.d_state} = "
                         f"{cfg.d_state // 2} complex modes, n_ssm {cfg.n_ssm or cfg.d_model}, "
                         f"{'bidirectional' if cfg.bidirectional else 'unidirectional'}), "
                         f"{'pre' if cfg.prenorm else 'post'}-norm {cfg.norm}norm, GELU, Linear+GLU; "
                         f"{cfg.pool} pool -> {cfg.d_output} classes"),
        "liquid": ("none (plain S4)" if cfg.liquid_kernel is None else
                   f"{cfg.liquid_kernel} degree {cfg.liquid_degree}, contraction {cfg.lcontract or 'none'}, "
                   f"mode {cfg.liquid_mode}" + (f" (allcombs={cfg.allcombs})" if cfg.liquid_mode == "official" else "")),
        "causal": measured_causal(model),
        "exact_streaming": blocker is None,
        "streaming_blocker": blocker,
    }
