"""The SSM of one layer as real matrices, and the operators that process a chunk at once.

Conversion is float64. The complex state z (N modes; its conjugate half is implied) becomes the
real state x = [Re z, Im z] (n = 2N). With x̃ = [z, z̄] = T^-1 x:

    Ā_r = T Ā T^-1,   B̄_r = T B̄,   C_r = C T^-1 = [2 Re C, -2 Im C]

Never the eigen-diagonal form: its eigenvectors are badly conditioned (DESIGN.md section 1).

A chunk of T = nb·b samples is processed in a two-level block form: inside each block of b samples
a b×b Toeplitz matrix of kernel taps; between blocks the state, propagated by precomputed powers of
Ā. Per sample and channel this costs about b + 3n multiply-adds instead of T for a full Toeplitz.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..ssm import DPLRKernel


@dataclass
class RealSSM:
    """A (H, n, n), B (H, n), C (channels, H, n): float64, x_t = A x_{t-1} + B v_t, y_t = C x_t."""
    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor


@torch.no_grad()
def real_ssm(kernel: DPLRKernel) -> RealSSM:
    """The dense real bilinear system of a DPLR kernel, computed in float64."""
    k = _float64_copy(kernel)
    dA, dB = k.discrete_dense()                      # (H, 2N, 2N), (H, 2N) on [z, z̄]
    C2 = k.C_true()                                  # (channels, H, 2N)
    N = k.N
    I = torch.eye(N, dtype=torch.complex128)
    T = torch.cat([torch.cat([I / 2, I / 2], 1), torch.cat([-0.5j * I, 0.5j * I], 1)], 0)
    Tinv = torch.cat([torch.cat([I, 1j * I], 1), torch.cat([I, -1j * I], 1)], 0)
    A = T @ dA @ Tinv
    B = dB @ T.T
    C = C2 @ Tinv
    for name, M in (("A", A), ("B", B), ("C", C)):   # the map must land on real matrices
        assert M.imag.abs().max() <= 1e-9 * max(1.0, M.real.abs().max()), f"{name} not real"
    return RealSSM(A.real.contiguous(), B.real.contiguous(), C.real.contiguous())


def _float64_copy(kernel: DPLRKernel) -> DPLRKernel:
    k = DPLRKernel(kernel.H, 2 * kernel.N, kernel.C.shape[0], kernel.n_ssm, kernel.rank, l_max=None)
    k.load_state_dict(kernel.state_dict())
    return k.double()


def matrix_powers(A: torch.Tensor, n: int) -> torch.Tensor:
    """[A^0, A^1, ..., A^(n-1)]: (n, H, s, s)."""
    out = [torch.eye(A.shape[-1], dtype=A.dtype).expand_as(A)]
    for _ in range(n - 1):
        out.append(A @ out[-1])
    return torch.stack(out)


@dataclass
class ChunkOperators:
    """Precomputed float64 operators for chunks of T = nb·b samples (H channels, n states).

    K (C, H, b, b)      Toeplitz of kernel taps inside a block: y_i += K[i, j] v_j (j <= i)
    Ob (C, H, b, n)     output from a block's start state: y_i += C A^(i+1) s
    Cb (H, b, n)        a block's inputs to its end state: e = sum_j A^(b-1-j) B v_j
    P0 (H, nb+1, n, n)  start state of block k from the chunk's start state: A^(k b)
    G (H, nb+1, nb, n, n) start state of block k from block m < k: A^((k-1-m) b)
    Row nb of P0 and G gives the state after the chunk.
    """
    K: torch.Tensor
    Ob: torch.Tensor
    Cb: torch.Tensor
    P0: torch.Tensor
    G: torch.Tensor
    b: int
    nb: int


def chunk_operators(ssm: RealSSM, T: int, b: int) -> ChunkOperators:
    if T % b:
        raise ValueError(f"block size {b} must divide the chunk length {T}")
    nb = T // b
    A, B, C = ssm.A, ssm.B, ssm.C
    H, n = B.shape
    Ap = matrix_powers(A, b + 1)                                       # (b+1, H, n, n)
    taps = torch.einsum("chn,ihnm,hm->chi", C, Ap[:b], B)              # K̄[0..b-1]
    i, j = torch.arange(b)[:, None], torch.arange(b)[None, :]
    K = torch.where(i >= j, taps[..., (i - j).clamp(min=0)], torch.zeros(()))   # (C, H, b, b)
    Ob = torch.einsum("chn,ihnm->chim", C, Ap[1:])                     # (C, H, b, n)
    Cb = torch.einsum("jhnm,hm->hjn", Ap[:b].flip(0), B)               # (H, b, n)
    Abk = matrix_powers(Ap[b], nb + 1)                                 # (A^b)^k: (nb+1, H, n, n)
    P0 = Abk.permute(1, 0, 2, 3).contiguous()                          # (H, nb+1, n, n)
    G = torch.zeros(H, nb + 1, nb, n, n, dtype=A.dtype)
    for k in range(1, nb + 1):
        for m in range(k):
            G[:, k, m] = Abk[k - 1 - m]
    return ChunkOperators(K, Ob, Cb, P0, G, b, nb)


def default_block(T: int) -> int:
    """The divisor of T nearest to 16 (measured best for small states; see bench/)."""
    divisors = [d for d in range(1, T + 1) if T % d == 0]
    return min(divisors, key=lambda d: (abs(d - 16), -d))
