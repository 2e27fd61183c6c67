"""The S4 state space: HiPPO-LegS in DPLR form, its bilinear discretisation and its kernel.

A continuous system per channel h (N/2 complex modes, conjugate pairs implied):

    A = diag(w) - P P^*,   B,   C          (w, P, B shared by groups of channels: n_ssm copies)

discretised with the bilinear map at step dt = exp(log_dt[h]):

    Ā = (I - dt/2 A)^-1 (I + dt/2 A),   B̄ = (I - dt/2 A)^-1 dt B,   K̄[l] = C Ā^l B̄.

C is stored as C̃ = C (I - Ā^Lc) for the kernel length Lc (buffer `L`), which turns the truncated
generating function of K̄ into a rational function evaluated at the Lc-th roots of unity: a Cauchy
sum plus a Woodbury correction for the low-rank part (Gu et al., S4).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn


def hippo_legs_nplr(N: int, rank: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HiPPO-LegS as normal plus low rank, diagonalised in float64.

    Returns w (N//2,), P (rank, N//2), B (N//2,): complex128, one half of each conjugate pair.
    """
    q = np.arange(N, dtype=np.float64)
    r = np.sqrt(2 * q + 1)
    A = -np.where(q[:, None] > q[None, :], r[:, None] * r[None, :], 0.0) - np.diag(q + 1)
    B = r.copy()
    P = np.zeros((rank, N))
    P[0] = np.sqrt(q + 0.5)
    AP = A + P.T @ P                       # = -1/2 I + skew-symmetric
    S = AP + 0.5 * np.eye(N)
    w_im, V = np.linalg.eigh(-1j * S)      # S skew => -iS Hermitian: real eigenvalues, unitary V
    order = np.argsort(w_im)[: N // 2]     # keep one of each conjugate pair (negative frequencies)
    w = -0.5 + 1j * w_im[order]
    V = V[:, order]
    Vh = V.conj().T                        # A = V (diag(w) - (Vh P)(Vh P)^*) V^*
    return w, (Vh @ P.T).T, Vh @ B


def _conj(x: torch.Tensor) -> torch.Tensor:
    """(..., N) -> (..., 2N): append the conjugate half."""
    return torch.cat([x, x.conj()], dim=-1)


def _matrix_power(M: torch.Tensor, n: int) -> torch.Tensor:
    """M^n for a batch of square matrices, by repeated squaring (differentiable)."""
    out = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device).expand_as(M)
    while n > 0:
        if n & 1:
            out = out @ M
        n >>= 1
        if n:
            M = M @ M
    return out


class DPLRKernel(nn.Module):
    """Parameters of H DPLR state spaces and their convolution kernel. State-dict layout = official S4 V3.

    C (channels, H, N, 2) stores C̃ for length `L` (0: C itself, not yet converted);
    B (1, n_ssm, N, 2); P (rank, n_ssm, N, 2); inv_w_real, w_imag (n_ssm, N); log_dt (H,).
    Complex tensors are stored as (real, imaginary) pairs.
    """

    def __init__(self, H: int, N: int, channels: int = 1, n_ssm: int | None = None, rank: int = 1,
                 dt_min: float = 1e-3, dt_max: float = 1e-1, l_max: int | None = None,
                 real_tolerance: float = 1e-3):
        super().__init__()
        n_ssm = H if n_ssm is None else n_ssm
        if H % n_ssm:
            raise ValueError(f"n_ssm={n_ssm} must divide d_model={H}")
        self.H, self.N, self.n_ssm, self.rank, self.l_max = H, N // 2, n_ssm, rank, l_max
        w, P, B = (torch.from_numpy(x) for x in hippo_legs_nplr(N, rank))
        w = w.expand(n_ssm, -1)
        P = P.reshape(rank, 1, -1).expand(rank, n_ssm, -1)
        B = B.reshape(1, 1, -1).expand(1, n_ssm, -1)
        log_dt = torch.rand(H, dtype=torch.float64) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        C = torch.randn(channels, H, N // 2, dtype=torch.complex128)
        self.C = nn.Parameter(torch.view_as_real(C).float().contiguous())
        self.B = nn.Parameter(torch.view_as_real(B.contiguous()).float().contiguous())
        self.P = nn.Parameter(torch.view_as_real(P.contiguous()).float().contiguous())
        self.inv_w_real = nn.Parameter(torch.log(-w.real.clamp(max=-real_tolerance)).float().contiguous())
        self.w_imag = nn.Parameter(w.imag.float().contiguous())
        self.log_dt = nn.Parameter(log_dt.float())
        self.register_buffer("L", torch.tensor(0))
        if l_max:
            self.setup_C(l_max)

    # ---- the continuous and discrete systems -------------------------------------------------
    def _expand(self, x: torch.Tensor) -> torch.Tensor:
        """(..., n_ssm, N) -> (..., H, N): channel h uses copy h % n_ssm."""
        return x.repeat(*([1] * (x.dim() - 2)), self.H // self.n_ssm, 1)

    def continuous(self) -> tuple[torch.Tensor, ...]:
        """w (H, N), P (rank, H, N), B (H, N), dt (H,): complex except dt."""
        w = self._expand(-torch.exp(self.inv_w_real) + 1j * self.w_imag)
        P = self._expand(torch.view_as_complex(self.P))
        B = self._expand(torch.view_as_complex(self.B))[0]
        return w, P, B, torch.exp(self.log_dt)

    def C_tilde(self) -> torch.Tensor:
        return torch.view_as_complex(self.C)

    def discrete_dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Ā (H, 2N, 2N) and B̄ (H, 2N), complex, on the conjugate-extended state."""
        w, P, B, dt = self.continuous()
        w2, P2, B2 = _conj(w), _conj(P), _conj(B)
        A = torch.diag_embed(w2) - torch.einsum("rhn,rhm->hnm", P2, P2.conj())
        I = torch.eye(2 * self.N, dtype=A.dtype, device=A.device)
        half = (dt / 2)[:, None, None] * A
        dA = torch.linalg.solve(I - half, I + half)
        dB = torch.linalg.solve(I - half, (dt[:, None] * B2).unsqueeze(-1)).squeeze(-1)
        return dA, dB

    def C_true(self) -> torch.Tensor:
        """C (channels, H, 2N) recovered from C̃: C = C̃ (I - Ā^L)^-1."""
        C2 = _conj(self.C_tilde())
        if int(self.L) == 0:
            return C2
        dA, _ = self.discrete_dense()
        I = torch.eye(dA.shape[-1], dtype=dA.dtype, device=dA.device)
        M = (I - _matrix_power(dA, int(self.L))).transpose(-1, -2)          # row vector c: c M^T
        return torch.linalg.solve(M, C2.unsqueeze(-1)).squeeze(-1)

    @torch.no_grad()
    def setup_C(self, L: int) -> None:
        """Store C̃ for length L (from C when `L` is 0). Needed once; official checkpoints already have it."""
        if int(self.L) != 0:
            raise RuntimeError("C already holds C~")
        dA, _ = self.discrete_dense()
        C2 = _conj(self.C_tilde())
        C2 = C2 - torch.einsum("chn,hnm->chm", C2, _matrix_power(dA, L))
        self.C.copy_(torch.view_as_real(C2[..., : self.N]))
        self.L.fill_(L)

    # ---- the kernel ----------------------------------------------------------------------------
    def kernel(self, L: int, truncate_at_l_max: bool = False) -> torch.Tensor:
        """K̄ (channels, H, L), real, exact for any L.

        The roots-of-unity evaluation gives the kernel for the stored length Lc; longer kernels come
        from C̃_2L = C̃_L (I + Ā^L) (doubling), computed out of place so it stays differentiable.
        truncate_at_l_max reproduces the official code, whose kernel stops at l_max taps.
        """
        if truncate_at_l_max and self.l_max and int(self.L):
            L = min(L, int(self.L))
        Lc, Ct = int(self.L), self.C_tilde()
        if Lc == 0:  # C not converted yet (an official model never run): C~ for this length
            dA, _ = self.discrete_dense()
            C2 = _conj(Ct)
            Ct = (C2 - torch.einsum("chn,hnm->chm", C2, _matrix_power(dA, L)))[..., : self.N]
            Lc = L
        if L > Lc:
            dA, _ = self.discrete_dense()
            C2 = _conj(Ct)
            while L > Lc:
                C2 = C2 + torch.einsum("chn,hnm->chm", C2, _matrix_power(dA, Lc))
                Lc *= 2
            Ct = C2[..., : self.N]
        return self._kernel_at_roots(Ct, Lc)[..., :L]

    def _kernel_at_roots(self, Ct: torch.Tensor, Lc: int) -> torch.Tensor:
        w, P, B, dt = self.continuous()
        cdtype = w.dtype
        # Nodes omega_k = exp(-2 pi i k / Lc). The bilinear map z = 2(1-ω)/(1+ω) is infinite at
        # ω = -1 (even Lc); multiplying the resolvent by (1+ω) first keeps every term finite:
        #   1/(z - dt w) = (1+ω) / (2(1-ω) - dt w (1+ω)).
        k = torch.arange(Lc // 2 + 1, device=w.device, dtype=torch.float64)
        omega = torch.polar(torch.ones_like(k), -2 * math.pi * k / Lc).to(cdtype)
        a, b = 2 * (1 - omega), 1 + omega                                    # (K,)
        wdt = (w * dt[:, None])[..., None]                                    # (H, N, 1)
        Bs = torch.cat([B.unsqueeze(0), P], dim=0)                             # (1+R, H, N)
        Cs = torch.cat([Ct, P.conj()], dim=0)                                  # (C+R, H, N)
        v = Bs.unsqueeze(1) * Cs.unsqueeze(0)                                  # (1+R, C+R, H, N)
        # Cauchy sums over the modes: the reciprocal denominators (H, N, K) are shared by every
        # (B, C) pair, so the sum is a batched product over H. In blocks of nodes so long kernels
        # stay within memory.
        step = max(1, (1 << 22) // max(1, wdt.numel()))
        q = torch.cat([torch.einsum("ijhn,hnk->ijhk", v, 1 / (a[i:i + step] - wdt * b[i:i + step]))
                       + torch.einsum("ijhn,hnk->ijhk", v.conj(), 1 / (a[i:i + step] - wdt.conj() * b[i:i + step]))
                       for i in range(0, len(a), step)], dim=-1)              # (1+R, C+R, H, K)
        q = q * dt[:, None]
        R = self.rank
        q00, q01, q10, q11 = q[:1, :-R], q[:1, -R:], q[1:, :-R], q[1:, -R:]
        if R == 1:
            kf = q00 - b * q01 * q10 / (1 + b * q11)
        else:  # (I + b q11)^-1 per (h, k)
            M = torch.eye(R, dtype=cdtype, device=w.device)[..., None, None] + b * q11
            Minv = torch.linalg.inv(M.permute(2, 3, 0, 1)).permute(2, 3, 0, 1)
            kf = q00 - b * torch.einsum("irhk,rshk,sjhk->ijhk", q01, Minv, q10)
        kf = 2 * kf[0]                                                         # (C, H, K)
        return torch.fft.irfft(kf, n=Lc)
