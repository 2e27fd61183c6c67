"""The liquid terms of Liquid-S4: input correlations and their coefficients.

Causal form (ours, DESIGN.md section 2), per channel, U[t] = 0 for t < 0:

    U_1[t] = u[t],   U_p[t] = U_{p-1}[t] * U_{p-1}[t-1]
    PB: y += sum_p c_p phi(U_p)          c_p = Re(CB * S^(2^(p-1) - 1))
    KB: y += K̄ * (sum_p s_p phi(U_p))    s_p = Re(S^(p-1))

with B̄_n = dt B_n / (1 - dt/2 w_n) (diagonal part only, as in the official code), S = sum_n B̄_n,
CB = sum_n C_n B̄_n over both halves of each conjugate pair (so S and CB are real up to rounding).

The official form differs in where U_p comes from (`official_correlations`) and in that it is
time-reversed before use; `layer.py` applies that.
"""
from __future__ import annotations

import itertools
import math
from functools import lru_cache

import torch

CONTRACTIONS = ("none", "tanh", "lecun")


def contract(x: torch.Tensor, name: str | None) -> torch.Tensor:
    """The contraction phi applied to correlation signals."""
    if name in (None, "none"):
        return x
    if name == "tanh":
        return torch.tanh(x)
    if name == "lecun":
        return 1.7159 * torch.tanh(0.666 * x)
    raise ValueError(f"unknown liquid contraction {name!r} (choose from {', '.join(CONTRACTIONS)})")


def causal_correlations(u: torch.Tensor, degree: int, history: torch.Tensor | None = None,
                        dim: int = -1) -> list[torch.Tensor]:
    """U_2..U_degree for u, time along `dim` (length L). history: the degree-1 inputs before u
    along the same axis (zeros: a fresh stream).

    U_p[t] depends on u[t-p+1..t], so degree-1 past samples make the result exact across chunks.
    """
    P1, L = degree - 1, u.shape[dim]
    if history is None:
        shape = list(u.shape)
        shape[dim] = P1
        history = u.new_zeros(shape)
    x = torch.cat([history, u], dim=dim)           # P1 + L samples
    out = []
    for _ in range(P1):
        n = x.shape[dim]
        x = x.narrow(dim, 1, n - 1) * x.narrow(dim, 0, n - 1)   # U_p; one leading sample less
        out.append(x if n - 1 == L else x.narrow(dim, n - 1 - L, L))   # no no-op slice in graphs
    return out


@lru_cache(maxsize=32)
def _allcombs_index(L: int, p: int) -> torch.Tensor:
    # The official construction: the smallest n with C(n, p) >= L, the last L p-combinations of the
    # last n positions (fewer than L: zero-padded by the caller).
    n = next((n for n in range(2, L) if math.comb(n, p) >= L), 1)
    idx = list(itertools.combinations(range(L - n, L), p))
    return torch.tensor(idx[-L:], dtype=torch.long).reshape(-1, p)


def official_correlations(u: torch.Tensor, degree: int, allcombs: bool) -> list[torch.Tensor]:
    """U_2..U_degree as the official code builds them (before its time reversal). u (..., L)."""
    L = u.shape[-1]
    out, us = [], u
    for p in range(2, degree + 1):
        if allcombs:
            idx = _allcombs_index(L, p)
            us = u[..., idx[:, 0]]
            for j in range(1, p):
                us = us * u[..., idx[:, j]]
            if us.shape[-1] != L:
                us = torch.nn.functional.pad(us, (0, L - us.shape[-1]))
        else:
            us = us * torch.nn.functional.pad(us[..., :-1], (1, 0))
        out.append(us)
    return out


def discrete_B_diag(B: torch.Tensor, w: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """B̄ on the conjugate-extended diagonal system: (.., N) complex -> (H, 2N). dt (H,)."""
    B2 = torch.cat([B, B.conj()], -1)
    w2 = torch.cat([w, w.conj()], -1)
    return dt[:, None] * B2 / (1.0 - 0.5 * dt[:, None] * w2)


def official_pb_coefficients(Bbar: torch.Tensor, C: torch.Tensor, degree: int) -> torch.Tensor:
    """The official code's PB coefficients, by its own recursion B̄ <- B̄ · sum(B̄) (so B̄ S^(2^(p-1)-1)).
    Bbar (H, 2N) from the frozen wrapper tensors, C (C', H, 2N) -> (degree-1, C', H), real."""
    out = []
    for _ in range(degree - 1):
        Bbar = Bbar * Bbar.sum(-1, keepdim=True)
        out.append((C * Bbar).sum(-1).real)
    return torch.stack(out)


def coefficients(Bbar: torch.Tensor, C: torch.Tensor, degree: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PB and KB coefficients for p = 2..degree.

    Bbar (H, 2N), C (channels, H, 2N) -> c (degree-1, channels, H), s (degree-1, H), real.
    """
    S = Bbar.sum(-1)                                  # (H,)
    CB = (C * Bbar).sum(-1)                           # (channels, H)
    c = torch.stack([(CB * S ** (2 ** (p - 1) - 1)).real for p in range(2, degree + 1)])
    s = torch.stack([(S ** (p - 1)).real for p in range(2, degree + 1)])
    return c, s
