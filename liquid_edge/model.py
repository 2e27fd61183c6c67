"""The Liquid-S4 sequence classifier: encoder, residual blocks, final norm, pooled decoder.

Module names follow the official implementation (`encoder.0`, `model.layers.i.layer`,
`model.layers.i.norm.norm`, `model.norm.norm`, `decoder.0.output_transform`), so an official
state_dict loads without renaming.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import ModelConfig
from .layer import LiquidS4


class Normalization(nn.Module):
    """BatchNorm1d or LayerNorm over the feature axis of (B, L, D)."""

    def __init__(self, d: int, kind: str):
        super().__init__()
        self.kind = kind
        self.norm = nn.BatchNorm1d(d) if kind == "batch" else nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "batch":   # BatchNorm1d wants (B, D, L); a contiguous copy keeps it fast
            return self.norm(x.transpose(1, 2).contiguous()).transpose(1, 2)
        return self.norm(x)


class Block(nn.Module):
    """x + dropout(layer(norm(x))) (prenorm) or norm(x + dropout(layer(x))) (postnorm)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.prenorm = cfg.prenorm
        self.layer = LiquidS4(
            cfg.d_model, cfg.d_state, cfg.channels, cfg.bidirectional, cfg.l_max, cfg.n_ssm, cfg.rank,
            cfg.dt_min, cfg.dt_max, cfg.dropout, cfg.liquid_kernel, cfg.liquid_degree, cfg.lcontract,
            cfg.liquid_mode, cfg.allcombs)
        self.norm = Normalization(cfg.d_model, cfg.norm)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.prenorm:
            return x + self.drop(self.layer(self.norm(x)))
        return self.norm(x + self.drop(self.layer(x)))


class Backbone(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = Normalization(cfg.d_model, cfg.norm) if cfg.prenorm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layers:
            x = block(x)
        return self.norm(x)


class PoolDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.mode = cfg.pool
        self.output_transform = nn.Linear(cfg.d_model, cfg.d_output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.mean(1) if self.mode == "mean" else x[:, -1]
        return self.output_transform(x)


class LiquidS4Classifier(nn.Module):
    """(B, L, d_input) or (B, L) samples -> logits (B, d_output)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.features == "logmel":
            from .features import LogMel
            self.frontend = LogMel(cfg.sample_rate, cfg.n_mels, cfg.win, cfg.hop)
        self.encoder = nn.Sequential(nn.Linear(cfg.d_input, cfg.d_model))
        self.model = Backbone(cfg)
        self.decoder = nn.Sequential(PoolDecoder(cfg))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step features before pooling: (B, L, d_model). x (B, L) audio samples or (B, L, d_input)
        inputs; with log-mel features, samples become L // hop frames first."""
        if x.dim() == 2:
            x = self.frontend(x) if self.cfg.features == "logmel" else x.unsqueeze(-1)
        return self.model(self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.features(x))

    @property
    def causal(self) -> bool:
        """Does output t depend only on inputs up to t (before pooling)?"""
        return all(b.layer.causal for b in self.model.layers)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
