"""Log-mel features as a causal, streamable front end.

Frame k covers samples [k·hop + hop - win, k·hop + hop): it ends at a hop boundary, so a stream cut
into chunks of a multiple of hop samples, with the last win - hop samples kept as state, yields
exactly the frames of the whole signal (zeros before it starts). The DFT is two matrix products
(Hann window folded in, built in float64), the mel filterbank a third: no FFT, so the front end
exports to ONNX and TensorRT like the rest of the step graph.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 20.0, fmax: float | None = None) -> np.ndarray:
    """Triangular filters on the HTK mel scale: (n_fft//2 + 1, n_mels), float64."""
    fmax = fmax or sample_rate / 2
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)            # noqa: E731
    hz = lambda m: 700.0 * (10 ** (m / 2595.0) - 1.0)            # noqa: E731
    edges = hz(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    return fb.T


class LogMel(nn.Module):
    """(B, L) samples -> (B, L // hop, n_mels) log-mel frames; `history` (B, win - hop) the samples
    before x (zeros: a fresh stream)."""

    def __init__(self, sample_rate: int, n_mels: int = 40, win: int = 400, hop: int = 160):
        super().__init__()
        if win < hop:
            raise ValueError(f"window {win} shorter than hop {hop}")
        self.win, self.hop, self.n_mels = win, hop, n_mels
        t = np.arange(win)
        k = np.arange(win // 2 + 1)
        hann = 0.5 - 0.5 * np.cos(2 * np.pi * t / win)
        ang = 2 * np.pi * np.outer(t, k) / win
        self.register_buffer("cos", torch.from_numpy(hann[:, None] * np.cos(ang)).float(), persistent=False)
        self.register_buffer("sin", torch.from_numpy(hann[:, None] * np.sin(ang)).float(), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(sample_rate, win, n_mels)).float(), persistent=False)

    def frames(self, x: torch.Tensor, history: torch.Tensor | None = None, idx: torch.Tensor | None = None) -> torch.Tensor:
        if history is None:
            history = x.new_zeros(x.shape[0], self.win - self.hop)
        xe = torch.cat([history, x], 1)
        if idx is None:
            n = x.shape[1] // self.hop
            idx = torch.arange(n, device=x.device)[:, None] * self.hop + torch.arange(self.win, device=x.device)
        return xe[:, idx]                                                     # (B, F, win)

    def spectrum(self, f: torch.Tensor) -> torch.Tensor:
        re, im = f @ self.cos.to(f.dtype), f @ self.sin.to(f.dtype)
        return torch.log((re * re + im * im) @ self.mel.to(f.dtype) + 1e-6)

    def forward(self, x: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
        return self.spectrum(self.frames(x, history))
