"""Exact windowed inference as a graph: the model re-run on the last W samples at every chunk.

For models that cannot stream exactly (official liquid terms look ahead; bidirectional layers see the
future) this is the exact alternative: every call computes the model's own output on the window.
The graph form needs no FFT (TensorRT has none): the convolution is a direct depthwise convolution
with the kernel precomputed in float64 for length W, and the official correlation signals are
gathers at fixed indices. Its cost is a full forward per call: W x min(W, l_max) multiply-adds per
channel and layer (bench/ measures it).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import liquid
from ..model import LiquidS4Classifier
from .stepwise import StreamingError


class WindowLayer(nn.Module):
    """The Liquid-S4 layer's pre-activation for a fixed length W, with graph-friendly operators."""

    def __init__(self, layer, W: int):
        super().__init__()
        if layer.liquid_kernel == "kb" and layer.liquid_mode == "official":
            raise StreamingError("windowed export of official KB layers is not supported (their FFT-grid "
                                 "liquid term has no compact real form); use liquid-edge parity --liquid-mode window")
        if layer.bidirectional and layer.liquid_kernel is not None and layer.liquid_mode == "causal":
            raise StreamingError("windowed export of bidirectional causal-liquid layers is not supported")
        self.C, self.W, self.bidir = layer.channels, W, layer.bidirectional
        self.kind, self.degree, self.lcontract = layer.liquid_kernel, layer.liquid_degree, layer.lcontract
        self.official, self.allcombs = layer.liquid_mode == "official", layer.allcombs
        with torch.no_grad():
            k = copy.deepcopy(layer).double().conv_kernel(W)         # (C, H, Lk) or (C, H, 2 Lk)
            H = k.shape[1]
            if self.bidir:   # taps for offsets d = t - s in [-(W-1), W-1]: k0[d] for d >= 0, k1[-d-1] below
                Lk = k.shape[-1] // 2
                if Lk != W:
                    raise StreamingError(f"windowed export of bidirectional layers needs window <= l_max ({W} > {Lk})")
                taps = torch.cat([k[..., Lk + 1:], k[..., :Lk]], -1)   # offsets -(W-1) .. W-1
            else:
                taps = k
            # conv1d correlates: weight[j] multiplies x[t - (len-1) + j]; flip so tap d meets u[t - d]
            self.register_buffer("weight", taps.flip(-1).permute(1, 0, 2).reshape(H * self.C, 1, -1).float())
            self.pad = (taps.shape[-1] - 1, 0) if not self.bidir else (W - 1, W - 1)
            self.register_buffer("D", layer.D.detach().float().reshape(-1, 1))             # (C·H, 1), (c h) order
            if self.kind == "polyb":
                c = self._coefficients(layer)                                             # (P-1, C', H)
                self.register_buffer("c", c.float())
            if self.kind is not None and self.official and self.allcombs:
                for p in range(2, self.degree + 1):
                    self.register_buffer(f"idx{p}", liquid._allcombs_index(W, p).clone())
            if self.kind == "kb":   # causal KB: the correlation signal enters the same kernel
                self.register_buffer("s", layer.liquid_coefficients()[1].detach().float())

    def _coefficients(self, layer) -> torch.Tensor:
        if not self.official:
            return layer.liquid_coefficients()[0].detach().double()
        aux = layer.kernel
        dt = torch.exp(aux.log_dt.double())
        B, w, C = (torch.view_as_complex(x.double()) for x in (aux.B, aux.w, aux.C))
        return liquid.official_pb_coefficients(liquid.discrete_B_diag(B, w, dt), torch.cat([C, C.conj()], -1), self.degree)

    def _conv(self, v: torch.Tensor) -> torch.Tensor:
        """v (B, H, W) -> (B, C·H, W) in (c h) order."""
        y = F.conv1d(F.pad(v, self.pad), self.weight, groups=v.shape[1])                # (B, H·C, W) in (h c)
        if self.C > 1:
            y = y.reshape(y.shape[0], -1, self.C, self.W).transpose(1, 2).reshape(y.shape[0], -1, self.W)
        return y

    def _correlations(self, u: torch.Tensor) -> list[torch.Tensor]:
        if not self.official:
            return liquid.causal_correlations(u, self.degree)
        if not self.allcombs:
            return liquid.official_correlations(u, self.degree, False)
        out = []
        for p in range(2, self.degree + 1):
            idx = getattr(self, f"idx{p}")
            us = u[..., idx[:, 0]]
            for j in range(1, p):
                us = us * u[..., idx[:, j]]
            out.append(F.pad(us, (0, self.W - us.shape[-1])) if us.shape[-1] != self.W else us)
        return out

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, H, W) -> y_pre (B, C·H, W)."""
        v = u
        U = [liquid.contract(x, self.lcontract) for x in self._correlations(u)] if self.kind else []
        if self.kind == "kb":
            v = u + sum(s_p[:, None] * U_p for s_p, U_p in zip(self.s, U))
        uC = u if self.C == 1 else u.repeat(1, self.C, 1)
        y = self._conv(v) + uC * self.D
        if self.kind == "polyb":
            for c_p, U_p in zip(self.c, U):
                if self.official:
                    Ur = U_p.flip(-1)
                    if self.bidir:
                        y = y + Ur * c_p[0][:, None] + U_p * c_p[1][:, None]
                    else:
                        y = y + (Ur if self.C == 1 else Ur.repeat(1, self.C, 1)) * c_p.reshape(-1, 1)
                else:
                    y = y + (U_p if self.C == 1 else U_p.repeat(1, self.C, 1)) * c_p.reshape(-1, 1)
        return y


def graph_form(module: nn.Module) -> nn.Module:
    """The exportable form of a streaming module: a WindowedModel (FFT) becomes its WindowGraph."""
    from .convert import WindowedModel
    if isinstance(module, WindowedModel):
        return WindowGraph(module.model, module.chunk, module.window).eval()
    return module


class WindowGraph(nn.Module):
    """forward(x (B, T), window_state (B, W)) -> (logits, features (B, T, D), window_state_out)."""

    state_names = ["window_state"]

    def __init__(self, model: LiquidS4Classifier, chunk: int, window: int | None = None):
        super().__init__()
        cfg = model.cfg
        if cfg.d_input != 1 or cfg.features != "raw":
            raise StreamingError("windowed inference supports raw single-channel audio models")
        W = window or cfg.l_max or chunk
        if W < chunk:
            raise StreamingError(f"window {W} is shorter than the chunk {chunk}")
        self.model, self.cfg, self.chunk, self.steps, self.window = model.eval(), cfg, chunk, chunk, W
        self.layers = nn.ModuleList(WindowLayer(b.layer, W) for b in model.model.layers)
        self.precision = "fp32"

    def state_shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        return {"window_state": (batch, self.window)}

    def initial_state(self, batch: int = 1, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        return [torch.zeros(batch, self.window, dtype=dtype)]

    def half_compute(self):
        raise StreamingError("windowed export is fp32 only")

    def macs_per_sample(self) -> dict[str, float]:
        cfg = self.cfg
        conv = sum(l.weight.shape[0] * l.weight.shape[-1] * self.window for l in self.layers)
        glu = cfg.n_layers * 2 * cfg.d_model * cfg.channels * cfg.d_model * self.window
        per_call = conv + glu + self.window * cfg.d_model * (1 + cfg.d_output)
        return {"recurrent": per_call / self.chunk, "graph": per_call / self.chunk}

    def forward(self, x: torch.Tensor, window_state: torch.Tensor):
        if x.dim() == 3:
            x = x[..., 0]
        w = torch.cat([window_state[:, x.shape[1]:], x], dim=1)
        h = self.model.encoder(w.unsqueeze(-1))
        for block, wl in zip(self.model.model.layers, self.layers):
            z = block.norm(h) if block.prenorm else h
            y = wl(z.transpose(1, 2))
            y = block.layer.output_linear(F.gelu(y).transpose(1, 2))
            h = h + y if block.prenorm else block.norm(h + y)
        feats = self.model.model.norm(h)
        return self.model.decoder(feats), feats[:, -x.shape[1]:], w
