"""The stepwise (streaming) form of a causal Liquid-S4 classifier.

One call processes a chunk of T samples for B streams from an explicit state and returns

    logits (B, K)        the pooled decision: mean over the last W samples, then the decoder
    features (B, T, D)   per-sample features (the input of the pool)
    new states           same names as the inputs with `_out`

States (zeros = a fresh stream), packed per kind:
    ssm_state    (B, layers, H, n)        real SSM state, n = 2·(d_state//2)
    liquid_state (B, layers, H, P-1)      the last P-1 inputs of each layer (liquid models only)
    pool_state   (B, W/T, K+1)            per-chunk sums of projected features, and sample counts

Everything is a float32 constant computed in float64 from the trained model: the dense real
bilinear system (never eigen-diagonalised), C from C̃, BatchNorm folded to an affine map, the liquid
coefficients. Inside a chunk nothing loops over samples (see realform.py).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import liquid
from ..model import LiquidS4Classifier
from .realform import chunk_operators, default_block, real_ssm


class StreamingError(ValueError):
    """A model or option that has no exact stepwise form; the message is one line."""


def _norm_module(norm: nn.Module) -> nn.Module:
    """BatchNorm in eval mode folded to a per-feature affine map; LayerNorm kept."""
    inner = norm.norm
    if isinstance(inner, nn.BatchNorm1d):
        a = inner.weight.double() / torch.sqrt(inner.running_var.double() + inner.eps)
        return Affine(a, inner.bias.double() - inner.running_mean.double() * a)
    ln = nn.LayerNorm(inner.normalized_shape, eps=inner.eps)
    ln.load_state_dict(inner.state_dict())
    return ln.double()


class Affine(nn.Module):
    def __init__(self, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class StepLayer(nn.Module):
    """One residual block on a chunk: x (B, T, H) -> (B, T, H), with its SSM and liquid state."""

    def __init__(self, block: nn.Module, T: int, b: int):
        super().__init__()
        layer = block.layer
        self.prenorm = block.prenorm
        self.norm = _norm_module(block.norm)
        self.kind, self.degree, self.lcontract = layer.liquid_kernel, layer.liquid_degree, layer.lcontract
        ops = chunk_operators(real_ssm(layer.kernel.kernel), T, b)
        self.b, self.nb = ops.b, ops.nb
        for name in ("K", "Ob", "Cb"):
            self.register_buffer(name, getattr(ops, name))
        # the state recursion as two matrices on flattened (block, state) axes
        self.register_buffer("P0", ops.P0.flatten(1, 2))                                     # (H, (nb+1) n, n)
        self.register_buffer("G", ops.G.permute(0, 1, 3, 2, 4).flatten(1, 2).flatten(2, 3))  # (H, (nb+1) n, nb n)
        self.register_buffer("D", layer.D.detach().double())                   # (C, H)
        if self.kind is not None:
            c, s = (x.detach().double() for x in layer.liquid_coefficients())   # (P-1, C, H), (P-1, H)
            self.register_buffer("c", c)
            self.register_buffer("s", s)
        self.linear = nn.Linear(layer.output_linear[0].in_features, layer.output_linear[0].out_features).double()
        self.linear.load_state_dict(layer.output_linear[0].state_dict())

    def ssm(self, v: torch.Tensor, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """v (B, H, T), x0 (B, H, n) -> y (B, C, H, T), x_T (B, H, n). Two-level block form."""
        B_, H, T = v.shape
        vb = v.reshape(B_, H, self.nb, self.b)
        e = torch.matmul(vb, self.Cb)                                          # (B, H, nb, n)
        # block start states: s_k = A^(kb) x0 + sum_{m<k} A^((k-1-m)b) e_m
        s = torch.matmul(self.P0, x0.unsqueeze(-1)).squeeze(-1)                # (B, H, (nb+1) n)
        s = s + torch.matmul(self.G, e.flatten(2).unsqueeze(-1)).squeeze(-1)
        s = s.reshape(B_, H, self.nb + 1, -1)
        # outputs: Toeplitz inside the block + the block start state's response
        y = torch.matmul(vb.unsqueeze(1), self.K.transpose(-1, -2))           # (B, C, H, nb, b)
        y = y + torch.matmul(s[:, :, : self.nb].unsqueeze(1), self.Ob.transpose(-1, -2))
        return y.flatten(-2), s[:, :, self.nb]

    def forward(self, x: torch.Tensor, x0: torch.Tensor, hist: torch.Tensor | None):
        z = self.norm(x) if self.prenorm else x
        u = z.transpose(1, 2)                                                  # (B, H, T)
        v, new_hist, extra = u, None, 0.0
        if self.kind is not None:
            U = [liquid.contract(p, self.lcontract) for p in liquid.causal_correlations(u, self.degree, hist)]
            new_hist = torch.cat([hist, u], dim=-1)[..., -(self.degree - 1):]
            if self.kind == "kb":
                v = u + sum(s_p[:, None] * U_p for s_p, U_p in zip(self.s, U))
            else:
                extra = sum(c_p[..., None] * U_p.unsqueeze(1) for c_p, U_p in zip(self.c, U))
        y, xT = self.ssm(v, x0)
        y = y + u.unsqueeze(1) * self.D[:, :, None] + extra                    # (B, C, H, T)
        y = F.gelu(y.flatten(1, 2)).transpose(1, 2)                            # (B, T, C·H)
        y = F.glu(self.linear(y), dim=-1)
        out = x + y if self.prenorm else self.norm(x + y)
        return out, xT, new_hist


class StepwiseModel(nn.Module):
    """forward(x, *states) -> (logits, features, *new_states); see the module docstring."""

    def __init__(self, model: LiquidS4Classifier, chunk: int, window: int | None = None, block: int | None = None):
        super().__init__()
        cfg = model.cfg
        blocker = stream_blocker(model)
        if blocker:
            raise StreamingError(blocker)
        if chunk < 1:
            raise StreamingError(f"chunk must be >= 1, not {chunk}")
        W = window or (cfg.l_max or chunk) // chunk * chunk or chunk
        if W % chunk:
            raise StreamingError(f"pooling window {W} must be a multiple of the chunk length {chunk}")
        self.cfg, self.chunk, self.window = cfg, chunk, W
        self.block = block or default_block(chunk)
        self.layers = nn.ModuleList(StepLayer(blk, chunk, self.block) for blk in model.model.layers)
        self.final_norm = _norm_module(model.model.norm) if cfg.prenorm else nn.Identity()
        self.encoder = nn.Linear(cfg.d_input, cfg.d_model).double()
        self.encoder.load_state_dict(model.encoder[0].state_dict())
        self.decoder = nn.Linear(cfg.d_model, cfg.d_output).double()
        self.decoder.load_state_dict(model.decoder[0].output_transform.state_dict())
        self.n = self.layers[0].Cb.shape[-1]
        self.liquid = cfg.liquid_kernel is not None
        self.to(torch.float32)

    # ---- the state ---------------------------------------------------------------------------------
    @property
    def state_names(self) -> list[str]:
        return ["ssm_state"] + (["liquid_state"] if self.liquid else []) + (["pool_state"] if self.cfg.pool == "mean" else [])

    def state_shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        cfg, L = self.cfg, len(self.layers)
        shapes = {"ssm_state": (batch, L, cfg.d_model, self.n),
                  "liquid_state": (batch, L, cfg.d_model, cfg.liquid_degree - 1),
                  "pool_state": (batch, self.window // self.chunk, cfg.d_output + 1)}
        return {k: shapes[k] for k in self.state_names}

    def initial_state(self, batch: int = 1, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        return [torch.zeros(s, dtype=dtype) for s in self.state_shapes(batch).values()]

    # ---- one chunk ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, *states: torch.Tensor):
        """x (B, T) or (B, T, d_input) -> logits (B, K), features (B, T, D), *new states."""
        if x.dim() == 2:
            x = x.unsqueeze(-1)
        st = dict(zip(self.state_names, states))
        h = self.encoder(x)
        ssm_out, liq_out = [], []
        for i, layer in enumerate(self.layers):
            hist = st["liquid_state"][:, i] if self.liquid else None
            h, xT, new_hist = layer(h, st["ssm_state"][:, i], hist)
            ssm_out.append(xT)
            liq_out.append(new_hist)
        feats = self.final_norm(h)
        outs = [torch.stack(ssm_out, 1)] + ([torch.stack(liq_out, 1)] if self.liquid else [])
        if self.cfg.pool == "mean":
            # A sliding window of the last W samples as W/T chunk sums of decoder(features) - bias
            # (the decoder is linear, so projecting first is exact and keeps the state small).
            proj = F.linear(feats, self.decoder.weight).sum(1)                # (B, K)
            count = torch.full_like(proj[:, :1], float(x.shape[1]))
            pool = torch.cat([st["pool_state"][:, 1:], torch.cat([proj, count], -1).unsqueeze(1)], 1)
            total = pool.sum(1)
            logits = total[:, :-1] / total[:, -1:] + self.decoder.bias
            outs.append(pool)
        else:
            logits = self.decoder(feats[:, -1])
        return (logits, feats, *outs)


def stream_blocker(model: LiquidS4Classifier) -> str | None:
    from ..describe import streaming_blocker
    return streaming_blocker(model)


@torch.no_grad()
def run_stream(step: StepwiseModel, x: torch.Tensor, states: list[torch.Tensor] | None = None):
    """Feed x (B, L) chunk by chunk (L a multiple of the chunk). -> features (B, L, D), logits per chunk
    (B, L/T, K), final states."""
    T = step.chunk
    if x.shape[1] % T:
        raise StreamingError(f"stream length {x.shape[1]} is not a multiple of the chunk length {T}")
    states = states or step.initial_state(x.shape[0], x.dtype)
    feats, logits = [], []
    for i in range(0, x.shape[1], T):
        lo, f, *states = step(x[:, i:i + T], *states)
        feats.append(f)
        logits.append(lo)
    return torch.cat(feats, 1), torch.stack(logits, 1), states
