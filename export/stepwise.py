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
from ..describe import streaming_blocker
from ..model import LiquidS4Classifier
from .realform import chunk_operators, default_block, real_ssm


class StreamingError(ValueError):
    """A model or option that has no exact stepwise form; the message is one line."""


def _norm_module(norm: nn.Module) -> nn.Module:
    """BatchNorm in eval mode folded to a per-feature affine map; LayerNorm kept. Both act on the
    feature axis 0 of the internal (H, B·T) layout."""
    inner = norm.norm
    if isinstance(inner, nn.BatchNorm1d):
        a = inner.weight.double() / torch.sqrt(inner.running_var.double() + inner.eps)
        return Affine(a, inner.bias.double() - inner.running_mean.double() * a)
    return FeatureLayerNorm(inner.weight.detach().double(), inner.bias.detach().double(), inner.eps)


class Affine(nn.Module):
    def __init__(self, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale[:, None])
        self.register_buffer("shift", shift[:, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class FeatureLayerNorm(nn.Module):
    """LayerNorm over axis 0 of (H, B·T)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, eps: float):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", weight[:, None])
        self.register_buffer("bias", bias[:, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x - x.mean(0, keepdim=True)
        return d * torch.rsqrt(d.square().mean(0, keepdim=True) + self.eps) * self.weight + self.bias


class StepLayer(nn.Module):
    """One residual block on a chunk in the internal layout: x (H, B·T) -> (H, B·T)."""

    def __init__(self, block: nn.Module, T: int, b: int):
        super().__init__()
        layer = block.layer
        self.prenorm = block.prenorm
        self.norm = _norm_module(block.norm)
        self.kind, self.degree, self.lcontract = layer.liquid_kernel, layer.liquid_degree, layer.lcontract
        self.C = layer.channels
        D = layer.D.detach().double()                                          # (C, H)
        # y = K̄ * v + D u: with v = u (plain, PB) D sits on the Toeplitz diagonal; KB keeps it apart
        ssm = real_ssm(layer.kernel.kernel)
        ops = chunk_operators(ssm, T, b, None if self.kind == "kb" else D)
        # the recurrence itself, what the native kernel runs (not traced): s += dA s + B v, y = C s + D u.
        # dA = A - I, taken in float64: slow modes have eigenvalues within ~1e-3 of 1, so A itself in
        # float32 would move them by up to 1e-4 relative; dA keeps float32's full relative precision.
        dA = ssm.A - torch.eye(ssm.A.shape[-1], dtype=ssm.A.dtype)
        for name, M in (("dA", dA), ("B", ssm.B), ("C", ssm.C), ("D", D)):
            self.register_buffer(f"ssm_{name}", M, persistent=False)
        self.b, self.nb, self.n = ops.b, ops.nb, ops.W2.shape[-1] // (ops.nb + 1)
        self.register_buffer("W1", ops.W1)
        self.register_buffer("W2T", ops.W2.transpose(1, 2).contiguous())       # acts from the right
        self.register_buffer("W3", ops.W3)
        if self.kind == "kb":
            self.register_buffer("D", D.reshape(-1, 1))                         # (C·H, 1)
        if self.kind is not None:
            c, s = (x.detach().double() for x in layer.liquid_coefficients())   # (P-1, C, H), (P-1, H)
            for p in range(c.shape[0]):   # separate constants: no runtime indexing in the graph
                self.register_buffer(f"c{p}", c[p].reshape(-1, 1))
                self.register_buffer(f"s{p}", s[p].reshape(-1, 1))
        lin = layer.output_linear[0]
        self.register_buffer("Wo", lin.weight.detach().double())               # (2H, C·H)
        self.register_buffer("bo", lin.bias.detach().double()[:, None])        # (2H, 1)
        self.half = False

    def half_compute(self) -> None:
        """fp16 for the in-block kernel taps and the GLU projection; the state recursion (W2, W3, the
        block inputs), the state and the residual stream stay fp32: |eig A| is within ~1e-3 of 1,
        below fp16's resolution, so the recursion would drift."""
        self.half = True
        self.Wo, self.bo = self.Wo.half(), self.bo.half()
        Cb = self.C * self.b   # W1 = [Toeplitz taps | block-input map]: only the taps go to fp16
        self.register_buffer("W1k", self.W1[..., :Cb].half().contiguous())
        self.register_buffer("W1e", self.W1[..., Cb:].contiguous())
        del self.W1

    def ssm(self, v: torch.Tensor, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """v (H, B·T), x0 (H, B, n) -> y (C·H, B·T), x_T (H, B, n).

        Three batched products over H with the streams folded into the rows, so B streams cost
        about what one does, and no transposes: every reshape here is free."""
        H, b, n, nb, Cn = v.shape[0], self.b, self.n, self.nb, self.C
        vb = v.reshape(H, -1, b)                                               # (H, B·nb, b)
        if self.half:   # the Toeplitz part in fp16, the block inputs e in fp32
            yv = torch.matmul(vb.half(), self.W1k).float()
            e = torch.matmul(vb, self.W1e)
        else:
            yv, e = torch.matmul(vb, self.W1).split([Cn * b, n], -1)         # (H, B·nb, C·b), (H, B·nb, n)
        z = torch.cat([x0, e.reshape(H, -1, nb * n)], -1)                      # (H, B, (nb+1) n)
        st = torch.matmul(z, self.W2T)                                         # s_0..s_nb
        y = yv + torch.matmul(st[..., : nb * n].reshape(H, -1, n), self.W3)   # (H, B·nb, C·b)
        if Cn == 1:
            y = y.reshape(H, -1)
        else:   # channel c of feature h goes to row c·H + h, as the convolution form flattens them
            y = y.reshape(H, -1, nb, Cn, b).permute(3, 0, 1, 2, 4).reshape(Cn * H, -1)
        return y, st[..., nb * n:]

    def forward(self, x: torch.Tensor, x0: torch.Tensor, hist: torch.Tensor | None):
        """x (H, B·T), x0 (H, B, n), hist (H, B, P-1) -> out, x_T, new hist.

        2-D on purpose: ONNX Runtime's elementwise kernels are ~1.7x slower on (H, 1, T) than on
        (H, T) (measured); only the correlation signals need the per-stream time axis."""
        u = self.norm(x) if self.prenorm else x
        v, new_hist, extra = u, None, None
        if self.kind is not None:
            u3 = u.reshape(u.shape[0], x0.shape[1], -1)                         # (H, B, T)
            U = [liquid.contract(p, self.lcontract).reshape(u.shape[0], -1)
                 for p in liquid.causal_correlations(u3, self.degree, hist)]
            new_hist = torch.cat([hist, u3], dim=-1)[..., -(self.degree - 1):]
            rep = (lambda t: t) if self.C == 1 else (lambda t: t.repeat(self.C, 1))
            if self.kind == "kb":
                v = u + sum(getattr(self, f"s{p}") * U_p for p, U_p in enumerate(U))
            else:
                extra = sum(getattr(self, f"c{p}") * rep(U_p) for p, U_p in enumerate(U))
        y, xT = self.ssm(v, x0)                                                # (C·H, B·T)
        if self.kind == "kb":
            y = y + (u if self.C == 1 else u.repeat(self.C, 1)) * self.D
        elif extra is not None:
            y = y + extra
        y = F.gelu(y)
        if self.half:
            y = torch.addmm(self.bo, self.Wo, y.half()).float()
        else:
            y = torch.addmm(self.bo, self.Wo, y)                               # (2H, B·T): one GEMM
        y = F.glu(y, dim=0)
        out = x + y if self.prenorm else self.norm(x + y)
        return out, xT, new_hist


class StepwiseModel(nn.Module):
    """forward(x, *states) -> (logits, features, *new_states); see the module docstring.

    Internally the residual stream is (H, B·T): every projection is one GEMM W·X and the SSM's
    reshapes are free. The states are batch-first at the interface and permuted once per call.
    """

    def __init__(self, model: LiquidS4Classifier, chunk: int, window: int | None = None, block: int | None = None):
        super().__init__()
        cfg = model.cfg
        blocker = streaming_blocker(model)
        if blocker:
            raise StreamingError(blocker)
        if chunk < 1:
            raise StreamingError(f"chunk must be >= 1, not {chunk}")
        hop = cfg.samples_per_step
        if chunk % hop:
            raise StreamingError(f"chunk {chunk} must be a multiple of the feature hop {hop}")
        steps = chunk // hop        # model time steps per call (= chunk for raw audio)
        W = window or (cfg.l_max or steps) // steps * steps or steps
        if W % steps:
            unit = " frames" if hop > 1 else ""
            raise StreamingError(f"pooling window {W}{unit} must be a multiple of the chunk length {steps}{unit}")
        self.cfg, self.chunk, self.steps, self.window = cfg, chunk, steps, W
        self.block = block or default_block(steps)
        self.layers = nn.ModuleList(StepLayer(blk, steps, self.block) for blk in model.model.layers)
        if cfg.features == "logmel":   # frames of this chunk: fixed gather indices into [state, chunk]
            self.frontend = model.frontend
            idx = torch.arange(steps)[:, None] * hop + torch.arange(cfg.win)
            self.register_buffer("frame_idx", idx, persistent=False)
        self.final_norm = _norm_module(model.model.norm) if cfg.prenorm else nn.Identity()
        enc, dec = model.encoder[0], model.decoder[0].output_transform
        self.register_buffer("We", enc.weight.detach().double())               # (H, d_input)
        self.register_buffer("be", enc.bias.detach().double()[:, None])
        self.register_buffer("Wd", dec.weight.detach().double())               # (K, H)
        self.register_buffer("bd", dec.bias.detach().double())
        self.n = self.layers[0].n
        self.liquid = cfg.liquid_kernel is not None
        self.precision = "fp32"
        self.to(torch.float32)

    def half_compute(self) -> "StepwiseModel":
        for layer in self.layers:
            layer.half_compute()
        self.precision = "fp16"
        return self

    def macs_per_sample(self) -> dict[str, float]:
        """Multiply-adds per input sample: `recurrent` is the model's own cost (one dense real state
        update per sample, DESIGN.md section 7), `graph` what this chunked form executes."""
        cfg, H, n = self.cfg, self.cfg.d_model, self.n
        C, K, P1 = cfg.channels, cfg.d_output, cfg.liquid_degree - 1 if self.liquid else 0
        per_layer_rec = H * (n * n + n + C * n + C + 2 * P1) + 2 * H * C * H
        b, nb, T = self.block, self.steps // self.block, self.steps
        per_layer_graph = H * ((C * b + n) + ((nb + 1) * n) ** 2 / T + n * C * b / b + 2 * P1) + 2 * H * C * H
        head = H * cfg.d_input + K * H
        if cfg.features == "logmel":   # per frame: two DFT products and the mel product
            bins = cfg.win // 2 + 1
            head += 2 * cfg.win * bins + bins * cfg.n_mels
        per = cfg.samples_per_step   # per input sample
        return {"recurrent": (cfg.n_layers * per_layer_rec + head) / per, "graph": (cfg.n_layers * per_layer_graph + head) / per}

    # ---- the state ---------------------------------------------------------------------------------
    @property
    def state_names(self) -> list[str]:
        return ((["frontend_state"] if self.cfg.features == "logmel" else []) + ["ssm_state"]
                + (["liquid_state"] if self.liquid else []) + (["pool_state"] if self.cfg.pool == "mean" else []))

    def state_shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        cfg, L = self.cfg, len(self.layers)
        shapes = {"ssm_state": (batch, L, cfg.d_model, self.n),
                  "liquid_state": (batch, L, cfg.liquid_degree - 1, cfg.d_model),
                  "pool_state": (batch, self.window // self.steps, cfg.d_output + 1),
                  "frontend_state": (batch, cfg.win - cfg.hop)}
        return {k: shapes[k] for k in self.state_names}

    def initial_state(self, batch: int = 1, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        return [torch.zeros(s, dtype=dtype) for s in self.state_shapes(batch).values()]

    # ---- one chunk ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, *states: torch.Tensor):
        """x (B, T) or (B, T, d_input) -> logits (B, K), features (B, T, D), *new states."""
        st = dict(zip(self.state_names, states))
        outs = []
        if self.cfg.features == "logmel":   # (B, chunk) samples -> (B, steps, n_mels) frames
            xe = torch.cat([st["frontend_state"], x], 1)
            outs.append(xe[:, x.shape[1]:])
            x = self.frontend.spectrum(xe[:, self.frame_idx])
        T = x.shape[1]
        if x.dim() == 2 and self.We.shape[1] == 1:
            h = self.We * x.reshape(1, -1) + self.be                           # (H, B·T)
        else:
            x = x.unsqueeze(-1) if x.dim() == 2 else x
            h = torch.matmul(self.We, x.reshape(-1, x.shape[-1]).t()) + self.be
        ssm = st["ssm_state"].permute(1, 2, 0, 3)                              # (layers, H, B, n)
        hist = st["liquid_state"].permute(1, 3, 0, 2) if self.liquid else None  # (layers, H, B, P-1)
        ssm_out, liq_out = [], []
        for i, layer in enumerate(self.layers):
            h, xT, new_hist = layer(h, ssm[i], hist[i] if self.liquid else None)
            ssm_out.append(xT)
            liq_out.append(new_hist)
        feats = self.final_norm(h)                                             # (H, B·T)
        outs.append(torch.stack(ssm_out).permute(2, 0, 1, 3))
        if self.liquid:
            outs.append(torch.stack(liq_out).permute(2, 0, 3, 1))
        H = feats.shape[0]
        if self.cfg.pool == "mean":
            # A sliding window of the last W samples as W/T chunk sums of decoder(features) - bias
            # (the decoder is linear, so projecting first is exact and keeps the state small).
            proj = torch.matmul(self.Wd, feats).reshape(self.Wd.shape[0], -1, T).sum(-1).t()  # (B, K)
            count = torch.full_like(proj[:, :1], float(T))
            pool = torch.cat([st["pool_state"][:, 1:], torch.cat([proj, count], -1).unsqueeze(1)], 1)
            total = pool.sum(1)
            logits = total[:, :-1] / total[:, -1:] + self.bd
            outs.append(pool)
        else:
            logits = torch.matmul(feats.reshape(H, -1, T)[:, :, -1].t(), self.Wd.t()) + self.bd
        return (logits, feats.reshape(H, -1, T).permute(1, 2, 0), *outs)


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
