"""The SSM of one layer as real matrices, and the operators that process a chunk at once.

Conversion is float64. The complex state z (N modes; its conjugate half is implied) becomes the
real state x = [Re z, Im z] (n = 2N). With x̃ = [z, z̄] = T^-1 x:

    Ā_r = T Ā T^-1,   B̄_r = T B̄,   C_r = C T^-1 = [2 Re C, -2 Im C]

Never the eigen-diagonal form: its eigenvectors are badly conditioned (DESIGN.md section 1).

A chunk of T = nb·b samples is processed in a two-level block form: inside each block of b samples
a b×b Toeplitz matrix of kernel taps; between blocks the state, propagated by precomputed powers of
Ā. Per sample and channel this costs about b + 2n + (nb+1)n²/b multiply-adds instead of T for a
full Toeplitz, in three batched matrix products per layer: on CPU runtimes the number of small
batched products, not their arithmetic, sets the cost (measured: bench/).
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
    """Operators for chunks of T = nb·b samples, C output channels, H channels, n states (float64).

    The chunk is processed as nb blocks of b samples (v_k: block k's inputs, s_k: the state before it):
        W1 (H, b, C·b + n): [y_k | e_k] = v_k W1     Toeplitz of kernel taps inside the block (with
                                                     D on its diagonal) | e_k = sum_j A^(b-1-j) B v_kj
        W2 (H, (nb+1) n, (nb+1) n): [s_0..s_nb] = W2 [x0, e_0..e_(nb-1)]
                                                     s_k = A^(kb) x0 + sum_(m<k) A^((k-1-m) b) e_m
        W3 (H, n, C·b): y_k += s_k W3                the block start state's response: C A^(i+1) s_k
    s_0 = x0 and s_nb is the state after the chunk. Three batched matrix products per layer.
    """
    W1: torch.Tensor
    W2: torch.Tensor
    W3: torch.Tensor
    b: int
    nb: int


def chunk_operators(ssm: RealSSM, T: int, b: int, D: torch.Tensor | None = None) -> ChunkOperators:
    """D (C, H), optional: folded into the Toeplitz diagonal (y += D v)."""
    if T % b:
        raise ValueError(f"block size {b} must divide the chunk length {T}")
    nb = T // b
    A, B, C = ssm.A, ssm.B, ssm.C
    H, n = B.shape
    Ch = C.shape[0]
    Ap = matrix_powers(A, b + 1)                                       # (b+1, H, n, n)
    taps = torch.einsum("chn,ihnm,hm->chi", C, Ap[:b], B)              # K̄[0..b-1]: (C, H, b)
    if D is not None:
        taps = taps.clone()
        taps[..., 0] += D
    i, j = torch.arange(b)[:, None], torch.arange(b)[None, :]
    K = torch.where(i >= j, taps[..., (i - j).clamp(min=0)], torch.zeros((), dtype=A.dtype))  # (C, H, i, j)
    Cb = torch.einsum("jhnm,hm->hjn", Ap[:b].flip(0), B)               # (H, b, n)
    W1 = torch.cat([K.permute(1, 3, 0, 2).reshape(H, b, Ch * b), Cb], -1)
    Abk = matrix_powers(Ap[b], nb + 1)                                 # (A^b)^k: (nb+1, H, n, n)
    W2 = torch.zeros(H, nb + 1, n, nb + 1, n, dtype=A.dtype)
    for k in range(nb + 1):
        W2[:, k, :, 0] = Abk[k]
        for m in range(k):
            W2[:, k, :, m + 1] = Abk[k - 1 - m]
    W2 = W2.reshape(H, (nb + 1) * n, (nb + 1) * n)
    Ob = torch.einsum("chn,ihnm->hmci", C, Ap[1:])                     # (H, n, C, b): C A^(i+1)
    return ChunkOperators(W1, W2, Ob.reshape(H, n, Ch * b), b, nb)


def default_block(T: int) -> int:
    """The divisor of T nearest to 32: measured fastest for the paper's SC config at T = 160 with
    ONNX Runtime on one CPU thread (b = 32: 2.03 ms, 16: 2.24 ms, 40: 2.15 ms; bench/)."""
    divisors = [d for d in range(1, T + 1) if T % d == 0]
    return min(divisors, key=lambda d: (abs(d - 32), -d))
