"""Stepwise backends for the parity harness: each runs one chunk from numpy states to numpy states.

A backend says why it is unavailable (a missing library, no GPU) instead of failing, so the harness
can list it as skipped. New backends register themselves in BACKENDS.
"""
from __future__ import annotations

from typing import Callable, Protocol

import numpy as np
import torch

Runner = Callable[[np.ndarray, list], tuple]   # (x (B, T), states) -> (logits, features, states)


class Backend(Protocol):
    name: str

    def unavailable(self) -> str | None: ...

    def runner(self, module: torch.nn.Module, batch: int, workdir: str) -> Runner: ...


class TorchBackend:
    """The torch stepwise module itself, in its own dtype (float32 as converted), CPU."""
    name = "torch"

    def unavailable(self) -> str | None:
        return None

    def runner(self, module: torch.nn.Module, batch: int, workdir: str) -> Runner:
        @torch.no_grad()
        def run(x: np.ndarray, states: list) -> tuple:
            out = module(torch.from_numpy(x), *(torch.from_numpy(s) for s in states))
            logits, feats, *new = (t.numpy() for t in out)
            return logits, feats, new
        return run


BACKENDS: dict[str, Backend] = {"torch": TorchBackend()}


def register(backend: Backend) -> None:
    BACKENDS[backend.name] = backend
