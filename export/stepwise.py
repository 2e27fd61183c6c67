"""The stepwise (streaming) form of a causal Liquid-S4 classifier.

One call processes a chunk of T samples for B streams from an explicit state and returns

    logits (B, K)        the pooled decision: mean over the last W samples, then the decoder
    features (B, T, D)   per-sample features (the input of the pool)
    new states           same names as the inputs with `_out`

States (zeros = a fresh stream), packed per kind:
    ssm_state    (B, layers, H, n)        real SSM state, n = 2·(d_state//2)
    liquid_state (B, layers, P-1, H)      the last P-1 inputs of each layer (liquid models only)
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
        self.C = layer.channels
        D = layer.D.detach().double()                                          # (C, H)
        # y = K̄ * v + D u: with v = u (plain, PB) D sits on the Toeplitz diagonal; KB keeps it apart
        ops = chunk_operators(real_ssm(layer.kernel.kernel), T, b, None if self.kind == "kb" else D)
        self.b, self.nb, self.n = ops.b, ops.nb, ops.W2.shape[-1] // (ops.nb + 1)
        self.register_buffer("W1", ops.W1)
        self.register_buffer("W2", ops.W2)
        self.register_buffer("W3", ops.W3)
        if self.kind == "kb":
            self.register_buffer("D", D.reshape(-1))                            # (C·H,)
        if self.kind is not None:
            c, s = (x.detach().double() for x in layer.liquid_coefficients())   # (P-1, C, H), (P-1, H)
            self.register_buffer("c", c.flatten(1))                             # (P-1, C·H)
            self.register_buffer("s", s)
        self.linear = nn.Linear(layer.output_linear[0].in_features, layer.output_linear[0].out_features).double()
        self.linear.load_state_dict(layer.output_linear[0].state_dict())
        self.half = False

    def half_compute(self) -> None:
        """fp16 for the in-block kernel taps and the GLU projection; the state recursion (W2, W3, the
        block inputs), the state and the residual stream stay fp32: |eig A| is within ~1e-3 of 1,
        below fp16's resolution, so the recursion would drift."""
        self.half = True
        self.linear.half()
        Cb = self.C * self.b   # W1 = [Toeplitz taps | block-input map]: only the taps go to fp16
        self.register_buffer("W1k", self.W1[..., :Cb].half().contiguous())
        self.register_buffer("W1e", self.W1[..., Cb:].contiguous())
        del self.W1

    def ssm(self, v: torch.Tensor, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """v (B, T, H), x0 (B, H, n) -> y (B, T, C·H), x_T (B, H, n). Three batched products over H,
        with the streams folded into the rows, so B streams cost about what one does."""
        H, T, b, n, nb, Cn = v.shape[2], v.shape[1], self.b, self.n, self.nb, self.C
        vb = v.permute(2, 0, 1).reshape(H, -1, b)                              # (H, B·nb, b)
        if self.half:   # the Toeplitz part in fp16, the block inputs e in fp32
            yv = torch.matmul(vb.half(), self.W1k).float()
            e = torch.matmul(vb, self.W1e)
        else:
            yv, e = torch.matmul(vb, self.W1).split([Cn * b, n], -1)         # (H, B·nb, C·b), (H, B·nb, n)
        z = torch.cat([x0.permute(1, 2, 0), e.reshape(H, -1, nb * n).transpose(1, 2)], 1)   # (H, (nb+1) n, B)
        st = torch.matmul(self.W2, z).transpose(1, 2)                          # (H, B, (nb+1) n): s_0..s_nb
        y = yv + torch.matmul(st[..., : nb * n].reshape(H, -1, n), self.W3)   # (H, B·nb, C·b)
        if Cn == 1:   # a 3-D transpose: the general 5-D one below is ~20x slower in ONNX Runtime
            y = y.reshape(H, -1, T).permute(1, 2, 0)
        else:
            y = y.reshape(H, -1, nb, Cn, b).permute(1, 2, 4, 3, 0).reshape(-1, T, Cn * H)
        return y, st[..., nb * n:].transpose(0, 1)

    def forward(self, x: torch.Tensor, x0: torch.Tensor, hist: torch.Tensor | None):
        """x (B, T, H), x0 (B, H, n), hist (B, P-1, H) -> out, x_T, new hist."""
        u = self.norm(x) if self.prenorm else x
        v, new_hist, extra = u, None, None
        if self.kind is not None:
            U = [liquid.contract(p, self.lcontract) for p in liquid.causal_correlations(u, self.degree, hist, dim=1)]
            new_hist = torch.cat([hist, u], dim=1)[:, -(self.degree - 1):]
            if self.kind == "kb":
                v = u + sum(s_p * U_p for s_p, U_p in zip(self.s, U))
            else:
                extra = sum(c_p * (U_p if self.C == 1 else U_p.repeat(1, 1, self.C)) for c_p, U_p in zip(self.c, U))
        y, xT = self.ssm(v, x0)                                                # (B, T, C·H)
        if self.kind == "kb":
            y = y + (u if self.C == 1 else u.repeat(1, 1, self.C)) * self.D
        elif extra is not None:
            y = y + extra
        y = F.gelu(y)
        y = F.glu(self.linear(y.half()).float() if self.half else self.linear(y), dim=-1)
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
        self.n = self.layers[0].n
        self.liquid = cfg.liquid_kernel is not None
        self.precision = "fp32"
        self.to(torch.float32)

    def half_compute(self) -> "StepwiseModel":
        for layer in self.layers:
            layer.half_compute()
        self.precision = "fp16"
        return self

    # ---- the state ---------------------------------------------------------------------------------
    @property
    def state_names(self) -> list[str]:
        return ["ssm_state"] + (["liquid_state"] if self.liquid else []) + (["pool_state"] if self.cfg.pool == "mean" else [])

    def state_shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        cfg, L = self.cfg, len(self.layers)
        shapes = {"ssm_state": (batch, L, cfg.d_model, self.n),
                  "liquid_state": (batch, L, cfg.liquid_degree - 1, cfg.d_model),
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
