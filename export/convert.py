"""From a loaded model to the module that streams: exact stepwise, or an explicit alternative.

    exact     causal models (ours; official plain S4): StepwiseModel, same function as the conv form
    causal    official liquid models: the same weights with our causal liquid terms (coefficients
              from the trained parameters); a different function, whose deviation parity measures
    window    any model (official liquid, bidirectional): the model re-run on the last W samples at
              every chunk; exact for the windowed task, at the cost of a full forward per chunk
              (WindowedModel here, FFT; window.WindowGraph is its graph form for export)
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from ..describe import streaming_blocker
from ..model import LiquidS4Classifier
from .stepwise import StepwiseModel, StreamingError

LIQUID_MODES = ("exact", "causal", "window")


def causal_version(model: LiquidS4Classifier) -> LiquidS4Classifier:
    """The same trained weights as a causal-mode model (official wrapper tensors dropped)."""
    cfg = dataclasses.replace(model.cfg, liquid_mode="causal")
    out = LiquidS4Classifier(cfg)
    sd = {k: v for k, v in model.state_dict().items() if k in out.state_dict()}
    out.load_state_dict(sd)
    return out.eval()


class WindowedModel(nn.Module):
    """forward(x (B, T), window_state (B, W)) -> (logits, features (B, T, D), window_state_out).

    window_state holds the last W input samples (zeros before the stream starts); every call runs
    the convolution form over that window, so the logits are the model's own on the window.
    """

    def __init__(self, model: LiquidS4Classifier, chunk: int, window: int | None = None):
        super().__init__()
        if model.cfg.d_input != 1 or model.cfg.features != "raw":
            raise StreamingError("windowed inference supports raw single-channel audio models")
        self.model, self.cfg, self.chunk, self.steps = model, model.cfg, chunk, chunk
        self.window = window or model.cfg.l_max or chunk
        if self.window < chunk:
            raise StreamingError(f"window {self.window} is shorter than the chunk {chunk}")

    state_names = ["window_state"]

    def state_shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        return {"window_state": (batch, self.window)}

    def initial_state(self, batch: int = 1, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        return [torch.zeros(batch, self.window, dtype=dtype)]

    def forward(self, x: torch.Tensor, window_state: torch.Tensor):
        if x.dim() == 3:
            x = x[..., 0]
        w = torch.cat([window_state[:, x.shape[1]:], x], dim=1)
        feats = self.model.features(w)
        return self.model.decoder(feats), feats[:, -x.shape[1]:], w


def streaming_module(model: LiquidS4Classifier, chunk: int, liquid_mode: str | None = None,
                     window: int | None = None, block: int | None = None) -> nn.Module:
    """The module that streams `model` in chunks of `chunk` samples.

    liquid_mode None or "exact" requires a model that streams exactly and says why not otherwise.
    """
    if liquid_mode not in (None, *LIQUID_MODES):
        raise StreamingError(f"--liquid-mode must be one of {', '.join(LIQUID_MODES)}, not {liquid_mode!r}")
    blocker = streaming_blocker(model)
    if liquid_mode == "window":
        return WindowedModel(model, chunk, window).eval()
    if liquid_mode == "causal":
        if model.cfg.bidirectional:
            raise StreamingError(streaming_blocker(model))
        return StepwiseModel(causal_version(model), chunk, window, block).eval()
    if blocker:
        raise StreamingError(blocker)
    return StepwiseModel(model, chunk, window, block).eval()


def reference_model(model: LiquidS4Classifier, liquid_mode: str | None) -> LiquidS4Classifier:
    """The convolution form, in float64, that a streaming module of `liquid_mode` must equal.

    Stepwise streams equal the causal conv form (for official plain S4 that is the official function,
    except that ours never truncates the kernel at l_max); windowed streams equal the model itself.
    """
    if liquid_mode == "window":
        ref = LiquidS4Classifier(model.cfg)
        ref.load_state_dict(model.state_dict())
    else:
        ref = causal_version(model)
    return ref.double().eval()
