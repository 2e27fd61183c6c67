"""The Liquid-S4 layer in convolution mode (the form that trains).

    y_pre = K̄ * u + D u + liquid(u)          (B, C, H, L)
    y     = GLU(Linear(dropout(GELU(y_pre))))  (B, L, H)

Two liquid modes. "causal" (ours): DESIGN.md section 2, coefficients from the trained parameters,
the kernel computed for the actual length. "official": the forward of raminmh/liquid-s4 as it is,
non-causal liquid terms from frozen wrapper tensors, kernel truncated at l_max.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import liquid
from .ssm import DPLRKernel

LIQUID_KERNELS = (None, "polyb", "kb")
LIQUID_MODES = ("causal", "official")


class SSKernel(nn.Module):
    """Holds the DPLR kernel (`.kernel`) and, in official mode, the official wrapper's frozen tensors.

    The official code computes its liquid coefficients from B, C, w, log_dt saved on this wrapper at
    construction and never trained; they are buffers here: B (n_ssm, N, 2), C (channels, H, N, 2),
    w (n_ssm, N, 2), log_dt (H,).
    """

    def __init__(self, kernel: DPLRKernel, official_aux: bool):
        super().__init__()
        self.kernel = kernel
        self.has_aux = official_aux
        if official_aux:
            w, P, B, dt = kernel.continuous()
            n = kernel.n_ssm
            self.register_buffer("B", torch.view_as_real(B[:n].detach()).float().clone())
            self.register_buffer("C", kernel.C.detach().clone())   # C before the C~ conversion
            self.register_buffer("w", torch.view_as_real(w[:n].detach()).float().clone())
            self.register_buffer("log_dt", kernel.log_dt.detach().clone())


class LiquidS4(nn.Module):
    """One Liquid-S4 layer. Input and output (B, L, H)."""

    def __init__(self, d_model: int, d_state: int = 64, channels: int = 1, bidirectional: bool = False,
                 l_max: int | None = None, n_ssm: int | None = None, rank: int = 1,
                 dt_min: float = 1e-3, dt_max: float = 1e-1, dropout: float = 0.0,
                 liquid_kernel: str | None = None, liquid_degree: int = 2, lcontract: str | None = None,
                 liquid_mode: str = "causal", allcombs: bool = True):
        super().__init__()
        if liquid_kernel not in LIQUID_KERNELS:
            raise ValueError(f"liquid_kernel must be one of None, 'polyb', 'kb', not {liquid_kernel!r}")
        if liquid_degree < 2:
            raise ValueError(f"liquid_degree must be >= 2, not {liquid_degree}")
        if liquid_mode not in LIQUID_MODES:
            raise ValueError(f"liquid_mode must be 'causal' or 'official', not {liquid_mode!r}")
        liquid.contract(torch.zeros(1), lcontract)  # validates the name
        self.H, self.channels, self.bidirectional = d_model, channels, bidirectional
        self.l_max, self.liquid_kernel, self.liquid_degree = l_max, liquid_kernel, liquid_degree
        self.lcontract, self.liquid_mode, self.allcombs = lcontract, liquid_mode, allcombs
        self.D = nn.Parameter(torch.randn(channels, d_model))
        # Build the kernel with C untransformed so the official wrapper copy sees the initial C.
        k = DPLRKernel(d_model, d_state, channels * (2 if bidirectional else 1), n_ssm, rank, dt_min, dt_max, None)
        self.kernel = SSKernel(k, official_aux=liquid_mode == "official" and liquid_kernel is not None)
        k.l_max = l_max
        if l_max:
            k.setup_C(l_max)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.output_linear = nn.Sequential(nn.Linear(d_model * channels, 2 * d_model), nn.GLU(dim=-1))

    # ---- pieces the stepwise conversion reuses --------------------------------------------------
    def liquid_coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal-mode c (P-1, C, H) and s (P-1, H) from the trained parameters."""
        k = self.kernel.kernel
        w, _, B, dt = k.continuous()
        return liquid.coefficients(liquid.discrete_B_diag(B, w, dt), k.C_true(), self.liquid_degree)

    def conv_kernel(self, L: int) -> torch.Tensor:
        """(C, H, L) causal kernel, or (C, H, 2L) two-sided [k0, 0.., flip(k1)] for bidirectional."""
        official = self.liquid_mode == "official"
        k = self.kernel.kernel.kernel(L, truncate_at_l_max=official)
        if self.bidirectional:
            k0, k1 = k[: self.channels], k[self.channels:]
            Lk = k.shape[-1]
            k = F.pad(k0, (0, Lk)) + F.pad(k1.flip(-1), (Lk, 0))
        return k

    # ---- forward ---------------------------------------------------------------------------------
    def preactivation(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, H, L) -> y_pre (B, C, H, L): SSM convolution + D u + liquid terms."""
        L = u.shape[-1]
        k = self.conv_kernel(L)
        Lk = k.shape[-1] // (2 if self.bidirectional else 1)
        n = Lk + L
        k_f = torch.fft.rfft(k, n=n)                                      # (C, H, n//2+1)
        x_f = torch.fft.rfft(u, n=n).unsqueeze(1) * k_f                   # (B, C, H, n//2+1)
        y_extra = 0.0
        if self.liquid_kernel is not None:
            if self.liquid_mode == "causal":
                x_f, y_extra = self._causal_liquid(u, x_f, k_f, n)
            else:
                x_f, y_extra = self._official_liquid(u, x_f, k, n)
        y = torch.fft.irfft(x_f, n=n)[..., :L]
        return y + u.unsqueeze(1) * self.D[:, :, None] + y_extra

    def _causal_liquid(self, u, x_f, k_f, n):
        c, s = self.liquid_coefficients()
        U = [liquid.contract(x, self.lcontract) for x in liquid.causal_correlations(u, self.liquid_degree)]
        if self.liquid_kernel == "kb":   # the correlation signal enters the same SSM as u
            corr = sum(s_p[:, None] * U_p for s_p, U_p in zip(s, U))
            return x_f + torch.fft.rfft(corr, n=n).unsqueeze(1) * k_f, 0.0
        if self.bidirectional:  # backward direction: correlations of the reversed sequence
            Ub = [liquid.contract(x, self.lcontract).flip(-1)
                  for x in liquid.causal_correlations(u.flip(-1), self.liquid_degree)]
            cf, cb = c[:, : self.channels], c[:, self.channels:]
            return x_f, sum(f[..., None] * a.unsqueeze(1) + b[..., None] * bw.unsqueeze(1)
                            for f, b, a, bw in zip(cf, cb, U, Ub))
        return x_f, sum(c_p[..., None] * U_p.unsqueeze(1) for c_p, U_p in zip(c, U))

    def _official_liquid(self, u, x_f, k, n):
        aux = self.kernel
        dt = torch.exp(aux.log_dt)
        B, w, C = (torch.view_as_complex(x) for x in (aux.B, aux.w, aux.C))
        if B.shape[0] not in (1, dt.shape[0]):
            raise ValueError("official liquid terms need n_ssm == 1 or n_ssm == d_model (as the official code)")
        dB = liquid.discrete_B_diag(B, w, dt)                                 # (H, 2N)
        C2 = torch.cat([C, C.conj()], -1)
        U = liquid.official_correlations(u, self.liquid_degree, self.allcombs)
        y_extra = 0.0
        if self.liquid_kernel == "kb":
            S, k_b = dB.sum(-1), k.to(dB.dtype)
            for U_p in U:
                k_b = k_b * S[:, None]                                        # K̄ S^(p-1)
                corr = liquid.contract(U_p, self.lcontract).flip(-1)
                # The official code multiplies a length-(n//2+1) complex FFT of the kernel with the
                # real FFT of the signal: not a convolution, but what it computes.
                x_f = x_f + torch.fft.rfft(corr, n=n).unsqueeze(1) * torch.fft.fft(k_b, n=n // 2 + 1)
            return x_f, y_extra
        for dCB, U_p in zip(liquid.official_pb_coefficients(dB, C2, self.liquid_degree), U):   # (C', H)
            corr = liquid.contract(U_p, self.lcontract).flip(-1)              # (B, H, L)
            if self.bidirectional:
                y_extra = y_extra + (corr * dCB[0, :, None] + corr.flip(-1) * dCB[1, :, None]).unsqueeze(1)
            else:
                y_extra = y_extra + corr.unsqueeze(1) * dCB[:, :, None]
        return x_f, y_extra

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, L, H) -> (B, L, H)."""
        y = self.preactivation(u.transpose(1, 2))                             # (B, C, H, L)
        y = self.dropout(self.activation(y.flatten(1, 2)))                    # (B, C*H, L)
        return self.output_linear(y.transpose(1, 2))

    @property
    def causal(self) -> bool:
        return not self.bidirectional and (self.liquid_mode == "causal" or self.liquid_kernel is None)
